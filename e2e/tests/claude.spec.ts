// A new user on a phone, from the sign-in page to a working Claude Code terminal (the real CLI
// against the mock Messages API), an edited file and an attached image. Needs the pinned CLI that
// scripts/test.sh installs into .test-tools/ (or POCKETDEV_TEST_CLAUDE); without it the test
// fails, unless POCKETDEV_E2E_SKIP_CLAUDE=1 says to skip it.
import { test as base, expect, signIn, shot, expectTerminal, expectScreenMatchesTmux } from '../fixtures';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { MockAnthropic, REPLY_PREFIX } from '../mock-anthropic';
import { ROOT } from '../server';
import type { Page } from '@playwright/test';

const PROFILE = 'claude-sonnet-4-5-20250929';
const CLAUDE = process.env.POCKETDEV_TEST_CLAUDE ?? join(ROOT, '.test-tools/node_modules/.bin/claude');
const API_KEY = 'sk-ant-api03-pocketdev-e2e-key-0123456789';

const test = base.extend<object, { mock: MockAnthropic }>({
  mock: [async ({}, use) => {
    const mock = new MockAnthropic();
    await mock.start();
    await use(mock);
    await mock.stop();
  }, { scope: 'worker' }],
  serverOptions: [async ({ mock }, use) => {
    await use({ extraToml: [`[profiles.${PROFILE}]`, `command = "${CLAUDE}"`, `[profiles.${PROFILE}.env]`, `ANTHROPIC_BASE_URL = "${mock.url}"`,
      '[profiles."glm-4.6"]', `command = "${CLAUDE}"`].join('\n') });
  }, { scope: 'worker' }],
});


/** Saves the mock API's key under Settings. */
async function saveApiKey(page: Page): Promise<void> {
  await page.getByRole('link', { name: 'Settings', exact: true }).click();
  // The dashboard has a Name field too: wait for the settings page before typing.
  await expect(page.getByRole('heading', { name: 'API keys and secrets' })).toBeVisible();
  await page.getByLabel('Name').fill('ANTHROPIC_API_KEY');
  await page.getByLabel('Value').fill(API_KEY);
  await page.getByRole('button', { name: 'Save secret' }).click();
  await expect(page.getByText('Saved ANTHROPIC_API_KEY.')).toBeVisible();
}
test('a new user gets from sign-in to a working Claude Code terminal', async ({ page, server, mock }, info) => {
  test.setTimeout(150_000);
  if (!existsSync(CLAUDE)) {
    if (process.env.POCKETDEV_E2E_SKIP_CLAUDE === '1') test.skip(true, 'POCKETDEV_E2E_SKIP_CLAUDE=1 and the Claude Code CLI is not installed');
    throw new Error(`the Claude Code CLI is not installed at ${CLAUDE}: run scripts/test.sh (it installs it into .test-tools/), or set POCKETDEV_E2E_SKIP_CLAUDE=1 to skip this test`);
  }
  const user = `cleo${info.project.name}`;
  const id = await server.createUser(user, 'cleo-password-1');
  await signIn(page, server, user, 'cleo-password-1');

  // A profile that lacks its key says so, with a link to Settings.
  const glm = page.locator('#profile-why li', { hasText: 'GLM-4.6' });
  await expect(glm).toContainText('GLM_API_KEY');
  await expect(glm.getByRole('link', { name: 'add it in Settings' })).toBeVisible();
  await shot(page, info, '02-dashboard-new-user');

  // Claude profiles work without a key (sign-in inside the terminal); this user adds one.
  await saveApiKey(page);

  await page.getByRole('link', { name: 'Agents', exact: true }).click();
  await page.locator('#profile').selectOption(PROFILE);
  await page.getByLabel('Name').fill('claude');
  await page.getByRole('button', { name: 'Start agent' }).click();
  await expect(page.locator('.term-page')).toHaveAttribute('data-connected', 'true');
  await expectTerminal(page, '? for shortcuts', 60_000);

  // An image, attached through the picker, lands in the workspace and its path in the prompt.
  const png = Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==', 'base64');
  await page.locator('.compose input[type=file]').setInputFiles({ name: 'whiteboard.png', mimeType: 'image/png', buffer: png });
  const box = page.getByLabel('Message to send to the agent');
  await expect(box).toHaveValue(/\.pocketdev\/uploads\/\d{8}T\d{6}-whiteboard\.png $/);
  const uploads = readdirSync(join(server.workspace(id), '.pocketdev/uploads'));
  expect(uploads.some((name) => name.endsWith('-whiteboard.png'))).toBe(true);

  await box.fill('Say hello to pocketdev');
  await page.getByRole('button', { name: 'Send message' }).click();
  await expectTerminal(page, REPLY_PREFIX, 60_000);
  await expectTerminal(page, 'Say hello to pocketdev');
  // The monitor's status reaches the terminal's badge live: the agent waits for its user.
  await expect(page.locator('.term-status .badge')).toHaveText('waiting', { timeout: 30_000 });
  expect(mock.seen.length).toBeGreaterThan(0);
  expect(mock.seen.every((s) => s.apiKey === API_KEY)).toBe(true);
  await shot(page, info, '10-claude');
  // The page shows exactly Claude Code's screen, as tmux has it, and again after a reload.
  const instanceId = new URL(page.url()).hash.replace('#/t/', '');
  await expectScreenMatchesTmux(page, server, instanceId);
  await page.reload();
  await expect(page.locator('.term-page')).toHaveAttribute('data-connected', 'true');
  await expectScreenMatchesTmux(page, server, instanceId);

  // The status reaches the dashboard, which shows the agent waiting for its user.
  await page.getByRole('link', { name: 'Back to agents' }).click();
  await expect(page.getByRole('article', { name: 'claude' })).toBeVisible();

  // What the turn cost, read from Claude Code's own transcript: the mock's 12 + 8 tokens at
  // Sonnet 4.5's prices.
  await page.getByRole('link', { name: 'Settings', exact: true }).click();
  await expect.poll(async () => {
    await page.reload();
    return page.locator('.usage-totals dd').first().textContent({ timeout: 5000 });
  }, { timeout: 30_000 }).toBe('20 tokens · $0.0002');
  await expect(page.locator('.usage-list').last()).toContainText('claude');
  await page.getByRole('link', { name: 'Agents', exact: true }).click();

  // And an edited file.
  await page.getByRole('link', { name: 'Files', exact: true }).click();
  await page.getByRole('button', { name: 'New file' }).click();
  await page.getByRole('dialog').getByLabel('File name').fill('CLAUDE.md');
  await page.getByRole('dialog').getByRole('button', { name: 'Create' }).click();
  await page.locator('.cm-content').click();
  await page.keyboard.type('Be brief.');
  await page.getByRole('button', { name: 'Save', exact: true }).click();
  await expect(page.getByText('Saved CLAUDE.md.')).toBeVisible();
  expect(readFileSync(join(server.workspace(id), 'CLAUDE.md'), 'utf8')).toBe('Be brief.');
});

