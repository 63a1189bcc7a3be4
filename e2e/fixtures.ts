// Shared test fixtures: a server per test file, a page that fails the test on console errors,
// sign-in, terminal text, phone-profile screenshots in artifacts/, and axe-core's check.
import { test as base, expect, type Page, type TestInfo } from '@playwright/test';
import { mkdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { Server, type ServerOptions } from './server';

export { expect };
export const ARTIFACTS = join(import.meta.dirname, 'artifacts');

// Failed requests the app expects and explains to the user itself (a 401 before sign-in, a 403 for a disabled account, a 409
// on a save conflict): Chromium logs each as a console error, which says nothing about the app.
const EXPECTED_NETWORK = /Failed to load resource: the server responded with a status of (401|403|409)/;

export function watchConsole(page: Page, errors: string[]): void {
  page.on('console', (message) => {
    if (message.type() === 'error' && !EXPECTED_NETWORK.test(message.text())) errors.push(`console: ${message.text()}`);
  });
  page.on('pageerror', (error) => errors.push(`page error: ${error.message}`));
}

export const test = base.extend<{ consoleErrors: string[] }, { server: Server; serverOptions: ServerOptions }>({
  serverOptions: [{}, { option: true, scope: 'worker' }],
  server: [async ({ serverOptions }, use) => {
    const server = await Server.start(serverOptions);
    await use(server);
    await server.stop();
  }, { scope: 'worker' }],
  consoleErrors: [async ({ page, server }, use, info) => {
    const errors: string[] = [];
    watchConsole(page, errors);
    const logStart = server.logs().length;
    await use(errors);
    if (info.status !== info.expectedStatus) {
      await info.attach('server-log', { body: server.logs().slice(logStart).replace(/\x1b\[[0-9;]*m/g, ''), contentType: 'text/plain' });
      console.log(server.logs().slice(logStart).replace(/\x1b\[[0-9;]*m/g, '').slice(-4000));
    }
    expect(errors, 'no console errors').toEqual([]);
  }, { auto: true }],
});

export async function signIn(page: Page, server: Server, username = 'admin', password = server.adminPassword): Promise<void> {
  await page.goto(server.url + '/');
  await page.getByLabel('Username').fill(username);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await expect(page.getByRole('heading', { name: 'Agents' })).toBeVisible();
}

/** The terminal's visible text (xterm's DOM renderer), rows joined by newlines. */
export async function terminalText(page: Page): Promise<string> {
  return (await page.locator('.xterm-rows').innerText()).replace(/\u00a0/g, ' ');
}

export async function expectTerminal(page: Page, pattern: RegExp | string, timeout = 15_000): Promise<void> {
  await expect.poll(() => terminalText(page), { timeout, message: `terminal shows ${pattern}` })
    .toMatch(typeof pattern === 'string' ? new RegExp(pattern.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')) : pattern);
}

/** Phone-profile screenshots go to artifacts/<name>.png. */
export async function shot(page: Page, info: TestInfo, name: string): Promise<void> {
  if (info.project.name !== 'phone') return;
  mkdirSync(ARTIFACTS, { recursive: true });
  // Toasts come and go; the screen is what matters.
  await page.evaluate(() => {
    document.querySelector('.toasts')?.replaceChildren();
    window.scrollTo(0, 0);
  });
  await page.screenshot({ path: join(ARTIFACTS, `${name}.png`) });
}

/** What the page's terminal holds on its screen (xterm's buffer API): rows, trailing blanks trimmed, and the cursor. */
export async function renderedScreen(page: Page): Promise<{ rows: string[]; cursor: [number, number] }> {
  return page.evaluate(() => {
    type Line = { translateToString(trim: boolean): string };
    type Buffer = { baseY: number; cursorX: number; cursorY: number; getLine(y: number): Line | undefined };
    const screen = document.querySelector('.term-screen') as (Element & { terminal?: { rows: number; buffer: { active: Buffer } } }) | null;
    const term = screen?.terminal;
    if (!term) return { rows: [], cursor: [-1, -1] as [number, number] };
    const buffer = term.buffer.active;
    const rows = Array.from({ length: term.rows }, (_, y) => (buffer.getLine(buffer.baseY + y)?.translateToString(true) ?? '').trimEnd());
    return { rows, cursor: [buffer.cursorX, buffer.cursorY] as [number, number] };
  });
}

/** What tmux itself shows in the agent's pane: rows (trailing blanks trimmed) and the cursor. */
export function tmuxScreen(server: Server, id: string): { rows: string[]; cursor: [number, number] } {
  const target = `=pd-${id}:`;
  const rows = server.tmux('capture-pane', '-p', '-t', target).replace(/\n$/, '').split('\n').map((r) => r.trimEnd());
  const [x, y] = server.tmux('display-message', '-p', '-t', target, '#{cursor_x} #{cursor_y}').trim().split(' ').map(Number);
  return { rows, cursor: [x, y] };
}

/**
 * The page's terminal shows exactly what tmux shows in the pane, row by row, with the cursor in the same cell (retried for
 * `timeout`: a redraw may be under way).
 */
export async function expectScreenMatchesTmux(page: Page, server: Server, id: string, timeout = 10_000): Promise<void> {
  await expect.poll(async () => {
    const shown = await renderedScreen(page);
    const truth = tmuxScreen(server, id);
    return JSON.stringify(shown) === JSON.stringify(truth) ? 'same' : JSON.stringify({ shown, truth }, null, 1);
  }, { timeout, message: 'the terminal shows what tmux shows' }).toBe('same');
}

// axe-core's WCAG 2 A/AA rules, injected through the DevTools protocol (the app's CSP refuses
// script tags), in the light and the dark theme.
const axeSource = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');
export async function expectAccessible(page: Page, screen: string, within = 'html'): Promise<void> {
  for (const scheme of ['light', 'dark'] as const) {
    await page.emulateMedia({ colorScheme: scheme });
    await page.evaluate(axeSource);
    const violations = await page.evaluate(async (selector) => {
      // @ts-expect-error axe is injected above
      const result = await window.axe.run(document.querySelector(selector), { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] } });
      return (result.violations as { id: string; nodes: { target: string[] }[] }[]).map((v) => `${v.id}: ${v.nodes.map((n) => n.target.join(' ')).join('; ')}`);
    }, within);
    expect(violations, `${screen} (${scheme})`).toEqual([]);
  }
  await page.emulateMedia({ colorScheme: null });
}
