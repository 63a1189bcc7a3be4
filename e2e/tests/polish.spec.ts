// Issue 14's rough edges from the phone walk-through: the keyboard and the chrome (#18), errors
// where they happened and the agent limit (#19), Files (#21), Admin (#22), the cold start (#23).
import { test, expect, signIn } from '../fixtures';
import { mkdirSync, writeFileSync, utimesSync } from 'node:fs';
import { join } from 'node:path';

// Two agents per account, so the limit can be reached; a sample a second, for the charts.
test.use({ serverOptions: { env: { POCKETDEV_LIMITS__MAX_PER_USER: '2', POCKETDEV_MONITOR__INTERVAL_SECS: '1' } } });

// A 2×2 PNG.
const PNG = Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAIAAAACCAIAAAD91JpzAAAAFklEQVR4nGP8z8DAwMDAxMDAwMDAAAANHQEDasKb6QAAAABJRU5ErkJggg==', 'base64');

test('a signed-out cold start asks the server once before the form, and never refreshes', async ({ page, server }) => {
  const calls: string[] = [];
  page.on('request', (r) => {
    const path = new URL(r.url()).pathname;
    if (path.startsWith('/api/')) calls.push(`${r.method()} ${path}`);
  });
  // The server's policy is held back: the form must not wait for it.
  let release = () => undefined as void;
  const held = new Promise<void>((ok) => {
    release = ok;
  });
  await page.route('**/api/auth/config', async (route) => {
    await held;
    await route.continue();
  });
  await page.goto(server.url + '/');
  await expect(page.getByLabel('Username')).toBeFocused();
  expect(calls[0]).toBe('GET /api/auth/me');
  release();
  await expect(page.getByText(/^pocketdev \S+$/)).toBeVisible();
  expect(calls).toEqual(['GET /api/auth/me', 'GET /api/auth/config']);
});

test('with the keyboard up in the editor, the tab bar and top bar step aside', async ({ page, server }, info) => {
  const user = `kb${info.project.name}`;
  const id = await server.createUser(user, 'keyboard-password-1');
  writeFileSync(join(server.workspace(id), 'notes.md'), '# Notes\n');
  await signIn(page, server, user, 'keyboard-password-1');
  await page.goto(`${server.url}/#/edit/notes.md`);
  const editor = page.locator('.cm-content');
  await expect(editor).toContainText('Notes');
  const tabs = page.getByRole('navigation', { name: 'Main' });
  await expect(tabs).toBeVisible();
  await editor.click();
  const size = page.viewportSize()!;
  // The keyboard, as Android Chrome shows it with interactive-widget=resizes-content.
  await page.setViewportSize({ width: size.width, height: size.height - 336 });
  if (info.project.name === 'phone') {
    await expect(tabs).toBeHidden();
    await expect(page.locator('.topbar')).toBeHidden();
    await expect(page.getByRole('button', { name: 'Save', exact: true })).toBeVisible();
    await expect(editor).toBeFocused();
  } else {
    // A mouse-and-keyboard window made shorter is no on-screen keyboard.
    await expect(tabs).toBeVisible();
  }
  // The keyboard goes down (the field may keep its focus): the chrome comes back.
  await page.setViewportSize(size);
  await expect(tabs).toBeVisible();
  await expect(page.locator('.topbar')).toBeVisible();
});

