// The terminal on glass: scrollback with momentum, a thumb and a jump-to-latest pill; selecting
// in place with handles; the key bar's drag key, long-press alternates and the user's own keys;
// Android's typing through the message box.
import { test, expect, signIn, expectTerminal, terminalText } from '../fixtures';
import { devices, type CDPSession, type Page } from '@playwright/test';
import type { Server } from '../server';

async function startShell(page: Page, server: Server, user: string): Promise<void> {
  await server.createUser(user, 'glass-password-1');
  await signIn(page, server, user, 'glass-password-1');
  await page.getByLabel('Agent', { exact: true }).selectOption('bash');
  await page.getByLabel('Name').fill(user);
  await page.getByRole('button', { name: 'Start agent' }).click();
  await expect(page.locator('.term-page')).toHaveAttribute('data-connected', 'true');
  await expectTerminal(page, /^pd\$ /m);
}

async function say(page: Page, text: string): Promise<void> {
  await page.getByLabel('Message to send to the agent').fill(text);
  await page.getByRole('button', { name: 'Send message' }).click();
}

function keyBar(page: Page) {
  return page.getByRole('toolbar', { name: 'Terminal keys' });
}

/** xterm's view of its buffer: the first line shown, the last line the view can reach, the selection. */
async function view(page: Page): Promise<{ top: number; base: number; selection: string }> {
  return page.evaluate(() => {
    const term = (document.querySelector('.term-screen') as Element & { terminal: { buffer: { active: { viewportY: number; baseY: number } }; getSelection(): string } }).terminal;
    return { top: term.buffer.active.viewportY, base: term.buffer.active.baseY, selection: term.getSelection() };
  });
}

/** Where a text's first cell is on the page, found in xterm's buffer (only what is on the screen). */
async function cellOf(page: Page, text: string, offset = 0): Promise<{ x: number; y: number }> {
  return page.evaluate(([needle, by]) => {
    type Line = { translateToString(trim: boolean): string };
    const term = (document.querySelector('.term-screen') as Element & { terminal: { rows: number; cols: number; buffer: { active: { viewportY: number; getLine(y: number): Line | undefined } } } }).terminal;
    const rect = document.querySelector('.xterm-screen')!.getBoundingClientRect();
    const buffer = term.buffer.active;
    for (let y = 0; y < term.rows; y++) {
      const col = buffer.getLine(buffer.viewportY + y)?.translateToString(false).indexOf(needle) ?? -1;
      if (col >= 0) {
        const w = rect.width / term.cols;
        const h = rect.height / term.rows;
        return { x: rect.left + (col + by + 0.5) * w, y: rect.top + (y + 0.5) * h };
      }
    }
    throw new Error(`${needle} is not on the screen`);
  }, [text, offset] as const);
}

async function touch(cdp: CDPSession, type: 'touchStart' | 'touchMove' | 'touchEnd', x = 0, y = 0, timestamp?: number): Promise<void> {
  await cdp.send('Input.dispatchTouchEvent', { type, touchPoints: type === 'touchEnd' ? [] : [{ x, y }], timestamp });
}

/**
 * A vertical swipe of `dy` pixels in five moves `stepMs` apart, the finger lifted `holdMs` after
 * the last; the events carry these times, so a busy machine does not change the gesture.
 */
async function swipe(cdp: CDPSession, x: number, y: number, dy: number, stepMs: number, holdMs: number): Promise<void> {
  const t0 = Date.now() / 1000;
  await touch(cdp, 'touchStart', x, y, t0);
  for (let i = 1; i <= 5; i++) await touch(cdp, 'touchMove', x, y + (dy * i) / 5, t0 + (i * stepMs) / 1000);
  await touch(cdp, 'touchEnd', 0, 0, t0 + (5 * stepMs + holdMs) / 1000);
}

