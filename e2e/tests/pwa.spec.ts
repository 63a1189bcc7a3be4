// Installable and at home under a base path: the manifest, the service worker, the offline
// shell, and the whole app (terminal socket included) behind `base_path = "/pocketdev/"`.
import { test as base, expect, expectTerminal } from '../fixtures';

const test = base.extend({});
test.use({ serverOptions: [{ basePath: '/pocketdev/' }, { scope: 'worker' }] });

test('works under a base path and opens offline from the service worker', async ({ page, server, consoleErrors }) => {
  // server.url includes the base path.
  expect(server.url).toMatch(/\/pocketdev$/);
  const root = `${server.url}/`;
  await page.goto(root);
  await expect(page.getByRole('heading', { name: 'Sign in' })).toBeVisible();
  const manifest = await page.evaluate(async () => {
    const link = document.querySelector<HTMLLinkElement>('link[rel=manifest]')!;
    return (await fetch(link.href)).json();
  });
  expect(manifest.display).toBe('standalone');
  expect(manifest.icons.length).toBeGreaterThanOrEqual(3);

  await page.getByLabel('Username').fill('admin');
  await page.getByLabel('Password').fill(server.adminPassword);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await expect(page.getByRole('heading', { name: 'Agents' })).toBeVisible();

  // A terminal through the base path.
  await page.locator('#profile').selectOption('fake');
  await page.getByRole('button', { name: 'Start agent' }).click();
  await expect(page.locator('.term-page')).toHaveAttribute('data-connected', 'true');
  await expectTerminal(page, 'agent> ');
  await page.getByRole('link', { name: 'Back to agents' }).click();

  // The service worker takes control and keeps the shell.
  const scope = await page.evaluate(async () => (await navigator.serviceWorker.ready).scope);
  expect(scope).toBe(root);
  await page.reload();
  await expect(page.getByRole('heading', { name: 'Agents' })).toBeVisible();
  await expect.poll(() => page.evaluate(() => !!navigator.serviceWorker.controller)).toBe(true);

  // Offline: the shell still opens and says it is offline; the API is never served from cache.
  await page.context().setOffline(true);
  await page.reload();
  await expect(page.locator('.offline')).toBeVisible();
  await expect(page.getByRole('button', { name: 'Try again' })).toBeVisible();
  await page.context().setOffline(false);
  await page.getByRole('button', { name: 'Try again' }).click();
  await expect(page.getByRole('heading', { name: 'Agents' })).toBeVisible();
  await expect(page.locator('.offline')).toBeHidden();
  // Chromium logs the API call that failed while offline; the app showed it as the banner.
  const offline = consoleErrors.filter((e) => e.includes('ERR_INTERNET_DISCONNECTED'));
  expect(offline.length).toBeLessThanOrEqual(2);
  consoleErrors.splice(0, consoleErrors.length, ...consoleErrors.filter((e) => !offline.includes(e)));
});

test('outside the base path there is only the JSON 404', async ({ page, server }) => {
  const response = await page.request.get(`${new URL(server.url).origin}/`);
  expect(response.status()).toBe(404);
  expect((await response.json()).error.code).toBe('not_found');
});