test('errors show by their field in sentences, and the agent limit shows before a start', async ({ page, server }, info) => {
  const user = `er${info.project.name}`;
  const id = await server.createUser(user, 'errors-password-1');
  writeFileSync(join(server.workspace(id), 'plan.md'), 'plan\n');
  await signIn(page, server, user, 'errors-password-1');

  // A wrong current password is said under that field, and the field points at the message.
  await page.getByRole('link', { name: 'Settings', exact: true }).click();
  await page.getByLabel('Current password').fill('not-my-password');
  await page.getByLabel('New password').fill('a-new-password-1');
  await page.getByRole('button', { name: 'Change password' }).click();
  const current = page.getByLabel('Current password');
  await expect(current).toHaveAttribute('aria-invalid', 'true');
  await expect(current).toHaveAccessibleDescription('The current password is wrong.');
  const message = page.locator('#pw-current-error');
  await expect(message).toHaveAttribute('role', 'alert');
  await expect(page.locator('.field', { has: current })).toContainText('The current password is wrong.');
  await expect(page.locator('.toast')).toHaveCount(0);

  // In a dialog, the error stays in the dialog, which stays open.
  await page.getByRole('link', { name: 'Files', exact: true }).click();
  await page.getByRole('button', { name: 'New file' }).click();
  const dialog = page.getByRole('dialog');
  await dialog.getByLabel('File name').fill('plan.md');
  await dialog.getByRole('button', { name: 'Create' }).click();
  await expect(dialog.getByRole('alert')).toHaveText(/^\W?plan\.md\W? already exists\.$/);
  await expect(dialog.getByLabel('File name')).toHaveAccessibleDescription(/already exists\./);
  await dialog.getByRole('button', { name: 'Cancel' }).click();

  // The limit, before trying: counted, then reached, with Start disabled and the reason by it.
  await page.getByRole('link', { name: 'Agents', exact: true }).first().click();
  await expect(page.locator('#agent-limit')).toHaveText('0 of 2 running.');
  const { token } = await server.token(user, 'errors-password-1');
  for (const name of ['one', 'two']) {
    const made = await server.api('POST', 'api/instances', token, { profile: 'fake', name });
    expect(made.status).toBe(201);
  }
  await expect(page.locator('#agent-limit')).toHaveText('2 of 2 running: that is your limit. Stop an agent to start another.');
  const start = page.getByRole('button', { name: 'Start agent' });
  await expect(start).toBeDisabled();
  await expect(start).toHaveAccessibleDescription(/that is your limit/);
});

