// Git from the phone, start to end (phone profile only; playwright.config.ts leaves it out of
// the desktop's): a repository cloned in the app from a bare one, two agents on two new branches
// of it, each changing a file, each diff showing only its own change (with syntax colours), one
// branch committed, pushed to the bare origin and merged into main, checked with git; the
// repository's read-only Changes from Files; and deleting the other agent with its worktree,
// after the app names the file that would be lost, keeping its branch.
import { test, expect, signIn, shot, expectTerminal, expectAccessible, ARTIFACTS } from '../fixtures';
import type { Page } from '@playwright/test';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { git, noSideways } from '../git-helpers';

const APP = 'def greet(name):\n    # say hello\n    return "hello " + name\n\n\nprint(greet("world"))\n';

/** Starts the fake agent on a new branch of `repo` from the dashboard; its id. */
async function startOnBranch(page: Page, name: string, repo: string, branch: string): Promise<string> {
  await page.getByLabel('Agent', { exact: true }).selectOption('fake');
  await page.getByLabel('Name').fill(name);
  const fold = page.locator('details.branch-fold');
  if (!(await fold.evaluate((d) => (d as HTMLDetailsElement).open))) await page.getByText('Work on a branch').click();
  await page.getByLabel('Repository').fill(repo);
  await page.getByLabel('Branch', { exact: true }).fill(branch);
  await page.getByLabel('Base', { exact: true }).fill('main');
  await page.getByRole('button', { name: 'Start agent' }).click();
  await expect(page.locator('.term-title')).toHaveText(name);
  await expectTerminal(page, 'agent> ');
  return new URL(page.url()).hash.replace('#/t/', '');
}

