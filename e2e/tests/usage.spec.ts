// Spending in the app: an admin sets a budget on an account in Admin, the account's user reads it
// in Settings, and the admin removes it. (What agents spend is read in claude.spec.ts, with the
// real Claude Code CLI.)
import { test, expect, signIn } from '../fixtures';

test('an admin sets a budget that its account sees in Settings, then removes it', async ({ page, server, browser, consoleErrors }, info) => {
  const user = `budget${info.project.name}`;
  await server.createUser(user, 'budget-password-1');
  await signIn(page, server);
  await page.getByRole('link', { name: 'Admin', exact: true }).click();
  const budgets = page.locator('.budgets');
  await expect(budgets.getByRole('heading', { name: 'Budgets' })).toBeVisible();
  // Nothing to set yet: the form says what is missing, next to the button.
  await budgets.getByLabel('For').selectOption({ label: user });
  await budgets.getByRole('button', { name: 'Set budget' }).click();
  await expect(budgets.getByRole('alert')).toHaveText('Give a cost, a number of tokens, or both.');
  // Chromium logs the refused request; the app said why, above.
  consoleErrors.splice(0, consoleErrors.length, ...consoleErrors.filter((e) => !e.includes('status of 422')));
  await budgets.getByLabel('Period').selectOption('day');
  await budgets.getByLabel(/At most \(USD\)/).fill('1.5');
  await budgets.getByRole('button', { name: 'Set budget' }).click();
  await expect(budgets.getByRole('listitem').filter({ hasText: user })).toContainText(`${user}, daily: $0.00 of $1.50 (0 %)`);

  const other = await browser.newContext({ ...(info.project.use as object) });
  const mine = await other.newPage();
  await signIn(mine, server, user, 'budget-password-1');
  await mine.getByRole('link', { name: 'Settings', exact: true }).click();
  await expect(mine.locator('.budget')).toContainText(`${user}, daily: $0.00 of $1.50 (0 %)`);
  await expect(mine.locator('.usage-totals dd').first()).toHaveText('0 tokens · $0.00');

  await budgets.getByRole('button', { name: /^Remove:/ }).click();
  await expect(page.getByText('Budget removed.')).toBeVisible();
  await expect(budgets.getByText('No budget: agents may spend without limit.')).toBeVisible();
  await mine.reload();
  await expect(mine.locator('.usage-totals')).toBeVisible();
  await expect(mine.locator('.budget')).toHaveCount(0);
  await other.close();
});
