// Suspend and resume in the browser: an idle agent suspended from its card or from the terminal's
// menu frees its process and comes back where it was (the resumable fake agent of e2e/server.ts
// replays its conversation as `earlier: …`); a turn of the real Claude Code CLI cut by a kill is
// named after the resume and sent again with one tap (needs the pinned CLI, as claude.spec.ts).
import { test as base, expect, signIn, shot, expectTerminal, terminalText, expectAccessible } from '../fixtures';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { MockAnthropic, REPLY_PREFIX, SLOW_TRIGGER } from '../mock-anthropic';
import { ROOT, type Server } from '../server';
import type { Page } from '@playwright/test';

const RESUMABLE = 'fake-resumable';
const CLAUDE_PROFILE = 'claude-sonnet-4-5-20250929';
const CLAUDE = process.env.POCKETDEV_TEST_CLAUDE ?? join(ROOT, '.test-tools/node_modules/.bin/claude');
const API_KEY = 'sk-ant-api03-pocketdev-e2e-key-0123456789';

const test = base.extend<object, { mock: MockAnthropic }>({
  mock: [async ({}, use) => {
    const mock = new MockAnthropic();
    await mock.start();
    await use(mock);
    await mock.stop();
  }, { scope: 'worker' }],
  // The monitor measures each agent every second, so a suspension knows what it freed.
  serverOptions: [async ({ mock }, use) => {
    await use({ extraToml: ['[monitor]', 'interval_secs = 1', `[profiles.${CLAUDE_PROFILE}]`, `command = "${CLAUDE}"`,
      `[profiles.${CLAUDE_PROFILE}.env]`, `ANTHROPIC_BASE_URL = "${mock.url}"`].join('\n') });
  }, { scope: 'worker' }],
});

interface InstanceJson {
  id: string;
  state: string;
  memory_bytes?: number | null;
  agent_session_id?: string | null;
  suspend_reason?: string | null;
  interrupted?: { kind: string; text: string; prompt: string | null } | null;
}

async function instance(server: Server, token: string, id: string): Promise<InstanceJson> {
  return (await server.api('GET', `api/instances/${id}`, token)).json();
}

async function createAgent(page: Page, profile: string, name: string): Promise<string> {
  await page.getByLabel('Agent', { exact: true }).selectOption(profile);
  await page.getByLabel('Name').fill(name);
  await page.getByRole('button', { name: 'Start agent' }).click();
  await expect(page.locator('.term-title')).toHaveText(name);
  await expect(page.locator('.term-page')).toHaveAttribute('data-connected', 'true');
  return new URL(page.url()).hash.replace('#/t/', '');
}

async function say(page: Page, text: string): Promise<void> {
  await page.getByLabel('Message to send to the agent').fill(text);
  await page.getByRole('button', { name: 'Send message' }).click();
}

/** Records every text the terminal's banner shows from now on (some last a blink), in the page. */
async function recordBanners(page: Page): Promise<void> {
  await page.evaluate(() => {
    const seen: string[] = [];
    (window as unknown as { banners: string[] }).banners = seen;
    const look = () => {
      const banner = document.querySelector<HTMLElement>('.term-banner');
      const text = banner && !banner.hidden ? banner.textContent ?? '' : '';
      if (text && seen[seen.length - 1] !== text) seen.push(text);
    };
    new MutationObserver(look).observe(document.body, { subtree: true, childList: true, attributes: true, characterData: true });
  });
}

async function bannersSeen(page: Page): Promise<string[]> {
  return page.evaluate(() => (window as unknown as { banners: string[] }).banners);
}