test('a flick carries on scrolling, the thumb reaches the top, the pill counts new lines and goes back', async ({ page, server, context }, info) => {
  test.skip(info.project.name !== 'phone', 'touch scrolling');
  await startShell(page, server, 'flick');
  await say(page, 'seq 1 3000');
  await expectTerminal(page, /^3000$/m);
  const screen = (await page.locator('.term-screen').boundingBox())!;
  const x = screen.x + screen.width / 2;
  const cdp = await context.newCDPSession(page);
  const rowHeight = await page.evaluate(() => {
    const t = (document.querySelector('.term-screen') as Element & { terminal: { rows: number } }).terminal;
    return document.querySelector('.xterm-screen')!.getBoundingClientRect().height / t.rows;
  });

  // A slow drag of 150 px moves the text with the finger, and no further.
  let before = await view(page);
  await swipe(cdp, x, screen.y + 100, 150, 200, 300);
  await page.waitForTimeout(600);
  const dragged = before.top - (await view(page)).top;
  expect(dragged).toBeGreaterThanOrEqual(Math.floor(150 / rowHeight) - 1);
  expect(dragged).toBeLessThanOrEqual(Math.ceil(150 / rowHeight) + 1);

  // The same 150 px as a quick flick keeps going after the finger lifts.
  before = await view(page);
  await swipe(cdp, x, screen.y + 100, 150, 16, 16);
  await expect.poll(async () => before.top - (await view(page)).top, { message: 'momentum' }).toBeGreaterThan(dragged * 2);

  // The pill is there while scrolled back; output arriving meanwhile is counted.
  const pill = page.locator('.term-latest');
  await expect(pill).toBeVisible();
  await expect(pill).toHaveText('↓ Latest');
  await page.evaluate(() => (document.querySelector('.term-screen') as Element & { terminal: { scrollToBottom(): void } }).terminal.scrollToBottom());
  await say(page, 'sleep 1; seq 1 5');
  await swipe(cdp, x, screen.y + 100, 160, 100, 300);
  await expect(pill).toHaveText(/^↓ [5-7] new lines$/);
  await pill.tap();
  await expect(pill).toBeHidden();
  const latest = await view(page);
  expect(latest.top).toBe(latest.base);

  // Dragging the thumb to the top of its track reaches line 1 of 3,000.
  const track = page.locator('.term-track');
  await expect(track).toBeVisible();
  const thumb = (await page.locator('.term-thumb').boundingBox())!;
  const trackBox = (await track.boundingBox())!;
  const tx = thumb.x + thumb.width / 2;
  await touch(cdp, 'touchStart', tx, thumb.y + thumb.height / 2);
  for (let i = 1; i <= 6; i++) await touch(cdp, 'touchMove', tx, thumb.y + thumb.height / 2 - (i * (thumb.y - trackBox.y + 40)) / 6);
  await touch(cdp, 'touchEnd');
  await expect.poll(async () => (await view(page)).top).toBe(0);
  await expect.poll(() => terminalText(page)).toMatch(/^pd\$ seq 1 3000\s*$/m);
  await cdp.detach();
});

