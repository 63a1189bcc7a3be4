// One-tap approvals with the real Claude Code CLI (against the mock Messages API): a Write tool
// call asks permission; the dashboard's card shows the question, Allow writes the file and
// Deny does not; the card follows a question replaced by another; and the terminal shows the
// question as a sheet over it. Needs the pinned CLI (see claude.spec.ts).
import { test as base, expect, signIn, shot, expectAccessible } from '../fixtures';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { MockAnthropic } from '../mock-anthropic';
import { ROOT, type Server } from '../server';

const PROFILE = 'claude-sonnet-4-5-20250929';
const CLAUDE = process.env.POCKETDEV_TEST_CLAUDE ?? join(ROOT, '.test-tools/node_modules/.bin/claude');
const API_KEY = 'sk-ant-api03-pocketdev-e2e-key-0123456789';

const test = base.extend<object, { mock: MockAnthropic }>({
  mock: [async ({}, use) => {
    const mock = new MockAnthropic();
    await mock.start();
    await use(mock);
    await mock.stop();
  }, { scope: 'worker' }],
  serverOptions: [async ({ mock }, use) => {
    await use({ extraToml: ['[monitor]', 'interval_secs = 1', `[profiles.${PROFILE}]`, `command = "${CLAUDE}"`,
      `[profiles.${PROFILE}.env]`, `ANTHROPIC_BASE_URL = "${mock.url}"`].join('\n') });
  }, { scope: 'worker' }],
});

interface Approval { id: string; tool: string; detail: string }

/** An agent of one user, driven through the API as a script would, answered in the page. */
class Agent {
  constructor(readonly server: Server, readonly token: string, readonly id: string, readonly workspace: string) {}

  async get(): Promise<{ pending_approval: Approval | null; status: string | null }> {
    return (await this.server.api('GET', `api/instances/${this.id}`, this.token)).json();
  }

  async screen(): Promise<string> {
    const body = await (await this.server.api('GET', `api/instances/${this.id}/output?lines=0`, this.token)).json();
    return body.output ?? '';
  }

  async keys(body: Record<string, unknown>): Promise<void> {
    const response = await this.server.api('POST', `api/instances/${this.id}/command`, this.token, body);
    expect(response.status).toBe(204);
  }

  /** Asks Claude Code to write `name`; returns the approval it asks (not `not`). */
  async askToWrite(name: string, not = ''): Promise<Approval> {
    const input = JSON.stringify({ file_path: join(this.workspace, name), content: `${name} from Claude Code\n` });
    // Fast input looks like a paste to Claude Code, which may swallow an Enter with it.
    await this.keys({ text: `MOCK-TOOL:Write ${input}`, enter: false });
    let approval: Approval | null = null;
    await expect.poll(async () => {
      await this.keys({ keys: ['enter'], enter: false });
      for (let i = 0; i < 20 && !approval; i++) {
        await new Promise((ok) => setTimeout(ok, 200));
        const now = (await this.get()).pending_approval;
        if (now && now.id !== not) approval = now;
      }
      return approval?.detail;
    }, { timeout: 60_000, intervals: [700] }).toBe(name);
    return approval!;
  }

  async idle(): Promise<void> {
    await expect.poll(() => this.screen(), { timeout: 30_000 }).toContain('? for shortcuts');
  }
}

async function startAgent(server: Server, user: string, password: string): Promise<Agent> {
  const userId = await server.createUser(user, password);
  const { token } = await server.token(user, password);
  expect((await server.api('PUT', 'api/secrets/ANTHROPIC_API_KEY', token, { value: API_KEY })).ok).toBe(true);
  const created = await server.api('POST', 'api/instances', token, { profile: PROFILE, name: 'writer' });
  expect(created.status).toBe(201);
  const agent = new Agent(server, token, ((await created.json()) as { id: string }).id, server.workspace(userId));
  await expect.poll(() => agent.screen(), { timeout: 60_000 }).toContain('? for shortcuts');
  return agent;
}


test('a Write tool call is allowed and denied from the card and the terminal, following the question live', async ({ page, server }, info) => {
  test.setTimeout(240_000);
  if (!existsSync(CLAUDE)) {
    if (process.env.POCKETDEV_E2E_SKIP_CLAUDE === '1') test.skip(true, 'POCKETDEV_E2E_SKIP_CLAUDE=1 and the Claude Code CLI is not installed');
    throw new Error(`the Claude Code CLI is not installed at ${CLAUDE}: run scripts/test.sh, or set POCKETDEV_E2E_SKIP_CLAUDE=1`);
  }
  const user = `pat${info.project.name}`;
  const agent = await startAgent(server, user, 'pat-password-1');
  await signIn(page, server, user, 'pat-password-1');
  const card = page.getByRole('article', { name: 'writer' });

  // Allow, from the card.
  await agent.askToWrite('allowed.txt');
  const question = card.getByRole('region', { name: /Permission/ });
  await expect(question).toContainText('Create file');
  await expect(question).toContainText('allowed.txt');
  await expect(question).toContainText('allowed.txt from Claude Code');
  const buttons = question.getByRole('button');
  await expect(buttons).toHaveCount(3);
  await expect(buttons.nth(0)).toHaveClass(/primary/);
  await shot(page, info, '40-approval-card');
  await expectAccessible(page, 'a question on the card');
  await question.getByRole('button', { name: /^Allow/ }).click();
  await expect(page.getByText('writer: Answered.')).toBeVisible();
  await expect.poll(() => existsSync(join(agent.workspace, 'allowed.txt')), { timeout: 30_000 }).toBe(true);
  await expect(question).toHaveCount(0);
  await agent.idle();

  // Deny, from the card.
  await agent.askToWrite('denied.txt');
  await expect(question).toContainText('denied.txt');
  await question.getByRole('button', { name: /^Deny/ }).click();
  await expect(page.getByText('writer: Answered.')).toBeVisible();
  await agent.idle();
  expect(existsSync(join(agent.workspace, 'denied.txt'))).toBe(false);

  // Denied in the terminal and another question asked: the card follows live (the event
  // stream); a tap on the old question would be `changed` (tests/api/approvals.rs).
  const first = await agent.askToWrite('first.txt');
  await expect(question).toContainText('first.txt');
  await new Promise((ok) => setTimeout(ok, 600));
  await agent.keys({ keys: ['esc'], enter: false });
  await agent.idle();
  await expect(question).toHaveCount(0);
  await agent.askToWrite('second.txt', first.id);
  await expect(question).toContainText('second.txt');
  expect(existsSync(join(agent.workspace, 'first.txt'))).toBe(false);

  // In the terminal: the same question as a sheet above the keys, which stay usable.
  await card.getByRole('link').first().click();
  await expect(page.locator('.term-page')).toHaveAttribute('data-connected', 'true');
  const sheet = page.getByRole('region', { name: 'Permission needed' });
  await expect(sheet).toContainText('second.txt');
  await expect(page.getByRole('toolbar', { name: 'Terminal keys' })).toBeInViewport();
  await shot(page, info, '41-approval-sheet');
  // The sheet only: the agent's own dim text in the terminal is not the sheet's to judge.
  await expectAccessible(page, 'the question over the terminal', '.approval-sheet');
  await sheet.getByRole('button', { name: /^Allow/ }).click();
  await expect(sheet).toContainText('Answered.');
  await expect.poll(() => existsSync(join(agent.workspace, 'second.txt')), { timeout: 30_000 }).toBe(true);
  await expect(sheet).toBeHidden();
});