test('clone, two agents on two branches, commit, push and merge one, from the phone', async ({ page, server }, info) => {
  test.setTimeout(240_000);
  const user = `walk${info.repeatEachIndex}r${info.retry}`;
  const password = 'walkthrough-password-1';
  const userId = await server.createUser(user, password);
  const workspace = server.workspace(userId);

  // 1. A bare repository with one commit, at an absolute path in the test's temp folder.
  const here = join(server.dir, `git-${user}`);
  const seed = join(here, 'seed');
  mkdirSync(seed, { recursive: true });
  writeFileSync(join(seed, 'app.py'), APP);
  writeFileSync(join(seed, 'README.md'), '# Shop\n');
  git(seed, 'init', '-q', '-b', 'main');
  git(seed, 'add', '-A');
  git(seed, 'commit', '-q', '-m', 'first');
  const bare = join(here, 'shop.git');
  git(here, 'clone', '-q', '--bare', seed, bare);
  const first = git(bare, 'rev-parse', 'main');

  // 2. Clone it from "Work on a branch"; the folder follows the URL.
  await signIn(page, server, user, password);
  await page.getByText('Work on a branch').click();
  await page.getByRole('button', { name: 'Clone a repository' }).click();
  const dialog = page.getByRole('dialog', { name: 'Clone a repository' });
  await dialog.getByLabel('URL').fill(bare);
  await expect(dialog.getByLabel('Folder in your workspace')).toHaveValue('shop');
  await expect(dialog).toContainText('GIT_TOKEN');
  expect(await noSideways(page), 'no horizontal scrolling').toBe(true);
  await shot(page, info, 'git-01-clone');
  await expectAccessible(page, 'the clone dialog', 'dialog[open]');
  await dialog.getByRole('button', { name: 'Clone' }).click();
  await expect(dialog).toHaveCount(0);
  await expect(page.locator('.toast').getByText('Cloned into shop (main).')).toBeVisible();
  await expect(page.getByLabel('Repository')).toHaveValue('shop');
  const clone = join(workspace, 'shop');
  expect(git(clone, 'rev-parse', 'HEAD')).toBe(first);
  expect(git(clone, 'remote', 'get-url', 'origin')).toBe(bare);
  // The same URL again: the folder is taken, said under the folder.
  await page.getByRole('button', { name: 'Clone a repository' }).click();
  await dialog.getByLabel('URL').fill(bare);
  await dialog.getByRole('button', { name: 'Clone' }).click();
  await expect(dialog.locator('#clone-folder-error')).toBeVisible();
  await expect(dialog.getByLabel('Folder in your workspace')).toHaveAttribute('aria-invalid', 'true');
  // A repository that is not there: git's words, under the URL.
  await dialog.getByLabel('URL').fill(join(here, 'missing.git'));
  await dialog.getByLabel('Folder in your workspace').fill('shop2');
  await dialog.getByRole('button', { name: 'Clone' }).click();
  await expect(dialog.locator('#clone-url-error')).toContainText(/missing\.git/);
  await expect(dialog.getByLabel('URL')).toHaveAttribute('aria-invalid', 'true');
  await expect(dialog.locator('#clone-folder-error')).toBeHidden();
  await dialog.getByRole('button', { name: 'Cancel' }).click();
  await expect(dialog).toHaveCount(0);

  // 3. Two agents on two new branches of it; each changes a file in its worktree, as an agent would.
  const idA = await startOnBranch(page, 'agent-a', 'shop', 'feature-a');
  await page.getByRole('link', { name: 'Back to agents' }).click();
  const idB = await startOnBranch(page, 'agent-b', 'shop', 'feature-b');
  const treeA = join(workspace, 'worktrees/shop/feature-a');
  const treeB = join(workspace, 'worktrees/shop/feature-b');
  expect(git(treeA, 'symbolic-ref', '--short', 'HEAD')).toBe('feature-a');
  expect(git(treeB, 'symbolic-ref', '--short', 'HEAD')).toBe('feature-b');
  writeFileSync(join(treeA, 'app.py'), APP.replace('"hello "', '"good day, "'));
  writeFileSync(join(treeB, 'NOTES.md'), '# Notes\n\nsell more\n');

  // 4. Each diff shows only its own change.
  await page.goto(`${server.url}/#/changes/${idA}`);
  const app = page.locator('.cf-file[data-path="app.py"]');
  await expect(app.locator('.cf-add .cf-word')).toHaveText(['good day, ']);
  await expect(app.locator('.cf-del .cf-word')).toHaveText(['hello ']);
  await expect(page.locator('.cf-file')).toHaveCount(1);
  // Coloured as Python: the keyword and the comment.
  await expect(app.locator('.cf-context .tok-keyword', { hasText: 'def' })).toHaveCount(1);
  await expect(app.locator('.cf-context .tok-comment')).toHaveText(['# say hello']);
  expect(await noSideways(page), 'no horizontal scrolling').toBe(true);
  await shot(page, info, 'git-02-changes-a');
  await expectAccessible(page, 'the Changes of agent-a');

  await page.goto(`${server.url}/#/changes/${idB}`);
  const notes = page.locator('.cf-file[data-path="NOTES.md"]');
  await expect(notes.locator('.cf-add .cf-text')).toHaveText(['# Notes', /^.?$/, 'sell more']);
  await expect(page.locator('.cf-file')).toHaveCount(1);
  await expect(page.locator('.cf-file[data-path="app.py"]')).toHaveCount(0);
  await shot(page, info, 'git-03-changes-b');

  // 5. Commit agent-a's change, push it to the bare origin, merge it into main.
  await page.goto(`${server.url}/#/changes/${idA}`);
  await expect(app).toBeVisible();
  const bar = page.getByRole('toolbar', { name: 'Git actions' });
  await bar.getByRole('button', { name: 'Commit' }).click();
  const sheet = page.getByRole('dialog', { name: 'Commit to feature-a' });
  await sheet.getByLabel('Message').fill('Greet with good day');
  await shot(page, info, 'git-04-commit');
  await sheet.getByRole('button', { name: 'Commit' }).click();
  await expect(page.locator('.toast').getByText(/^Committed [0-9a-f]{7}: Greet with good day$/)).toBeVisible();
  const commit = git(treeA, 'rev-parse', 'HEAD');
  await expect(page.getByRole('region', { name: 'Branch' })).toContainText('1 ahead of main');

  await bar.getByRole('button', { name: 'Push' }).click();
  await expect(page.locator('.toast').getByText('Pushed feature-a to origin.')).toBeVisible();
  expect(git(bare, 'rev-parse', 'feature-a')).toBe(commit);
  await shot(page, info, 'git-05-pushed');

  await bar.getByRole('button', { name: 'Merge' }).click();
  await page.getByRole('dialog', { name: 'Merge feature-a into main?' }).getByRole('button', { name: 'Merge' }).click();
  await expect(page.locator('.toast').getByText('Merged feature-a into main.')).toBeVisible();
  git(clone, 'merge-base', '--is-ancestor', commit, 'main');
  expect(readFileSync(join(clone, 'app.py'), 'utf8')).toContain('"good day, "');
  // agent-b's branch knows nothing of it.
  expect(readFileSync(join(treeB, 'app.py'), 'utf8')).toBe(APP);

  // 6. The repository from Files, read-only: its last commit is the one merged.
  await page.goto(`${server.url}/#/files`);
  const repos = page.getByRole('list', { name: 'Repositories' });
  const row = repos.getByRole('link', { name: /^shop/ });
  await expect(row).toContainText('main');
  await expect(row).toContainText('no changes');
  expect(await noSideways(page), 'no horizontal scrolling').toBe(true);
  await shot(page, info, 'git-06-repositories');
  await expectAccessible(page, 'Files with its repositories');
  await row.click();
  await expect(page).toHaveURL(/#\/repo\/shop$/);
  await expect(page.getByRole('heading', { name: 'Changes', level: 1 })).toBeVisible();
  await expect(page.getByRole('toolbar', { name: 'Git actions' })).toHaveCount(0);
  await page.getByRole('button', { name: 'Last commit', exact: true }).click();
  await expect(page.locator('.cf-commit-line')).toContainText('Greet with good day');
  await expect(page.locator('.cf-file[data-path="app.py"] .cf-add .cf-word')).toHaveText(['good day, ']);
  await expect(page.getByRole('checkbox')).toHaveCount(0);
  await expect(page.getByRole('button', { name: /Discard|hunk/ })).toHaveCount(0);
  await expect(page.getByRole('button', { name: /^More/ })).toBeHidden();
  expect(await noSideways(page), 'no horizontal scrolling').toBe(true);
  await shot(page, info, 'git-07-repo-changes');
  await expectAccessible(page, 'the repository\'s Changes');

  // 7. Delete agent-b and its worktree: the app names the file that would be lost; the branch stays.
  await page.goto(`${server.url}/#/`);
  const cardB = page.getByRole('article', { name: 'agent-b' });
  await cardB.getByRole('button', { name: 'More for agent-b' }).click();
  await cardB.getByRole('menuitem', { name: 'Delete' }).click();
  const question = page.getByRole('dialog', { name: 'Delete agent-b?' });
  await expect(question).toContainText('The branch is kept either way');
  await shot(page, info, 'git-08-delete');
  await expectAccessible(page, 'the delete question', 'dialog[open]');
  await question.getByRole('button', { name: 'Delete and remove the worktree' }).click();
  const lost = page.getByRole('dialog', { name: 'Remove the worktree of agent-b?' });
  await expect(lost).toContainText('1 file has uncommitted changes that will be lost: NOTES.md');
  await lost.getByRole('button', { name: 'Delete and remove' }).click();
  await expect(page.locator('.toast').getByText('Deleted agent-b and removed its worktree; the branch feature-b stays.')).toBeVisible();
  await expect(cardB).toHaveCount(0);
  expect(existsSync(treeB)).toBe(false);
  expect(git(clone, 'branch', '--list', 'feature-b')).toContain('feature-b');
  // agent-a is kept with its worktree and branch.
  const cardA = page.getByRole('article', { name: 'agent-a' });
  await cardA.getByRole('button', { name: 'More for agent-a' }).click();
  await cardA.getByRole('menuitem', { name: 'Delete' }).click();
  await page.getByRole('dialog', { name: 'Delete agent-a?' }).getByRole('button', { name: 'Delete, keep the worktree' }).click();
  await expect(page.locator('.toast').getByText('Deleted agent-a; its worktree and branch stay.')).toBeVisible();
  expect(existsSync(join(treeA, 'app.py'))).toBe(true);
  expect(git(treeA, 'rev-parse', 'HEAD')).toBe(commit);
});

test('Settings: the account\'s SSH key for git, made in the app and shown to copy', async ({ page, server }, info) => {
  const user = `sshkey${info.repeatEachIndex}r${info.retry}`;
  const password = 'sshkey-password-1';
  const userId = await server.createUser(user, password);
  await signIn(page, server, user, password);
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Settings' }).click();
  const panel = page.getByRole('region', { name: 'Git SSH key' });
  await expect(panel).toContainText('deploy keys or account SSH keys');
  await panel.getByRole('button', { name: 'Create a key' }).click();
  await expect(page.locator('.toast').getByText('Created an SSH key.')).toBeVisible();
  const key = panel.locator('.ssh-key');
  await expect(key).toHaveText(/^ssh-ed25519 \S+/);
  await expect(panel).toContainText(/Fingerprint SHA256:/);
  await expect(panel.getByRole('button', { name: 'Copy the public key' })).toBeVisible();
  // The key shown is the account's own, in its home.
  const onDisk = readFileSync(join(server.dataDir, 'users', String(userId), 'home/.ssh/id_ed25519.pub'), 'utf8').trim();
  await expect(key).toHaveText(onDisk);
  expect(await noSideways(page), 'no horizontal scrolling').toBe(true);
  // shot() shows the top of the page; the panel is further down, so it is taken on its own.
  if (info.project.name === 'phone') await panel.screenshot({ path: join(ARTIFACTS, 'git-09-ssh-key.png') });
  await expectAccessible(page, 'Settings with an SSH key');
  // A second visit shows it, with no button to make another.
  await page.reload();
  await expect(panel.locator('.ssh-key')).toHaveText(onDisk);
  await expect(panel.getByRole('button', { name: 'Create a key' })).toHaveCount(0);
});
