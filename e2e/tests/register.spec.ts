// Registration by invite: the admin's invite link opens the form with the code filled in.
import { test as base, expect } from '../fixtures';

const test = base.extend({});
test.use({ serverOptions: [{ extraToml: '[auth]\nregistration = "invite"' }, { scope: 'worker' }] });

test('a new user redeems an invite and lands on the dashboard', async ({ page, server }, info) => {
  const admin = await server.token('admin', server.adminPassword);
  const invite = (await (await server.api('POST', 'api/admin/invites', admin.token, {})).json()) as { code: string };
  await page.goto(`${server.url}/`);
  await expect(page.getByRole('link', { name: 'Redeem an invite' })).toBeVisible();
  await page.goto(`${server.url}/#/register?invite=${encodeURIComponent(invite.code)}`);
  await expect(page.getByRole('heading', { name: 'Redeem an invite' })).toBeVisible();
  await expect(page.getByLabel('Invite code')).toHaveValue(invite.code);
  await page.getByLabel('Username').fill(`newbie${info.project.name}`);
  await expect(page.getByText('At least 10 characters.')).toBeVisible();
  await page.getByLabel('Password').fill('a-long-enough-password');
  await page.getByRole('button', { name: 'Create account' }).click();
  await expect(page.getByRole('heading', { name: 'Agents' })).toBeVisible();
  await expect(page.getByRole('link', { name: 'Admin', exact: true })).toHaveCount(0);
});
