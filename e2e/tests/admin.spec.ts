import { test, expect, signIn, shot, watchConsole } from '../fixtures';

test('an admin creates an account, and disabling it signs that user out', async ({ page, server, browser }, info) => {
  const user = `dana${info.project.name}`;
  await signIn(page, server);
  await page.getByRole('link', { name: 'Admin', exact: true }).click();
  await expect(page.getByRole('heading', { name: 'System' })).toBeVisible();
  await expect(page.locator('.chart').first()).toBeVisible();
  await page.getByLabel('Username').fill(user);
  await page.getByLabel('Password').fill('dana-password-1');
  await page.getByRole('button', { name: 'Create account' }).click();
  await expect(page.getByText(`Created ${user}.`)).toBeVisible();
  await expect(page.locator(`.user-row[data-user="${user}"]`)).toBeVisible();
  await shot(page, info, '09-admin');

  // The user signs in on their own device.
  const other = await browser.newContext(info.project.use);
  const theirs = await other.newPage();
  const errors: string[] = [];
  watchConsole(theirs, errors);
  await signIn(theirs, server, user, 'dana-password-1');

  const row = page.locator(`.user-row[data-user="${user}"]`);
  await row.getByRole('button', { name: 'Disable' }).click();
  await page.getByRole('dialog').getByRole('button', { name: 'Disable' }).click();
  await expect(page.getByText(`Disabled ${user}.`)).toBeVisible();
  await expect(row.locator('.badge')).toHaveText('disabled');

  // Their dashboard notices on its next refresh and shows sign-in.
  await expect(theirs.getByRole('heading', { name: 'Sign in' })).toBeVisible({ timeout: 15_000 });
  await expect(theirs.getByText('Your session has ended. Sign in again.')).toBeVisible();
  await theirs.getByLabel('Username').fill(user);
  await theirs.getByLabel('Password').fill('dana-password-1');
  await theirs.getByRole('button', { name: 'Sign in' }).click();
  await expect(theirs.getByRole('alert')).toContainText('disabled');
  expect(errors).toEqual([]);
  await other.close();

  // Invites and the audit log.
  await page.getByRole('button', { name: 'Create invite code' }).click();
  await expect(page.getByRole('dialog')).toContainText('Single use');
  await page.getByRole('dialog').getByRole('button', { name: 'Close' }).click();
  await expect(page.locator('.audit')).toContainText('user.');
  const fresh = page.locator('.invite-new');
  await expect(fresh.locator('.badge').first()).toHaveText('pending');
  const inviteId = Number(await fresh.getAttribute('data-invite'));
  const listInvites = async () => {
    const admin = await server.token('admin', server.adminPassword);
    return (await (await server.api('GET', 'api/admin/invites', admin.token)).json()) as { id: number }[];
  };
  expect((await listInvites()).map((i) => i.id)).toContain(inviteId);
  await fresh.getByRole('button', { name: /^Revoke/ }).click();
  await page.getByRole('dialog').getByRole('button', { name: 'Revoke' }).click();
  await expect(page.getByText('Invite revoked.')).toBeVisible();
  await expect(page.locator('.invite-new')).toHaveCount(0);
  await expect(page.locator('.audit')).toContainText('invite.revoke');
  expect((await listInvites()).map((i) => i.id)).not.toContain(inviteId);

  // Reset the password, enable, and finally delete the account.
  await row.getByRole('button', { name: 'Reset password' }).click();
  await page.getByRole('dialog').getByLabel('New password').fill('dana-password-2');
  await page.getByRole('dialog').getByRole('button', { name: 'Set password' }).click();
  await expect(page.getByText(`Password of ${user} changed`)).toBeVisible();
  await row.getByRole('button', { name: 'Enable' }).click();
  await expect(page.getByText(`Enabled ${user}.`)).toBeVisible();
  expect((await server.api('POST', 'api/auth/login', undefined, { username: user, password: 'dana-password-2' })).status).toBe(200);
  await page.locator(`.user-row[data-user="${user}"]`).getByRole('button', { name: 'Delete' }).click();
  await expect(page.getByRole('dialog')).toContainText('moved to the archive');
  await page.getByRole('dialog').getByRole('button', { name: 'Delete' }).click();
  await expect(page.getByText(`Deleted ${user}.`)).toBeVisible();
  await expect(page.locator(`.user-row[data-user="${user}"]`)).toHaveCount(0);
});