// `DOCS_SCREENSHOTS=1 npx playwright test docs --project phone` refreshes docs/screenshots/
// (phone size at 2x, dark theme, small PNGs for the README).
test('docs screenshots', async ({ browser, server }, info) => {
  test.skip(process.env.DOCS_SCREENSHOTS !== '1' || info.project.name !== 'phone', 'set DOCS_SCREENSHOTS=1 to refresh docs/screenshots');
  test.setTimeout(150_000);
  const out = join(ROOT, 'docs/screenshots');
  mkdirSync(out, { recursive: true });
  const context = await browser.newContext({ ...info.project.use, deviceScaleFactor: 2, colorScheme: 'dark' });
  const page = await context.newPage();
  const snap = async (name: string) => {
    await page.evaluate(() => document.querySelector('.toasts')?.replaceChildren());
    await page.screenshot({ path: join(out, `${name}.png`) });
  };
  const user = 'maya';
  const id = await server.createUser(user, 'maya-password-1');
  mkdirSync(join(server.workspace(id), 'src'), { recursive: true });
  writeFileSync(join(server.workspace(id), 'src', 'app.ts'), "export function greet(name: string): string {\n  // Say hello politely.\n  return `Hello, ${name}!`;\n}\n\nconsole.log(greet('pocketdev'));\n");
  await page.goto(server.url + '/');
  await page.getByLabel('Username').fill(user);
  await snap('sign-in');
  await page.getByLabel('Password').fill('maya-password-1');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await saveApiKey(page);
  for (const [profile, name] of [['fake', 'tests'], [PROFILE, 'refactor']]) {
    await page.goto(`${server.url}/#/`);
    await page.locator('#profile').selectOption(profile);
    await page.getByLabel('Name').fill(name);
    await page.getByRole('button', { name: 'Start agent' }).click();
    await expect(page.locator('.term-page')).toHaveAttribute('data-connected', 'true');
  }
  await expectTerminal(page, '? for shortcuts', 60_000);
  await page.getByLabel('Message to send to the agent').fill('Explain src/app.ts in one line');
  await page.getByRole('button', { name: 'Send message' }).click();
  await expectTerminal(page, REPLY_PREFIX, 60_000);
  await page.getByLabel('Message to send to the agent').fill('Now add a test for greet()');
  await snap('terminal');
  // The terminal in each theme, upright, on its side, and with the keyboard up (the viewport
  // shrinks as a phone's does).
  for (const scheme of ['dark', 'light'] as const) {
    const suffix = scheme === 'dark' ? '' : '-light';
    await page.emulateMedia({ colorScheme: scheme });
    await page.setViewportSize({ width: 390, height: 664 });
    await page.getByLabel('Message to send to the agent').fill('Now add a test for greet()');
    if (scheme === 'light') await snap('terminal-light');
    await page.setViewportSize({ width: 844, height: 390 });
    await page.waitForTimeout(500);
    await snap(`terminal-landscape${suffix}`);
    await page.setViewportSize({ width: 390, height: 664 });
    await page.getByLabel('Message to send to the agent').focus();
    await page.setViewportSize({ width: 390, height: 380 });
    await page.waitForTimeout(500);
    await snap(`terminal-keyboard${suffix}`);
    await page.getByLabel('Message to send to the agent').blur();
  }
  await page.emulateMedia({ colorScheme: 'dark' });
  await page.setViewportSize({ width: 390, height: 664 });
  await page.getByRole('link', { name: 'Back to agents' }).click();
  await expect(page.getByRole('article')).toHaveCount(2);
  await page.waitForTimeout(6000); // a monitor sample, so the cards show memory and status
  await page.reload();
  await expect(page.getByRole('article')).toHaveCount(2);
  await snap('dashboard');
  await page.goto(`${server.url}/#/edit/src/app.ts`);
  await expect(page.locator('.cm-content')).toContainText('greet');
  await snap('editor');
  await context.close();
});