test('an agent suspended from its card frees its memory and opens where it was', async ({ page, server }, info) => {
  const user = `susp${info.project.name}`;
  await server.createUser(user, 'suspend-password-1');
  const { token } = await server.token(user, 'suspend-password-1');
  await signIn(page, server, user, 'suspend-password-1');
  const name = `sleeper-${info.project.name}`;
  const id = await createAgent(page, RESUMABLE, name);
  await expectTerminal(page, 'agent> ');
  await say(page, 'remember the milk');
  await expectTerminal(page, 'you said: remember the milk');
  // Measured once, so the suspension can say what it freed.
  await expect.poll(async () => (await instance(server, token, id)).memory_bytes ?? 0, { timeout: 20_000 }).toBeGreaterThan(0);
  await page.getByRole('link', { name: 'Back to agents' }).click();

  const card = page.getByRole('article', { name });
  const menuItem = async (label: string) => {
    await card.getByRole('button', { name: `More for ${name}` }).click();
    return card.getByRole('menuitem', { name: label, exact: true });
  };
  await (await menuItem('Suspend')).click();
  await expect(page.getByText(`Suspended ${name}: it resumes when you open it.`)).toBeVisible();
  await expect(card.locator('.badge')).toHaveText('suspended');
  await expect(card.locator('.card-meta')).toContainText('suspended by you');
  await expect(card.locator('.card-meta')).toContainText(/freed \d+(\.\d+)? [KMG]B/);
  await expect(card.locator('.card-meta')).toContainText('opens where it was');
  expect((await instance(server, token, id)).state).toBe('suspended');
  await shot(page, info, '50-suspended-card');
  await expectAccessible(page, 'the dashboard with a suspended agent');

  // The menu offers Resume now, not Suspend.
  await expect(await menuItem('Resume')).toBeVisible();
  await expect(card.getByRole('menuitem', { name: 'Suspend', exact: true })).toHaveCount(0);
  await page.keyboard.press('Escape');

  // A tap on the card opens the terminal, which resumes the agent: it says so, then shows the conversation.
  await recordBanners(page);
  await card.getByRole('link').first().click();
  await expect(page.locator('.term-page')).toHaveAttribute('data-connected', 'true');
  await expectTerminal(page, `resumed conversation`);
  await expectTerminal(page, 'earlier: remember the milk');
  await expect(page.locator('.term-banner')).toBeHidden();
  expect(await bannersSeen(page)).toContain('Resuming the agent where it was…');
  await expect(page.locator('.term-status .badge')).not.toHaveText('suspended');
  await say(page, 'and the bread');
  await expectTerminal(page, 'you said: and the bread');
  expect((await instance(server, token, id)).state).toBe('running');

  // Resume from the card's menu: the agent runs again without opening it.
  await page.getByRole('link', { name: 'Back to agents' }).click();
  await (await menuItem('Suspend')).click();
  await expect(card.locator('.badge')).toHaveText('suspended');
  await (await menuItem('Resume')).click();
  await expect(page.getByText(`Resumed ${name}.`)).toBeVisible();
  await expect(card.locator('.badge')).not.toHaveText('suspended');
  await expect.poll(async () => (await instance(server, token, id)).state).toBe('running');
  await card.getByRole('link').first().click();
  await expect(page.locator('.term-page')).toHaveAttribute('data-connected', 'true');
  await expectTerminal(page, 'earlier: and the bread');
  await say(page, 'one more thing');
  await expectTerminal(page, 'you said: one more thing');
});

test("the terminal's menu suspends the agent, and its banner's Resume brings it back", async ({ page, server }, info) => {
  const user = `tsusp${info.project.name}`;
  await server.createUser(user, 'suspend-password-2');
  const { token } = await server.token(user, 'suspend-password-2');
  await signIn(page, server, user, 'suspend-password-2');

  // An agent that cannot resume is not offered a suspension; the API refuses one in words.
  const plain = await createAgent(page, 'fake', `plain-${info.project.name}`);
  await expectTerminal(page, 'agent> ');
  await page.getByRole('button', { name: 'More' }).click();
  await expect(page.getByRole('menuitem', { name: 'Files' })).toBeVisible();
  await expect(page.getByRole('menuitem', { name: 'Suspend (free its memory)' })).toHaveCount(0);
  await page.keyboard.press('Escape');
  const refused = await server.api('POST', `api/instances/${plain}/suspend`, token);
  expect(refused.status).toBe(409);
  expect(((await refused.json()) as { error: { message: string } }).error.message).toMatch(/cannot resume/);
  await page.getByRole('link', { name: 'Back to agents' }).click();

  const id = await createAgent(page, RESUMABLE, `napper-${info.project.name}`);
  await expectTerminal(page, 'agent> ');
  await say(page, 'before the nap');
  await expectTerminal(page, 'you said: before the nap');
  await page.getByRole('button', { name: 'More' }).click();
  await page.getByRole('menuitem', { name: 'Suspend (free its memory)' }).click();
  const banner = page.locator('.term-banner');
  await expect(banner).toContainText('Suspended: the agent\'s process is gone and its memory free.');
  await expect(page.locator('.term-status .badge')).toHaveText('suspended');
  await expect(page.locator('.term-page')).toHaveAttribute('data-connected', 'false');
  expect((await instance(server, token, id)).suspend_reason).toBe('user');
  // What it showed stays on screen meanwhile.
  expect(await terminalText(page)).toContain('you said: before the nap');
  await shot(page, info, '51-suspended-terminal');
  await expectAccessible(page, 'the suspended banner', '.term-banner');

  await banner.getByRole('button', { name: 'Resume' }).click();
  await expect(page.locator('.term-page')).toHaveAttribute('data-connected', 'true');
  await expectTerminal(page, 'earlier: before the nap');
  await expect(banner).toBeHidden();
  await expect(page.locator('.term-status .badge')).not.toHaveText('suspended');
  await say(page, 'after the nap');
  await expectTerminal(page, 'you said: after the nap');
  expect((await instance(server, token, id)).state).toBe('running');
});

/** The Claude Code processes on conversation `session` (not a launcher or a sandbox on the way to one). */
function claudeProcesses(session: string): number[] {
  return readdirSync('/proc').filter((entry) => /^\d+$/.test(entry)).flatMap((pid) => {
    let words: string[];
    try {
      words = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    } catch {
      return [];
    }
    return words.includes(session) && !words.includes('launch') && !(words[0] ?? '').endsWith('bwrap') ? [Number(pid)] : [];
  });
}