test('settings: a secret is saved masked, the theme changes', async ({ page, server }, info) => {
  const user = `sam${info.project.name}`;
  await server.createUser(user, 'sam-password-12');
  await signIn(page, server, user, 'sam-password-12');
  await page.getByRole('link', { name: 'Settings', exact: true }).click();
  // The dashboard has a Name field too: wait for the settings page before typing.
  await expect(page.getByRole('heading', { name: 'API keys and secrets' })).toBeVisible();
  await page.getByLabel('Name').fill('ANTHROPIC_API_KEY');
  await page.getByLabel('Value').fill('sk-ant-test-1234567890abcd');
  await page.getByRole('button', { name: 'Save secret' }).click();
  await expect(page.getByText('Saved ANTHROPIC_API_KEY.')).toBeVisible();
  const row = page.locator('.secret-row', { hasText: 'ANTHROPIC_API_KEY' });
  await expect(row).toContainText('abcd');
  await expect(row).not.toContainText('sk-ant-test');
  await page.getByLabel('Dark').check();
  await expect(page.locator('html')).toHaveAttribute('data-theme', 'dark');
  await shot(page, info, '08-settings');
  await page.getByLabel('Light').check();
  await expect(page.locator('html')).toHaveAttribute('data-theme', 'light');
  await page.reload();
  await expect(page.locator('html')).toHaveAttribute('data-theme', 'light');

  // Deleting a secret asks first.
  await row.getByRole('button', { name: 'Delete ANTHROPIC_API_KEY' }).click();
  await page.getByRole('dialog').getByRole('button', { name: 'Delete' }).click();
  await expect(page.getByText('Deleted ANTHROPIC_API_KEY.')).toBeVisible();
  await expect(page.getByText('No secrets yet.')).toBeVisible();

  // Changing the password: a wrong current one is refused in words, the right one works.
  await page.getByLabel('Current password').fill('not-my-password');
  await page.getByLabel('New password').fill('sam-password-34');
  await page.getByRole('button', { name: 'Change password' }).click();
  // Under the field it concerns (polish.spec.ts checks how it is announced).
  await expect(page.locator('#pw-current-error')).toHaveText('The current password is wrong.');
  await page.getByLabel('Current password').fill('sam-password-12');
  await page.getByLabel('New password').fill('sam-password-34');
  await page.getByRole('button', { name: 'Change password' }).click();
  await expect(page.getByText('Password changed.', { exact: false })).toBeVisible();
  await expect(page.locator('#pw-current-error')).toBeHidden();
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.getByLabel('Username').fill(user);
  await page.getByLabel('Password').fill('sam-password-34');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await expect(page.getByRole('heading', { name: 'Agents' })).toBeVisible();
});

test('an invite opens an account even while registration is closed, and its link can be copied', async ({ page, server, browser }, info) => {
  await signIn(page, server);
  await page.context().grantPermissions(['clipboard-read', 'clipboard-write'], { origin: server.url });
  await page.getByRole('link', { name: 'Admin', exact: true }).click();
  await page.getByRole('button', { name: 'Create invite code' }).click();
  const dialog = page.getByRole('dialog');
  await dialog.getByRole('button', { name: 'Copy link' }).click();
  await expect(dialog.getByRole('button', { name: 'Copied' })).toBeVisible();
  const link = await page.evaluate(() => navigator.clipboard.readText());
  expect(link).toContain('#/register?invite=');
  await dialog.getByRole('button', { name: 'Close' }).click();

  // Registration is closed (the default): the sign-in page offers none, but the link opens the form.
  const other = await browser.newContext();
  const theirs = await other.newPage();
  await theirs.goto(`${server.url}/`);
  await expect(theirs.getByRole('heading', { name: 'Sign in' })).toBeVisible();
  await expect(theirs.getByRole('link', { name: /Create an account|Redeem an invite/ })).toHaveCount(0);
  await theirs.goto(link);
  await expect(theirs.getByRole('heading', { name: 'Redeem an invite' })).toBeVisible();
  await theirs.getByLabel('Username').fill(`invited${info.project.name}`);
  await theirs.getByLabel('Password').fill('a-long-enough-password');
  await theirs.getByRole('button', { name: 'Create account' }).click();
  await expect(theirs.getByRole('heading', { name: 'Agents' })).toBeVisible();
  await other.close();
});
