// Syntax colours of diff lines (src/git/highlight.ts): the styled ranges of each side of a hunk
// cut back onto its lines, with a stand-in highlighter and with the real JavaScript grammar.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadTs } from './helpers/load-ts.mjs';

const H = await loadTs('git/highlight.ts');

test('a file gets its language by extension, or none', () => {
  assert.equal(H.languageFor('src/a.ts'), 'typescript');
  assert.equal(H.languageFor('App.TSX'), 'tsx');
  assert.equal(H.languageFor('lib/x.rs'), 'rust');
  assert.equal(H.languageFor('README.md'), 'markdown');
  assert.equal(H.languageFor('Makefile'), null);
  assert.equal(H.languageFor('.gitignore'), null);
  assert.equal(H.languageFor('notes.txt'), null);
});

test('styled ranges are cut onto lines, with the plain text between them and across line ends', () => {
  // "let a\n'x\ny'": a keyword on line 0, a string from line 1 into line 2.
  const lines = ['let a', "'x", "y' z"];
  const cut = H.cutLines(lines, [{ from: 0, to: 3, cls: 'tok-keyword' }, { from: 6, to: 11, cls: 'tok-string' }]);
  assert.deepEqual(cut[0], [{ from: 0, to: 3, text: 'let', cls: 'tok-keyword' }, { from: 3, to: 5, text: ' a', cls: '' }]);
  assert.deepEqual(cut[1], [{ from: 0, to: 2, text: "'x", cls: 'tok-string' }]);
  assert.deepEqual(cut[2], [{ from: 0, to: 2, text: "y'", cls: 'tok-string' }, { from: 2, to: 4, text: ' z', cls: '' }]);
  // Every line is covered whole.
  cut.forEach((tokens, k) => assert.equal(tokens.map((t) => t.text).join(''), lines[k]));
  assert.deepEqual(H.cutLines([''], []), [[]]);
});

test('each side of a hunk is parsed on its own: deleted lines from the old, the rest from the new', () => {
  const seen = [];
  const fake = { spans: (text) => { seen.push(text); return [{ from: 0, to: text.length, cls: `side${seen.length}` }]; } };
  const lines = [{ kind: 'context', text: 'a' }, { kind: 'del', text: 'b' }, { kind: 'add', text: 'c' }];
  const out = H.highlightHunk(fake, lines);
  assert.deepEqual(seen, ['a\nc', 'a\nb']);
  assert.equal(out[0][0].cls, 'side1');
  assert.equal(out[1][0].cls, 'side2');
  assert.equal(out[2][0].cls, 'side1');
  // A highlighter that throws leaves the lines plain.
  assert.deepEqual(H.highlightHunk({ spans: () => { throw new Error('no'); } }, lines), [null, null, null]);
});

test('the real JavaScript grammar marks a keyword, a string and a comment in a hunk', async () => {
  const { parser } = await import('@lezer/javascript');
  const { highlightTree, classHighlighter } = await import('@lezer/highlight');
  const real = { spans: (text) => { const out = []; highlightTree(parser.parse(text), classHighlighter, (from, to, cls) => out.push({ from, to, cls })); return out; } };
  const lines = [{ kind: 'del', text: "const a = 'old'; // was" }, { kind: 'add', text: "const a = 'new';" }];
  const [del, add] = H.highlightHunk(real, lines);
  const cls = (tokens, text) => tokens.find((t) => t.text === text)?.cls;
  assert.equal(cls(del, 'const'), 'tok-keyword');
  assert.equal(cls(del, "'old'"), 'tok-string');
  assert.equal(cls(del, '// was'), 'tok-comment');
  assert.equal(cls(add, "'new'"), 'tok-string');
  assert.equal(add.map((t) => t.text).join(''), lines[1].text);
});
