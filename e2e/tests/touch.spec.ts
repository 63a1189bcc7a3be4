// The phone's gestures on the terminal: swipe to scroll back (the emulator's scrollback on the
// normal screen, `scroll` messages for full-screen programs), long-press to select and copy, and
// the Paste key.
import { test, expect, signIn, expectTerminal, terminalText } from '../fixtures';
import type { Page } from '@playwright/test';

async function swipe(page: Page, fromY: number, toY: number): Promise<void> {
  const cdp = await page.context().newCDPSession(page);
  const box = (await page.locator('.term-screen').boundingBox())!;
  const x = box.x + box.width / 2;
  const at = (y: number) => [{ x, y: box.y + y }];
  await cdp.send('Input.dispatchTouchEvent', { type: 'touchStart', touchPoints: at(fromY) });
  const steps = 12;
  for (let i = 1; i <= steps; i++) {
    await cdp.send('Input.dispatchTouchEvent', { type: 'touchMove', touchPoints: at(fromY + ((toY - fromY) * i) / steps) });
  }
  await cdp.send('Input.dispatchTouchEvent', { type: 'touchEnd', touchPoints: [] });
  await cdp.detach();
}

async function say(page: Page, text: string): Promise<void> {
  await page.getByLabel('Message to send to the agent').fill(text);
  await page.getByRole('button', { name: 'Send message' }).click();
}

test('swipes scroll back, long-press selects, Paste pastes', async ({ page, server, context }, info) => {
  test.skip(info.project.name !== 'phone', 'touch gestures are for the phone profile');
  await context.grantPermissions(['clipboard-read', 'clipboard-write']);
  await signIn(page, server);
  await page.locator('#profile').selectOption('bash');
  await page.getByLabel('Name').fill('touch');
  await page.getByRole('button', { name: 'Start agent' }).click();
  await expect(page.locator('.term-page')).toHaveAttribute('data-connected', 'true');
  await expectTerminal(page, /^pd\$ /m);

  // Normal screen: the finger moving down shows older lines from the scrollback.
  await say(page, 'seq 1 300');
  await expectTerminal(page, /^300$/m);
  expect(await terminalText(page)).not.toMatch(/^240$/m);
  await swipe(page, 100, 400);
  await swipe(page, 100, 400);
  await expect.poll(() => terminalText(page)).toMatch(/^240$/m);

  // Full screen (less): the finger moving up scrolls the program forward.
  await say(page, 'seq 1 300 > n.txt && less n.txt');
  // less's prompt: the file name at first, or ":" once it has redrawn.
  await expectTerminal(page, /^1\s*$[\s\S]*^(n\.txt.*|:)\s*$/m);
  expect(await terminalText(page)).not.toMatch(/^60$/m);
  await swipe(page, 400, 100);
  await swipe(page, 400, 100);
  await expect.poll(() => terminalText(page)).toMatch(/^60$/m);
  await page.locator('.xterm-helper-textarea').focus();
  await page.keyboard.type('q');
  await expectTerminal(page, /^pd\$\s*$/m);

  // Long-press selects in place; its menu's More… opens the sheet, where Copy all puts the
  // text on the clipboard.
  const cdp = await context.newCDPSession(page);
  const box = (await page.locator('.term-screen').boundingBox())!;
  await cdp.send('Input.dispatchTouchEvent', { type: 'touchStart', touchPoints: [{ x: box.x + 50, y: box.y + 50 }] });
  const menu = page.getByRole('toolbar', { name: 'Selection' });
  await expect(menu).toBeVisible();
  await cdp.send('Input.dispatchTouchEvent', { type: 'touchEnd', touchPoints: [] });
  await menu.getByRole('button', { name: 'More…' }).tap();
  const sheet = page.getByRole('dialog', { name: 'Select text' });
  await expect(sheet).toBeVisible();
  await expect(sheet.locator('.select-text')).toContainText('seq 1 300');
  await sheet.getByRole('button', { name: 'Copy all' }).click();
  await expect(page.getByText('Copied.')).toBeVisible();
  expect(await page.evaluate(() => navigator.clipboard.readText())).toContain('seq 1 300');
  await sheet.getByRole('button', { name: 'Close' }).click();

  // The Paste key sends the clipboard as one paste.
  await page.evaluate(() => navigator.clipboard.writeText('echo pasted""-ok'));
  await page.getByRole('button', { name: 'Paste from the clipboard' }).click();
  await page.getByRole('button', { name: 'Enter', exact: true }).click();
  await expectTerminal(page, /^pasted-ok$/m);
});
