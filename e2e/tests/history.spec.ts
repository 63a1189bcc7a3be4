// History and search: the agent's whole tmux history in pages, beyond the 2,000 lines a reconnect
// replays, and a search whose match opens its page with the line highlighted.
import { test, expect, signIn, shot, expectTerminal } from '../fixtures';

const PRINTED = 5000;

test('pages through the whole history and jumps to a search match', async ({ page, server }, info) => {
  const user = `hist${info.project.name}`;
  await server.createUser(user, 'history-password-1');
  await signIn(page, server, user, 'history-password-1');
  await page.getByLabel('Agent', { exact: true }).selectOption('bash');
  await page.getByLabel('Name').fill(`history-${info.project.name}`);
  await page.getByRole('button', { name: 'Start agent' }).click();
  await expect(page.locator('.term-page')).toHaveAttribute('data-connected', 'true');
  await expectTerminal(page, /^pd\$ /m);
  await page.getByLabel('Message to send to the agent').fill(`seq -f 'n%g' 1 ${PRINTED}; echo printed-$((2+3))`);
  await page.getByRole('button', { name: 'Send message' }).click();
  await expectTerminal(page, /^printed-5$/m);

  await page.getByRole('button', { name: 'More' }).click();
  await page.getByRole('menuitem', { name: 'History and search' }).click();
  const sheet = page.getByRole('dialog', { name: /History of/ });
  await expect(sheet).toBeVisible();
  const text = sheet.getByRole('region', { name: 'History text' });
  // The newest lines, at the bottom.
  await expect(text.locator('.history-line', { hasText: /^printed-5$/ })).toBeInViewport();
  await expect(text.locator('.history-line', { hasText: /^n5000$/ })).toBeVisible();
  await shot(page, info, '40-history');

  // Earlier pages, one per tap, to the very first line.
  const earlier = sheet.getByRole('button', { name: 'Load earlier' });
  const start = sheet.getByRole('button', { name: 'Start of the history' });
  for (let i = 0; i < 30 && !(await start.isVisible()); i++) {
    if (await earlier.isEnabled().catch(() => false)) await earlier.click().catch(() => undefined);
    await expect(sheet.locator('.history-scroll')).not.toHaveAttribute('aria-busy', 'true');
  }
  await expect(start).toBeDisabled();
  const numbers = (await text.locator('.history-line').allTextContents())
    .map((line) => line.match(/^n(\d+)$/)?.[1]).filter((n): n is string => n !== undefined).map(Number);
  expect(numbers.length, 'every line once').toBe(PRINTED);
  expect(numbers.every((n, i) => n === i + 1), 'in order, without gaps or repeats').toBe(true);
  await expect(text.locator('.history-line', { hasText: /^n1$/ })).toHaveCount(1);

  // Search a number far up; its match opens its page with the line highlighted.
  await sheet.getByRole('searchbox', { name: 'Search the history' }).fill('n123');
  await sheet.getByRole('button', { name: 'Search', exact: true }).click();
  const matches = sheet.getByRole('list', { name: 'Matches' });
  await expect(matches.getByRole('button')).toHaveCount(1 + 10);
  await expect(sheet.getByRole('status')).toContainText('11 matches');
  await matches.getByRole('button', { name: 'n123', exact: true }).click();
  const hit = text.locator('.history-hit');
  await expect(hit).toHaveText('n123');
  await expect(hit).toBeInViewport();
  await expect(hit).toHaveAttribute('aria-current', 'true');
  await shot(page, info, '41-history-match');

  await sheet.getByRole('button', { name: 'Close' }).click();
  await expect(sheet).toBeHidden();
});
