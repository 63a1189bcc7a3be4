// Pure decisions of the Changes view (src/git/layout.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadTs } from './helpers/load-ts.mjs';

const L = await loadTs('git/layout.ts');

test('each mode asks the diff it names', () => {
  assert.deepEqual(L.diffQuery('worktree', 0), { path: undefined, staged: false, against: 'worktree', page: 0 });
  assert.deepEqual(L.diffQuery('staged', 2), { path: undefined, staged: true, against: 'worktree', page: 2 });
  assert.equal(L.diffQuery('last_commit', 0).against, 'last_commit');
  assert.equal(L.diffQuery('base', 0, 'a.rs').against, 'base');
  assert.equal(L.diffQuery('base', 0, 'a.rs').path, 'a.rs');
  assert.ok(L.canStage('worktree') && L.canStage('staged'));
  assert.ok(!L.canStage('last_commit') && !L.canStage('base') && !L.canStage('head'));
  // Uncommitted is the working tree against HEAD; staged means nothing outside Staged.
  assert.deepEqual(L.diffQuery('head', 1), { path: undefined, staged: false, against: 'head', page: 1 });
  assert.ok(L.showsUntracked('worktree') && L.showsUntracked('head'));
  assert.ok(!L.showsUntracked('staged') && !L.showsUntracked('last_commit') && !L.showsUntracked('base'));
});

test('a commit date reads relative to now', () => {
  const now = Date.UTC(2026, 11, 7, 12, 0, 0);
  const at = (secondsAgo) => now / 1000 - secondsAgo;
  assert.equal(L.relativeTime(at(5), now), 'just now');
  assert.equal(L.relativeTime(at(60), now), '1 minute ago');
  assert.equal(L.relativeTime(at(7200), now), '2 hours ago');
  assert.equal(L.relativeTime(at(3 * 86400), now), '3 days ago');
  assert.equal(L.relativeTime(at(90 * 86400), now), '2026-09-08');
  // A clock a little behind the server's is not "in the future".
  assert.equal(L.relativeTime(at(-30), now), 'just now');
});

test('a clone goes to the URL\'s last segment without .git', () => {
  assert.equal(L.cloneFolder('https://github.com/acme/widget.git'), 'widget');
  assert.equal(L.cloneFolder('git@github.com:acme/widget.git'), 'widget');
  assert.equal(L.cloneFolder('git@host:widget'), 'widget');
  assert.equal(L.cloneFolder('ssh://git@host/srv/repos/tool/'), 'tool');
  assert.equal(L.cloneFolder('/tmp/x/origin.git'), 'origin');
  assert.equal(L.cloneFolder(''), '');
});

test('a clone\'s refusal is said by the field it concerns', () => {
  assert.equal(L.cloneErrorField('`shop` exists already'), 'folder');
  assert.equal(L.cloneErrorField('`a/b` is not a folder in your workspace'), 'folder');
  assert.equal(L.cloneErrorField('`folder` names a new folder inside your workspace'), 'folder');
  assert.equal(L.cloneErrorField('This URL cannot be cloned: use https://, ssh://, user@host:path, file:// or an absolute path'), 'url');
  assert.equal(L.cloneErrorField("fatal: repository '/tmp/nope' does not exist"), 'url');
  assert.equal(L.cloneErrorField('Could not resolve host: example.invalid'), 'url');
});

test('the staging box is ticked, half or empty, and a tap goes the right way', () => {
  const f = (staged, unstaged) => ({ staged, unstaged, status: 'modified' });
  assert.equal(L.stagedState(f(true, false)), 'true');
  assert.equal(L.stagedState(f(true, true)), 'mixed');
  assert.equal(L.stagedState(f(false, true)), 'false');
  assert.equal(L.toggleAction(f(true, false)), 'unstage');
  assert.equal(L.toggleAction(f(true, true)), 'stage');
  assert.equal(L.toggleAction(f(false, true)), 'stage');
});

test('statuses read as a glyph and in words', () => {
  assert.deepEqual(L.statusGlyph('modified'), { glyph: 'M', words: 'modified' });
  assert.deepEqual(L.statusGlyph('conflicted'), { glyph: '!', words: 'conflicted' });
  assert.deepEqual(L.statusGlyph('copied'), { glyph: '?', words: 'copied' });
});

