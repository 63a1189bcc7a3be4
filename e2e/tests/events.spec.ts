// The live event stream in the browser: a second tab follows what the first does without
// polling, an admin disabling the account sends its screens to sign-in, and the stream comes
// back with fresh state after the network went away.
import type { Page } from '@playwright/test';
import { test, expect, signIn } from '../fixtures';

// Statuses come from the monitor's samples: one a second here.
test.use({ serverOptions: [{ env: { POCKETDEV_MONITOR__INTERVAL_SECS: '1' } }, { scope: 'worker' }] });

/** Counts the tab's requests for the instance list, which the stream replaces. */
function countListRequests(page: Page): { count: number } {
  const seen = { count: 0 };
  page.on('request', (request) => {
    if (request.method() === 'GET' && new URL(request.url()).pathname.endsWith('/api/instances')) seen.count++;
  });
  return seen;
}

test('a second tab follows a new agent and its status without polling', async ({ page, server, consoleErrors }, info) => {
  const user = `eve${info.project.name}`;
  await server.createUser(user, 'eve-password-12');
  const first = countListRequests(page);
  await signIn(page, server, user, 'eve-password-12');
  const second = await page.context().newPage();
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  const secondList = countListRequests(second);
  await second.goto(server.url + '/');
  await expect(second.getByRole('heading', { name: 'Agents' })).toBeVisible();
  await expect(second.getByText('No agents yet. Start one below.')).toBeVisible();

  // Started in the first tab, which opens its terminal.
  await page.locator('#profile').selectOption('fake');
  await page.locator('#agent-name').fill('watched');
  await page.getByRole('button', { name: 'Start agent' }).click();
  await expect(page.locator('.term-title')).toHaveText('watched');
  const card = second.locator('.card', { hasText: 'watched' });
  await expect(card).toBeVisible({ timeout: 2_000 });
  const id = await card.getAttribute('data-instance');

  // Its status as the server says it, then in the second tab a moment later.
  const { token } = await server.token(user, 'eve-password-12');
  const status = async () => ((await (await server.api('GET', `api/instances/${id}`, token)).json()) as { status: string | null }).status;
  await expect.poll(status).toBe('idle');
  await expect(card.locator('.badge')).toHaveAttribute('data-status', 'idle', { timeout: 2_000 });
  expect((await server.api('POST', `api/instances/${id}/command`, token, { text: 'ask' })).status).toBe(204);
  await expect.poll(status).toBe('needs_permission');
  await expect(card.locator('.badge')).toHaveAttribute('data-status', 'needs_permission', { timeout: 2_000 });
  await expect(card).toContainText('Overwrite notes.txt? [y/N]', { timeout: 2_000 });

  // The first tab's "next waiting" count comes from the stream too: the agent waits, but it is
  // the one open, so none other.
  await expect(page.locator('.term-head .count')).toBeHidden();
  expect(first.count, 'the first tab never asked for the instance list').toBe(0);
  expect(secondList.count, 'the second tab never asked for the instance list').toBe(0);
  expect(errors).toEqual([]);
  expect(consoleErrors).toEqual([]);
  await second.close();
});

test('an admin disabling the account sends its open screens to sign-in', async ({ page, server }, info) => {
  const user = `finn${info.project.name}`;
  const userId = await server.createUser(user, 'finn-password-12');
  await signIn(page, server, user, 'finn-password-12');
  const { token } = await server.token(user, 'finn-password-12');
  const made = (await (await server.api('POST', 'api/instances', token, { profile: 'fake', name: 'left open' })).json()) as { id: string };
  const terminal = await page.context().newPage();
  await terminal.goto(`${server.url}/#/t/${made.id}`);
  await expect(terminal.locator('.term-title')).toHaveText('left open');
  await expect(page.locator('.card', { hasText: 'left open' })).toBeVisible();

  const admin = await server.token('admin', server.adminPassword);
  expect((await server.api('PATCH', `api/admin/users/${userId}`, admin.token, { disabled: true })).status).toBe(200);
  for (const screen of [page, terminal]) {
    await expect(screen.getByRole('heading', { name: 'Sign in' })).toBeVisible({ timeout: 3_000 });
    await expect(screen.getByText('Your session has ended. Sign in again.')).toBeVisible();
  }
  await terminal.close();
});

test('after the network comes back the stream brings what changed meanwhile', async ({ page, server, consoleErrors }, info) => {
  const user = `gus${info.project.name}`;
  await server.createUser(user, 'gus-password-12');
  await signIn(page, server, user, 'gus-password-12');
  const { token } = await server.token(user, 'gus-password-12');
  const before = (await (await server.api('POST', 'api/instances', token, { profile: 'fake', name: 'before' })).json()) as { id: string };
  await expect(page.locator('.card', { hasText: 'before' })).toBeVisible();
  const list = countListRequests(page);

  await page.context().setOffline(true);
  // Meanwhile: one agent more, one deleted.
  expect((await server.api('POST', 'api/instances', token, { profile: 'fake', name: 'while away' })).status).toBe(201);
  expect((await server.api('DELETE', `api/instances/${before.id}`, token)).status).toBe(204);
  await page.context().setOffline(false);

  await expect(page.locator('.card', { hasText: 'while away' })).toBeVisible({ timeout: 5_000 });
  await expect(page.locator('.card', { hasText: 'before' })).toHaveCount(0);
  expect(list.count, 'fresh state came from the stream, not a list request').toBe(0);
  // The browser reports the stream's failed reconnections while offline; the app has its banner.
  const offline = consoleErrors.filter((e) => e.includes('ERR_INTERNET_DISCONNECTED'));
  consoleErrors.splice(0, consoleErrors.length, ...consoleErrors.filter((e) => !offline.includes(e)));
});