/** Claude Code's transcript of conversation `session` under `home`, or '' before it has one. */
function transcript(home: string, session: string): string {
  const projects = join(home, '.claude/projects');
  if (!existsSync(projects)) return '';
  const file = readdirSync(projects).map((dir) => join(projects, dir, `${session}.jsonl`)).find((path) => existsSync(path));
  return file ? readFileSync(file, 'utf8') : '';
}

test('a turn cut short by a kill is named after the resume and sent again with one tap', async ({ page, server, mock }, info) => {
  test.setTimeout(180_000);
  if (!existsSync(CLAUDE)) {
    if (process.env.POCKETDEV_E2E_SKIP_CLAUDE === '1') test.skip(true, 'POCKETDEV_E2E_SKIP_CLAUDE=1 and the Claude Code CLI is not installed');
    throw new Error(`the Claude Code CLI is not installed at ${CLAUDE}: run scripts/test.sh, or set POCKETDEV_E2E_SKIP_CLAUDE=1`);
  }
  const user = `lost${info.project.name}`;
  const userId = await server.createUser(user, 'lost-password-1');
  const { token } = await server.token(user, 'lost-password-1');
  expect((await server.api('PUT', 'api/secrets/ANTHROPIC_API_KEY', token, { value: API_KEY })).ok).toBe(true);
  await signIn(page, server, user, 'lost-password-1');
  const name = `cut-${info.project.name}`;
  const id = await createAgent(page, CLAUDE_PROFILE, name);
  await expectTerminal(page, '? for shortcuts', 60_000);
  await say(page, 'A finished turn');
  await expectTerminal(page, `${REPLY_PREFIX}: I read "A finished turn"`, 60_000);

  // Mid-turn (the mock takes its time), the CLI is killed.
  const prompt = `Count the files ${info.project.name}, ${SLOW_TRIGGER}`;
  const asked = () => mock.seen.filter((s) => JSON.stringify(s.body.messages ?? []).includes(`Count the files ${info.project.name}`)).length;
  await say(page, prompt);
  await expect.poll(asked, { timeout: 30_000, message: 'the turn began' }).toBeGreaterThan(0);
  const session = (await instance(server, token, id)).agent_session_id ?? '';
  expect(session).not.toBe('');
  // What a resume can know of the lost turn is what Claude Code saved of it: its transcript has the prompt before the kill.
  await expect.poll(() => transcript(server.workspace(userId).replace(/workspace$/, 'home'), session), { timeout: 10_000, message: 'the transcript has the prompt' })
    .toContain(`Count the files ${info.project.name}`);
  const pids = claudeProcesses(session);
  expect(pids.length).toBeGreaterThan(0);
  for (const pid of pids) process.kill(pid, 'SIGKILL');
  await expect.poll(async () => (await instance(server, token, id)).state, { timeout: 30_000 }).toBe('suspended');
  expect((await instance(server, token, id)).suspend_reason).toBe('crash');
  // The open terminal learns it at once.
  await expect(page.locator('.term-banner')).toContainText('The agent\'s process was killed. It waits suspended and comes back where it was.');
  await expect(page.locator('.term-banner').getByRole('button', { name: 'Resume' })).toBeVisible();
  await expect(page.locator('.term-status .badge')).toHaveText('suspended');

  // The dashboard says why; a tap resumes it, and the terminal names what was lost.
  await page.getByRole('link', { name: 'Back to agents' }).click();
  const card = page.getByRole('article', { name });
  await expect(card.locator('.badge')).toHaveText('suspended');
  await expect(card.locator('.card-meta')).toContainText('suspended after its process was killed');
  await card.getByRole('link').first().click();
  await expect(page.locator('.term-page')).toHaveAttribute('data-connected', 'true');
  const banner = page.locator('.term-banner');
  await expect(banner).toContainText(`The agent's process went before it answered: “${prompt}”.`, { timeout: 30_000 });
  await expect(banner.getByRole('button', { name: 'Send again' })).toBeVisible();
  await expect(banner.getByRole('button', { name: 'Dismiss' })).toBeVisible();
  await expectTerminal(page, '? for shortcuts', 60_000);
  await shot(page, info, '52-lost-turn');
  await expectAccessible(page, 'the lost-turn banner', '.term-banner');

  const before = asked();
  await banner.getByRole('button', { name: 'Send again' }).click();
  await expect(page.getByText('Sent again.')).toBeVisible();
  await expect(banner).toBeHidden();
  await expectTerminal(page, `${REPLY_PREFIX}: I read "Count the files ${info.project.name}`, 60_000);
  expect(asked()).toBeGreaterThan(before);
  expect((await instance(server, token, id)).interrupted ?? null).toBeNull();
  // Reopened, the banner does not come back.
  await page.reload();
  await expect(page.locator('.term-page')).toHaveAttribute('data-connected', 'true');
  await expectTerminal(page, '? for shortcuts');
  await page.waitForTimeout(500);
  await expect(banner).toBeHidden();
});