test('a long press selects a word in place; its handles stretch it; the menu copies and offers the link', async ({ page, server, context }, info) => {
  test.skip(info.project.name !== 'phone', 'touch selection');
  await context.grantPermissions(['clipboard-read', 'clipboard-write']);
  await startShell(page, server, 'handles');
  await say(page, 'clear; echo "one hello-there https://example.com/path end"');
  await expectTerminal(page, /^one hello-there https:\/\/example\.com\/path end$/m);
  const cdp = await context.newCDPSession(page);

  // Hold on the last line's "hello-there" (not the command's copy of it above).
  const rows = (await terminalText(page)).split('\n');
  const row = rows.findIndex((r) => r.startsWith('one hello-there'));
  const word = await page.evaluate((y) => {
    const t = (document.querySelector('.term-screen') as Element & { terminal: { rows: number; cols: number } }).terminal;
    const rect = document.querySelector('.xterm-screen')!.getBoundingClientRect();
    return { x: rect.left + 6.5 * (rect.width / t.cols), y: rect.top + (y + 0.5) * (rect.height / t.rows) };
  }, row);
  await touch(cdp, 'touchStart', word.x, word.y);
  await page.waitForTimeout(800);
  await touch(cdp, 'touchEnd');
  const menu = page.getByRole('toolbar', { name: 'Selection' });
  await expect(menu).toBeVisible();
  expect((await view(page)).selection).toBe('hello-there');
  await expect(menu.getByRole('button', { name: 'Open link' })).toBeHidden();
  // No sheet over the terminal: the selection is on the terminal itself.
  await expect(page.getByRole('dialog', { name: 'Select text' })).toHaveCount(0);

  // The end handle, dragged to the end of the link, takes the link in.
  const handle = (await page.locator('.sel-end').boundingBox())!;
  const to = await cellOf(page, 'path end', 3);
  await touch(cdp, 'touchStart', handle.x + handle.width / 2, handle.y + handle.height / 2);
  for (let i = 1; i <= 5; i++) await touch(cdp, 'touchMove', handle.x + handle.width / 2 + ((to.x - handle.x - handle.width / 2) * i) / 5, to.y + 18);
  await touch(cdp, 'touchEnd');
  await expect.poll(async () => (await view(page)).selection).toBe('hello-there https://example.com/path');
  await expect(menu.getByRole('button', { name: 'Open link' })).toBeVisible();

  // Copy reads xterm's selection, which a tap cannot clear.
  await menu.getByRole('button', { name: 'Copy', exact: true }).tap();
  await expect(page.getByText('Copied.')).toBeVisible();
  expect(await page.evaluate(() => navigator.clipboard.readText())).toBe('hello-there https://example.com/path');

  // A tap elsewhere ends it.
  await touch(cdp, 'touchStart', word.x, word.y + 200);
  await touch(cdp, 'touchEnd');
  await expect(menu).toBeHidden();
  expect((await view(page)).selection).toBe('');
  await cdp.detach();
});

test('the key bar: a drag key moves the cursor, a long press offers alternates, keys are the user’s to choose', async ({ page, server }, info) => {
  await startShell(page, server, `keys2${info.project.name}`);
  const bar = keyBar(page);

  // Dragging ✥ two steps left puts the X between a and b.
  await page.locator('.xterm-helper-textarea').focus();
  await page.keyboard.type('echo abc');
  const joystick = (await bar.getByRole('button', { name: 'Arrows: drag in any direction' }).boundingBox())!;
  const cx = joystick.x + joystick.width / 2;
  const cy = joystick.y + joystick.height / 2;
  await page.mouse.move(cx, cy);
  await page.mouse.down();
  for (let i = 1; i <= 8; i++) await page.mouse.move(cx - i * 5, cy);
  await page.mouse.up();
  await page.keyboard.type('X');
  await page.keyboard.press('Enter');
  await expectTerminal(page, /^aXbc$/m);

  // A long press on ^C offers ^A; in `cat -v` it shows as ^A.
  await say(page, 'cat -v');
  await page.waitForTimeout(300);
  const ctrlC = bar.getByRole('button', { name: 'Control-C', exact: true });
  const box = (await ctrlC.boundingBox())!;
  await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
  await page.mouse.down();
  await page.waitForTimeout(700);
  await page.mouse.up();
  const alternates = page.getByRole('menu', { name: 'More keys' });
  await expect(alternates).toBeVisible();
  await expect(alternates.getByRole('menuitem')).toHaveText(['^D', '^Z', '^R', '^L', '^A', '^E', '^U', '^W']);
  await alternates.getByRole('menuitem', { name: 'Control-A' }).click();
  await expect(alternates).toBeHidden();
  // The long press itself sent no ^C: cat is still running.
  await bar.getByRole('button', { name: 'Enter', exact: true }).click();
  await expect.poll(async () => (await terminalText(page)).match(/^\^A$/gm)?.length ?? 0).toBe(2);
  // Esc's alternates hold the shell's punctuation.
  const esc = (await bar.getByRole('button', { name: 'Esc (Escape)' }).boundingBox())!;
  await page.mouse.move(esc.x + esc.width / 2, esc.y + esc.height / 2);
  await page.mouse.down();
  await page.waitForTimeout(700);
  await page.mouse.up();
  await alternates.getByRole('menuitem', { name: '| (pipe)' }).click();
  await bar.getByRole('button', { name: 'Enter', exact: true }).click();
  await expect.poll(async () => (await terminalText(page)).match(/^\|$/gm)?.length ?? 0).toBe(2);
  await bar.getByRole('button', { name: 'Control-C', exact: true }).click();
  await expectTerminal(page, /^pd\$ \s*$/m);

  // Customize: drop Select, put Enter first; kept across a reload, and Defaults bring all back.
  const labels = () => bar.locator('.key:not(.fold)').evaluateAll((keys) => keys.map((k) => k.getAttribute('aria-label')));
  expect(await labels()).toContain('Select and copy text');
  await page.getByRole('button', { name: 'More' }).click();
  await page.getByRole('menuitem', { name: 'Customize keys' }).click();
  const dialog = page.getByRole('dialog', { name: 'Customize keys' });
  await dialog.getByLabel('Show Select and copy text').uncheck();
  for (let i = 0; i < 10; i++) await dialog.getByRole('button', { name: 'Move Enter earlier' }).click();
  await dialog.getByRole('button', { name: 'Save' }).click();
  await expect(dialog).toBeHidden();
  expect((await labels())[0]).toBe('Enter');
  expect(await labels()).not.toContain('Select and copy text');
  await page.reload();
  await expect(page.locator('.term-page')).toHaveAttribute('data-connected', 'true');
  expect((await labels())[0]).toBe('Enter');
  expect(await labels()).not.toContain('Select and copy text');
  await page.getByRole('button', { name: 'More' }).click();
  await page.getByRole('menuitem', { name: 'Customize keys' }).click();
  await dialog.getByRole('button', { name: 'Defaults' }).click();
  await dialog.getByRole('button', { name: 'Save' }).click();
  expect((await labels())[0]).toBe('Esc (Escape)');
  expect(await labels()).toContain('Select and copy text');
});