test('files: menus close outside and after a choice, images preview, times and whole names, tall crumbs', async ({ page, server }, info) => {
  const user = `fl${info.project.name}`;
  const id = await server.createUser(user, 'files-password-1');
  const ws = server.workspace(id);
  const long = 'a-really-long-file-name-that-keeps-going-and-going-until-it-needs-two-lines.txt';
  mkdirSync(join(ws, 'sub', 'deeper'), { recursive: true });
  writeFileSync(join(ws, 'photo.png'), PNG);
  writeFileSync(join(ws, long), 'long\n');
  writeFileSync(join(ws, 'old.txt'), 'old\n');
  const lastYear = new Date(Date.now() - 400 * 86_400_000);
  utimesSync(join(ws, 'old.txt'), lastYear, lastYear);
  await signIn(page, server, user, 'files-password-1');
  await page.getByRole('link', { name: 'Files', exact: true }).click();

  // Times: relative today, date and time otherwise, the full timestamp in the <time>.
  const fresh = page.locator('.file-row[data-name="photo.png"] time');
  await expect(fresh).toHaveText(/^(just now|\d+ min ago)$/);
  await expect(fresh).toHaveAttribute('datetime', /^\d{4}-\d\d-\d\dT/);
  await expect(fresh).toHaveAttribute('title', new RegExp(String(new Date().getFullYear())));
  const old = page.locator('.file-row[data-name="old.txt"] time');
  await expect(old).toHaveText(new RegExp(`${lastYear.getFullYear()}.*\\d{1,2}:\\d{2}`));

  // A long name is shown whole.
  const label = page.locator(`.file-row[data-name="${long}"] .file-label`);
  await expect(label).toHaveText(long);
  const fits = await label.evaluate((el) => el.scrollWidth <= el.clientWidth + 1 && el.getBoundingClientRect().width > 100);
  expect(fits).toBe(true);

  // The ⋯ menu: on top of the rows below it, one at a time, closed by a tap outside.
  const row = page.locator('.file-row[data-name="photo.png"]');
  await row.getByRole('button', { name: 'Actions for photo.png' }).click();
  const menu = page.getByRole('menu', { name: 'Actions for photo.png' });
  await expect(menu).toBeVisible();
  const onTop = await menu.evaluate((el) => {
    const r = el.getBoundingClientRect();
    const hit = document.elementFromPoint(r.left + r.width / 2, r.top + r.height - 6);
    return el.contains(hit);
  });
  expect(onTop).toBe(true);
  await page.getByRole('heading', { name: 'Files' }).click();
  await expect(menu).toBeHidden();
  await row.getByRole('button', { name: 'Actions for photo.png' }).click();
  await page.keyboard.press('Escape');
  await expect(menu).toBeHidden();
  // Opening another closes the first (its ⋯ may be under the open menu on a phone, so no tap).
  await row.getByRole('button', { name: 'Actions for photo.png' }).click();
  await page.locator('.file-row[data-name="old.txt"]').getByRole('button', { name: 'Actions for old.txt' }).dispatchEvent('click');
  await expect(menu).toBeHidden();
  await expect(page.getByRole('menu')).toHaveCount(1);
  await page.getByRole('heading', { name: 'Files' }).click();
  await expect(page.getByRole('menu')).toHaveCount(0);
  // After Download it closes too.
  await row.getByRole('button', { name: 'Actions for photo.png' }).click();
  const downloading = page.waitForEvent('download');
  await menu.getByRole('menuitem', { name: 'Download' }).click();
  expect((await downloading).suggestedFilename()).toBe('photo.png');
  await expect(menu).toBeHidden();

  // An image opens as a picture.
  await page.getByRole('link', { name: /photo\.png/ }).click();
  const img = page.getByRole('img', { name: 'photo.png' });
  await expect(img).toBeVisible();
  expect(await img.evaluate((el) => (el as HTMLImageElement).naturalWidth)).toBe(2);
  await expect(page.getByText('not text')).toHaveCount(0);

  // The folder path is made of real touch targets.
  await page.goto(`${server.url}/#/files/sub/deeper`);
  await expect(page.getByText('This folder is empty.')).toBeVisible();
  const crumbs = page.locator('.crumbs a');
  await expect(crumbs).toHaveCount(2);
  for (const box of await crumbs.evaluateAll((els) => els.map((el) => el.getBoundingClientRect().height))) expect(box).toBeGreaterThanOrEqual(44);
});

test('admin: no disabling or deleting yourself, and charts with a scale that fill their box', async ({ page, server }, info) => {
  const other = `ot${info.project.name}`;
  await server.createUser(other, 'other-password-1');
  await signIn(page, server);
  await page.getByRole('link', { name: 'Admin', exact: true }).click();
  const me = page.locator('.user-row[data-user="admin"]');
  await expect(me.getByRole('button', { name: 'Reset password' })).toBeVisible();
  await expect(me.getByRole('button', { name: 'Disable' })).toHaveCount(0);
  await expect(me.getByRole('button', { name: 'Delete' })).toHaveCount(0);
  const them = page.locator(`.user-row[data-user="${other}"]`);
  await expect(them.getByRole('button', { name: 'Disable' })).toBeVisible();
  await expect(them.getByRole('button', { name: 'Delete' })).toBeVisible();

  // A sample a second: within a few the charts have a line and a time scale.
  const cpu = page.locator('.chart-box', { hasText: 'CPU' });
  await expect(cpu.locator('.chart-x')).toContainText(/−\d+ s/, { timeout: 20_000 });
  await expect(cpu.locator('.chart-x')).toContainText('now');
  await expect(cpu.locator('.chart-y')).toContainText('100 %');
  await expect(page.locator('.chart-box', { hasText: 'Memory' }).locator('.chart-y')).toContainText(/\d+(\.\d)? (MB|GB)/);
  const widths = await cpu.locator('svg.chart').evaluate((svg) => ({
    box: svg.getBoundingClientRect().width,
    line: svg.querySelector('.chart-line')!.getBoundingClientRect().width,
  }));
  expect(widths.line).toBeGreaterThan(widths.box * 0.97);
});
