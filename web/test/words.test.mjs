// Word-level changes (src/git/words.ts): tokens, the pairing of deleted and added runs, and
// which words a pair marks.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadTs } from './helpers/load-ts.mjs';

const { tokenize, wordDiff, pairLines, hunkWords, MAX_TOKENS } = await loadTs('git/words.ts');

const marked = (segments) => segments.filter((s) => s.changed).map((s) => s.text);
const whole = (segments) => segments.map((s) => s.text).join('');

test('tokens are words, blank runs and single marks', () => {
  assert.deepEqual(tokenize('let x_1 = foo(bar);'), ['let', ' ', 'x_1', ' ', '=', ' ', 'foo', '(', 'bar', ')', ';']);
  assert.deepEqual(tokenize('  café—ü'), ['  ', 'café', '—', 'ü']);
  assert.deepEqual(tokenize(''), []);
});

test('a changed word is marked on both sides and the rest is kept', () => {
  const pair = wordDiff('const timeout = 30;', 'const timeout = 60;');
  assert.deepEqual(marked(pair.old), ['30']);
  assert.deepEqual(marked(pair.new), ['60']);
  assert.equal(whole(pair.old), 'const timeout = 30;');
  assert.equal(whole(pair.new), 'const timeout = 60;');
});

test('an inserted argument is marked only on the new side', () => {
  const pair = wordDiff('call(a, b)', 'call(a, extra, b)');
  assert.deepEqual(marked(pair.old), []);
  assert.deepEqual(marked(pair.new), ['extra, ']);
});

test('neighbouring changed words join across the space between them', () => {
  const pair = wordDiff('say hello world now', 'say goodbye moon now');
  assert.deepEqual(marked(pair.old), ['hello world']);
  assert.deepEqual(marked(pair.new), ['goodbye moon']);
});

test('lines with too little in common are not marked word by word', () => {
  assert.equal(wordDiff('fn main() {', 'import os'), null);
  assert.equal(wordDiff('', 'something'), null);
  assert.equal(wordDiff('something', '   '), null);
});

test('equal lines come back whole and unmarked', () => {
  const pair = wordDiff('same', 'same');
  assert.deepEqual(pair.old, [{ text: 'same', changed: false }]);
});

test('very long differing lines are not compared', () => {
  const a = Array.from({ length: MAX_TOKENS + 5 }, (_, i) => `a${i}`).join(' ');
  const b = Array.from({ length: MAX_TOKENS + 5 }, (_, i) => `b${i}`).join(' ');
  assert.equal(wordDiff(a, b), null);
  // A long line with one change in it is cheap: the common ends are cut first.
  const c = a.replace('a7 ', 'z7 ');
  assert.deepEqual(marked(wordDiff(a, c).new), ['z7']);
});

test('each deleted run pairs with the added run right after it, first with first', () => {
  const kinds = ['context', 'del', 'del', 'add', 'context', 'del', 'add', 'add', 'add', 'del', 'context', 'add'];
  assert.deepEqual(pairLines(kinds), [[1, 3], [5, 6]]);
  assert.deepEqual(pairLines(['add', 'del']), []);
  assert.deepEqual(pairLines([]), []);
});

test('a hunk gets segments only on its paired, similar lines', () => {
  const lines = [
    { kind: 'context', text: 'fn f() {' },
    { kind: 'del', text: '    let n = 1;' },
    { kind: 'del', text: '    unrelated();' },
    { kind: 'add', text: '    let n = 2;' },
    { kind: 'add', text: '    completely different words here' },
    { kind: 'add', text: '    extra();' },
  ];
  const words = hunkWords(lines);
  assert.equal(words[0], null);
  assert.deepEqual(marked(words[1]), ['1']);
  assert.deepEqual(marked(words[3]), ['2']);
  assert.equal(words[2], null, 'too different from its partner');
  assert.equal(words[4], null);
  assert.equal(words[5], null, 'unpaired');
});