test.describe('on Android', () => {
  test.use({ userAgent: devices['Pixel 5'].userAgent });
  test('a tap on the terminal opens the message box; ⌨ still types straight in', async ({ page, server }, info) => {
    test.skip(info.project.name !== 'phone', 'an Android phone');
    await startShell(page, server, 'android');
    await page.locator('.term-screen').tap();
    await expect(page.getByLabel('Message to send to the agent')).toBeFocused();
    await say(page, 'echo typed-through-the-box');
    await expectTerminal(page, /^typed-through-the-box$/m);
    await keyBar(page).getByRole('button', { name: 'Type directly into the terminal' }).tap();
    await expect(page.locator('.xterm-helper-textarea')).toBeFocused();
    await page.keyboard.type('echo direct\n');
    await expectTerminal(page, /^direct$/m);
  });
});

test("Claude Code's symbols have a font of their own, not tofu", async ({ page, server }, info) => {
  await startShell(page, server, `glyphs${info.project.name}`);
  await say(page, "printf '\\u23fa Read \\u23bf done \\u23f8 plan \\u23f5\\u23f5 \\u29c9\\n'");
  await expectTerminal(page, /^⏺ Read ⎿ done ⏸ plan ⏵⏵ ⧉$/m);
  // The terminal names the font after its monospace ones, and the page can load it for exactly
  // these glyphs (the monospace fonts of phones and Debian lack them).
  const family = await page.locator('.xterm-rows').evaluate((el) => getComputedStyle(el).fontFamily);
  expect(family).toMatch(/monospace, "pocketdev symbols"$/);
  const loaded = await page.evaluate(async () => (await document.fonts.load('16px "pocketdev symbols"', '⏺⎿⏸⏵⧉')).length);
  expect(loaded).toBe(3);
  expect(await page.evaluate(() => document.fonts.check('16px "pocketdev symbols"', '⏺⎿⏸⏵⧉'))).toBe(true);
});
