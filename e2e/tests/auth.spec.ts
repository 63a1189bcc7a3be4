import { test, expect, signIn, shot } from '../fixtures';

test('signs in, stays signed in across a reload, and signs out', async ({ page, server }, info) => {
  await page.goto(server.url + '/');
  await expect(page.getByRole('heading', { name: 'Sign in' })).toBeVisible();
  await shot(page, info, '01-sign-in');
  await page.getByLabel('Username').fill('admin');
  await page.getByLabel('Password').fill('not the password');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await expect(page.getByRole('alert')).toContainText('Wrong username or password');

  await signIn(page, server);
  await page.reload();
  await expect(page.getByRole('heading', { name: 'Agents' })).toBeVisible();

  await page.getByRole('button', { name: 'Sign out' }).click();
  await expect(page.getByRole('heading', { name: 'Sign in' })).toBeVisible();
  await expect(page.getByText('You signed out.')).toBeVisible();
  await page.reload();
  await expect(page.getByRole('heading', { name: 'Sign in' })).toBeVisible();
});

test('an expired access cookie is refreshed once, even with many requests at once', async ({ page, server, context }) => {
  await signIn(page, server);
  // Counted from before the drop: the event stream may be opening just then, and its 401 shares
  // the one refresh too.
  const refreshes: string[] = [];
  page.on('request', (r) => {
    if (r.url().endsWith('/api/auth/refresh')) refreshes.push(r.url());
  });
  // Drop the access cookie alone (never all of them, even for a moment: a request in between
  // would find no session at all): the next calls get 401 and must share one refresh.
  await context.clearCookies({ name: 'pd_access' });
  expect((await context.cookies()).map((c) => c.name)).toContain('pd_refresh');
  await page.getByRole('link', { name: 'Settings', exact: true }).click();
  await expect(page.getByRole('heading', { name: 'API keys and secrets' })).toBeVisible();
  await page.getByRole('link', { name: 'Agents', exact: true }).click();
  await expect(page.getByRole('heading', { name: 'New agent' })).toBeVisible();
  expect(refreshes.length).toBe(1);
  await page.reload();
  await expect(page.getByRole('heading', { name: 'Agents' })).toBeVisible();
});
