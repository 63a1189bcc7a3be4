// Changes (issue 17) in the browser against the real git backend: an agent started on a branch
// from the dashboard's "Work on a branch", its Changes from the terminal's and the card's menu,
// the diff with the changed word marked and no sideways scrolling, staging a file and unstaging
// a hunk, discarding a new file behind a confirm, a commit, a push to a local bare `origin`, a
// merge into `main`, and a conflicting merge that is listed and aborted, checked with git itself.
// e2e's server runs without isolation (server.ts), so the test makes and reads the repositories
// with its own git, as the server's user, like the agent would.
import { test, expect, signIn, shot, expectTerminal, expectAccessible } from '../fixtures';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { git } from '../git-helpers';

const README = '# Project\n\nhello brave world\nsecond line\n';

test('an agent on a branch: its changes staged, discarded, committed, pushed and merged from the phone', async ({ page, server }, info) => {
  test.setTimeout(180_000);
  // One account per run: a worker's server outlives a test (--repeat-each, retries).
  const user = `changes${info.project.name}${info.repeatEachIndex}r${info.retry}`;
  const password = 'changes-password-1';
  const userId = await server.createUser(user, password);
  const { token } = await server.token(user, password);

  // 1. `proj` on `main` with one commit, and a bare repository as its `origin`.
  expect((await server.api('POST', 'api/files/mkdir', token, { path: 'proj' })).ok).toBe(true);
  const workspace = server.workspace(userId);
  const proj = join(workspace, 'proj');
  writeFileSync(join(proj, 'README.md'), README);
  git(proj, 'init', '-q', '-b', 'main');
  git(proj, 'add', '-A');
  git(proj, 'commit', '-q', '-m', 'initial');
  const origin = join(server.dir, `origin-${user}.git`);
  git(server.dir, 'init', '-q', '--bare', origin);
  git(proj, 'remote', 'add', 'origin', origin);
  const mainBefore = git(proj, 'rev-parse', 'main');

  // 2. An agent on `feature-x` from the dashboard; Changes in the terminal's menu and the card's.
  await signIn(page, server, user, password);
  await page.getByLabel('Agent', { exact: true }).selectOption('fake');
  const name = `brancher-${info.project.name}`;
  await page.getByLabel('Name').fill(name);
  await page.getByText('Work on a branch').click();
  await page.getByLabel('Repository').fill('proj');
  await page.getByLabel('Branch', { exact: true }).fill('feature-x');
  await page.getByLabel('Base', { exact: true }).fill('main');
  await page.getByRole('button', { name: 'Start agent' }).click();
  await expect(page.locator('.term-title')).toHaveText(name);
  await expectTerminal(page, 'agent> ');
  const id = new URL(page.url()).hash.replace('#/t/', '');
  const worktree = join(workspace, 'worktrees/proj/feature-x');
  expect(git(worktree, 'symbolic-ref', '--short', 'HEAD')).toBe('feature-x');
  await page.getByRole('button', { name: 'More', exact: true }).click();
  await expect(page.getByRole('menuitem', { name: 'Changes' })).toBeVisible();
  await page.keyboard.press('Escape');
  await page.getByRole('link', { name: 'Back to agents' }).click();

  // An agent without a branch, for contrast.
  const plain = `plain-${info.project.name}`;
  expect((await server.api('POST', 'api/instances', token, { profile: 'fake', name: plain })).status).toBe(201);
  const plainCard = page.getByRole('article', { name: plain });
  await expect(plainCard).toBeVisible();
  // The card is drawn again as the agent goes from starting to running, which closes its menu.
  await expect(async () => {
    await plainCard.getByRole('button', { name: `More for ${plain}` }).click();
    await expect(plainCard.getByRole('menuitem', { name: 'Rename' })).toBeVisible({ timeout: 1000 });
  }).toPass();
  await expect(plainCard.getByRole('menuitem', { name: 'Changes' })).toHaveCount(0);
  await page.keyboard.press('Escape');
  await expect(plainCard.locator('.card-branch')).toHaveCount(0);

  const card = page.getByRole('article', { name });
  await expect(card.locator('.card-branch')).toHaveText('branch feature-x');

  // 3. What the agent would have done in its worktree: a word changed, a file added.
  writeFileSync(join(worktree, 'README.md'), README.replace('brave', 'bold'));
  writeFileSync(join(worktree, 'NEW.md'), 'a new file\n');

  // 4. Changes from the card's menu.
  await card.getByRole('button', { name: `More for ${name}` }).click();
  await card.getByRole('menuitem', { name: 'Changes' }).click();
  await expect(page).toHaveURL(new RegExp(`#/changes/${id}$`));
  await expect(page.getByRole('heading', { name: 'Changes', level: 1 })).toBeVisible();
  const summary = page.getByRole('region', { name: 'Branch' });
  await expect(summary.locator('.cf-branch')).toHaveText(/feature-x\s*→\s*based on\s*main/);
  await expect(summary).toContainText('even with main');
  await expect(summary.locator('.cf-counts')).toHaveText('1 changed · 1 untracked');
  const readme = page.locator('.cf-file[data-path="README.md"]');
  await expect(readme.locator('.cf-del .cf-word')).toHaveText(['brave']);
  await expect(readme.locator('.cf-add .cf-word')).toHaveText(['bold']);
  await expect(readme.locator('.cf-del')).toHaveCount(1);
  await expect(readme.locator('.cf-add')).toHaveCount(1);
  await expect(readme.locator('.cf-stat')).toHaveText('+1 −1');
  // Coloured as Markdown (its grammar loads with the first file): the title is a heading.
  await expect(readme.locator('.cf-context .tok-heading', { hasText: 'Project' })).toHaveCount(1);
  // The new file comes with its lines from the server, and no hunk to stage on its own.
  const newFile = page.locator('.cf-file[data-path="NEW.md"]');
  await expect(newFile.locator('.cf-add .cf-text')).toHaveText(['a new file']);
  await expect(newFile.getByRole('button', { name: /hunk/ })).toHaveCount(0);
  const noSideways = () => page.evaluate(() => document.documentElement.scrollWidth <= innerWidth);
  expect(await noSideways(), 'no horizontal scrolling').toBe(true);
  await shot(page, info, '60-changes');
  await expectAccessible(page, 'the Changes page');

  // 5. Stage the file, see it under Staged, unstage its hunk there.
  const list = page.getByRole('navigation', { name: 'Changed files' });
  const box = list.getByRole('checkbox', { name: 'Stage README.md' });
  await expect(box).toHaveAttribute('aria-checked', 'false');
  await box.click();
  await expect(page.locator('.toast').getByText('Staged README.md.')).toBeVisible();
  await expect(box).toHaveAttribute('aria-checked', 'true');
  await expect(readme).toHaveCount(0);
  await expect(newFile.locator('.cf-add .cf-text')).toHaveText(['a new file']);
  await page.getByRole('button', { name: 'Staged', exact: true }).click();
  await expect(page).toHaveURL(/\?mode=staged$/);
  await expect(readme.locator('.cf-add .cf-word')).toHaveText(['bold']);
  await expect(page.locator('.cf-file')).toHaveCount(1);
  await readme.getByRole('button', { name: /^Unstage hunk at line \d+ of README\.md$/ }).click();
  await expect(page.locator('.toast').getByText(/Unstaged the hunk at line \d+ of README\.md\./)).toBeVisible();
  await expect(box).toHaveAttribute('aria-checked', 'false');
  await expect(page.getByText('Nothing is staged.')).toBeVisible();
  expect(git(worktree, 'diff', '--cached', '--name-only')).toBe('');

  // The new file: Cancel keeps it, Delete removes it.
  await page.getByRole('button', { name: 'Unstaged', exact: true }).click();
  const discard = page.getByRole('button', { name: 'Discard changes to NEW.md' });
  await discard.click();
  const confirm = page.getByRole('dialog', { name: 'Delete NEW.md?' });
  await expect(confirm).toContainText('discarding deletes the file');
  await confirm.getByRole('button', { name: 'Cancel' }).click();
  await expect(confirm).toHaveCount(0);
  expect(existsSync(join(worktree, 'NEW.md'))).toBe(true);
  await discard.click();
  await confirm.getByRole('button', { name: 'Delete file' }).click();
  await expect(page.locator('.toast').getByText('Deleted NEW.md.')).toBeVisible();
  await expect(list.getByRole('button', { name: /NEW\.md/ })).toHaveCount(0);
  expect(existsSync(join(worktree, 'NEW.md'))).toBe(false);
  await expect(summary.locator('.cf-counts')).toHaveText('1 changed');

  // 6. Commit (the sheet stages what changed), then see it against main.
  await page.getByRole('toolbar', { name: 'Git actions' }).getByRole('button', { name: 'Commit' }).click();
  const sheet = page.getByRole('dialog', { name: 'Commit to feature-x' });
  await expect(sheet).toContainText('Nothing is staged yet.');
  await expect(sheet.getByLabel('Stage all 1 changed file first')).toBeChecked();
  await sheet.getByLabel('Message').fill('Say bold, not brave');
  await expectAccessible(page, 'the commit sheet', 'dialog[open]');
  await sheet.getByRole('button', { name: 'Commit' }).click();
  await expect(page.locator('.toast').getByText(/^Committed [0-9a-f]{7}: Say bold, not brave$/)).toBeVisible();
  await expect(sheet).toHaveCount(0);
  await expect(summary).toContainText('1 ahead of main');
  await expect(summary.locator('.cf-counts')).toHaveText('No changes');
  const commit = git(worktree, 'rev-parse', 'HEAD');
  expect(git(worktree, 'log', '-1', '--format=%s')).toBe('Say bold, not brave');
  await page.getByRole('button', { name: 'vs main', exact: true }).click();
  await expect(readme.locator('.cf-add .cf-word')).toHaveText(['bold']);
  await expect(readme.locator('.cf-del .cf-word')).toHaveText(['brave']);
  // Uncommitted: the working tree and the index against the last commit; clean now.
  await page.getByRole('button', { name: 'Uncommitted', exact: true }).click();
  await expect(page).toHaveURL(/\?mode=head$/);
  await expect(page.getByText('Nothing uncommitted: the working tree is the last commit.')).toBeVisible();
  await expect(page.locator('.cf-file')).toHaveCount(0);
  // Last commit: what the commit itself changed, under its id, summary, author and age.
  await page.getByRole('button', { name: 'Last commit', exact: true }).click();
  const commitLine = page.locator('.cf-commit-line');
  await expect(commitLine).toContainText(commit.slice(0, 7));
  await expect(commitLine).toContainText('Say bold, not brave');
  await expect(commitLine).toContainText(/by .+, (just now|\d+ minutes? ago)/);
  await expect(readme.locator('.cf-add .cf-word')).toHaveText(['bold']);
  await expect(page.locator('.cf-file')).toHaveCount(1);
  expect(await noSideways(), 'no horizontal scrolling').toBe(true);
  await expectAccessible(page, 'the last commit');
  expect(await noSideways(), 'no horizontal scrolling').toBe(true);

  // Push to the local bare origin: no forge, so no compare link.
  const bar = page.getByRole('toolbar', { name: 'Git actions' });
  await bar.getByRole('button', { name: 'Push' }).click();
  await expect(page.locator('.toast').getByText('Pushed feature-x to origin.')).toBeVisible();
  await expect(page.locator('.cf-notice')).toContainText('Pushed feature-x to origin.');
  await expect(page.getByRole('link', { name: 'Compare and open a pull request' })).toHaveCount(0);
  expect(git(server.dir, '--git-dir', origin, 'rev-parse', 'feature-x')).toBe(commit);

  // Merge into main, behind a confirm.
  await bar.getByRole('button', { name: 'Merge' }).click();
  const mergeConfirm = page.getByRole('dialog', { name: 'Merge feature-x into main?' });
  await mergeConfirm.getByRole('button', { name: 'Merge' }).click();
  await expect(page.locator('.toast').getByText('Merged feature-x into main.')).toBeVisible();
  git(proj, 'merge-base', '--is-ancestor', commit, 'main');
  expect(readFileSync(join(proj, 'README.md'), 'utf8')).toContain('hello bold world');
  await expect(summary).toContainText('even with main');

  // 7. Opposite edits to one line on both sides: the merge stops, lists the file, resolves nothing.
  writeFileSync(join(proj, 'README.md'), readFileSync(join(proj, 'README.md'), 'utf8').replace('second line', 'second line, as main says'));
  git(proj, 'commit', '-q', '-am', 'main says');
  writeFileSync(join(worktree, 'README.md'), readFileSync(join(worktree, 'README.md'), 'utf8').replace('second line', 'second line, as the branch says'));
  git(worktree, 'commit', '-q', '-am', 'the branch says');
  const mainHead = git(proj, 'rev-parse', 'main');
  await page.getByRole('button', { name: 'Refresh' }).click();
  await expect(summary).toContainText('1 ahead, 1 behind of main');
  await bar.getByRole('button', { name: 'Merge' }).click();
  await mergeConfirm.getByRole('button', { name: 'Merge' }).click();
  const conflicts = page.getByRole('alert').filter({ hasText: 'Merge into main stopped with conflicts' });
  await expect(conflicts).toBeVisible();
  await expect(conflicts.getByRole('listitem')).toHaveText(['README.md']);
  await expect(page.locator('.toast-error')).toHaveText('The merge into main stopped: 1 file conflicts.');
  expect(git(proj, 'status', '--porcelain')).toBe('');
  expect(git(proj, 'rev-parse', 'main')).toBe(mainHead);
  expect(mainHead).not.toBe(mainBefore);
  expect(readFileSync(join(proj, 'README.md'), 'utf8')).toContain('second line, as main says');
  expect(existsSync(join(proj, '.git/MERGE_HEAD'))).toBe(false);
  expect(await noSideways(), 'no horizontal scrolling').toBe(true);
  await shot(page, info, '61-changes-conflict');
  await expectAccessible(page, 'the Changes page with a conflict');

  // The terminal's menu leads here too.
  await page.getByRole('link', { name: `Back to the terminal of ${name}` }).click();
  await expectTerminal(page, 'agent> ');
  await page.getByRole('button', { name: 'More', exact: true }).click();
  await page.getByRole('menuitem', { name: 'Changes' }).click();
  await expect(page).toHaveURL(new RegExp(`#/changes/${id}$`));
  await expect(summary).toContainText('1 ahead, 1 behind of main');
  rmSync(origin, { recursive: true, force: true });
});