test('counts and ahead/behind in words', () => {
  assert.equal(L.countsLine({ changed: 3, added: 1, deleted: 0, untracked: 2 }), '3 changed · 1 added · 2 untracked');
  assert.equal(L.countsLine({ changed: 0, added: 0, deleted: 0, untracked: 0 }), 'No changes');
  assert.equal(L.aheadBehind(0, 0, 'main'), 'even with main');
  assert.equal(L.aheadBehind(2, 1, 'main'), '2 ahead, 1 behind of main');
  assert.equal(L.aheadBehind(0, 4, null), '4 behind of its base');
});

test('a path splits into its folder and name', () => {
  assert.deepEqual(L.splitPath('src/git/words.ts'), { dir: 'src/git/', name: 'words.ts' });
  assert.deepEqual(L.splitPath('README.md'), { dir: '', name: 'README.md' });
});

test('wrapped lines hang under their own indentation, capped for a phone', () => {
  assert.equal(L.hangingIndent('let x = 1;'), 1);
  assert.equal(L.hangingIndent('    let x = 1;'), 5);
  assert.equal(L.hangingIndent('\tx'), 5);
  assert.equal(L.hangingIndent('  \tx'), 5, 'a tab goes to the next stop');
  assert.equal(L.hangingIndent('                        deep'), 9, 'capped at 8 plus one');
  assert.equal(L.hangingIndent(''), 0);
  assert.equal(L.hangingIndent('    '), 4);
});

test('the number column is as wide as the largest line number', () => {
  assert.equal(L.numberDigits({ hunks: [] }), 1);
  assert.equal(L.numberDigits({ hunks: [{ old_start: 95, old_lines: 3, new_start: 990, new_lines: 12 }] }), 4);
});

test('lockfiles, long files and long deletions start folded', () => {
  const lines = (n) => [{ lines: Array.from({ length: n }, () => ({ kind: 'add', text: 'x' })) }];
  assert.ok(L.foldedAtFirst({ path: 'web/package-lock.json', status: 'modified', hunks: lines(3) }));
  assert.ok(L.foldedAtFirst({ path: 'Cargo.lock', status: 'modified', hunks: lines(3) }));
  assert.ok(L.foldedAtFirst({ path: 'dist/app.min.js', status: 'added', hunks: lines(1) }));
  assert.ok(L.foldedAtFirst({ path: 'src/a.rs', status: 'modified', hunks: lines(L.FOLD_LINES + 1) }));
  assert.ok(L.foldedAtFirst({ path: 'old.rs', status: 'deleted', hunks: lines(41) }));
  assert.ok(!L.foldedAtFirst({ path: 'src/Cargo.lock.rs', status: 'modified', hunks: lines(3) }));
  assert.ok(!L.foldedAtFirst({ path: 'src/a.rs', status: 'modified', hunks: lines(40) }));
});

test('a commit message is prefilled from what the agent said last', () => {
  assert.equal(L.commitPrefill('⏺ Fixed the login redirect loop.'), 'Fixed the login redirect loop.');
  assert.equal(L.commitPrefill('  > add   retries\tto the client '), 'add retries to the client');
  assert.equal(L.commitPrefill(null), '');
  assert.equal(L.commitPrefill('╭────────╮'), '');
  assert.equal(L.commitPrefill('? for shortcuts'), '');
  assert.equal(L.commitPrefill('✻ Working… (esc to interrupt)'), '');
  const long = L.commitPrefill('Refactored the session handling so that refresh tokens rotate on every use and old ones are revoked');
  assert.ok(long.length <= 72, long);
  assert.ok(long.endsWith('…'));
  assert.ok(!long.includes(' …'));
});

test('a later page continues the file and the hunk cut between pages, without counting twice', () => {
  const line = (n) => ({ kind: 'add', text: `line ${n}`, new: n });
  const hunk = (id, from, to) => ({ id, header: `@@ ${id} @@`, old_start: 0, old_lines: 0, new_start: 1, new_lines: 3000,
    lines: Array.from({ length: to - from }, (_, k) => line(from + k)) });
  const file = (path, hunks) => ({ path, status: 'added', binary: false, additions: 3000, deletions: 0, hunks });
  const shown = [];
  L.appendPage(shown, [file('big.txt', [hunk('h1', 0, 2000)])]);
  L.appendPage(shown, [file('big.txt', [hunk('h1', 2000, 3000)]), file('next.txt', [hunk('h2', 0, 1)])]);
  assert.equal(shown.length, 2);
  assert.equal(shown[0].additions, 3000);
  assert.equal(shown[0].hunks.length, 1);
  assert.equal(shown[0].hunks[0].lines.length, 3000);
  assert.equal(shown[0].hunks[0].lines[2999].text, 'line 2999');
  assert.equal(shown[1].path, 'next.txt');
});
