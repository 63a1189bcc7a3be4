//! Word-level changes within a line: each run of deleted lines is paired with the added lines
//! that follow it, and each pair is compared word by word (a longest common subsequence over
//! tokens), so a reader on a phone sees which words changed rather than two whole lines.
//! Pure: no DOM, no imports; unit-tested in test/words.test.mjs.

/** A piece of a line, marked when it differs from the line it is paired with. */
export interface Segment {
  text: string;
  changed: boolean;
}

/** The two lines of a pair, cut into segments. */
export interface WordPair {
  old: Segment[];
  new: Segment[];
}

/** Words (letters, digits, underscore), runs of whitespace, and single punctuation marks. */
const TOKEN = /[\p{L}\p{N}_]+|\s+|[^\p{L}\p{N}_\s]/gu;

export function tokenize(line: string): string[] {
  return line.match(TOKEN) ?? [];
}

/** Past this many differing tokens on either side the table would be too big to be worth it. */
export const MAX_TOKENS = 400;
/** Below this share of kept (non-blank) characters, two lines are different lines, not an edit. */
export const MIN_SHARED = 0.35;

const blank = (t: string) => /^\s+$/.test(t);

/**
 * Compares two lines word by word. Null when they have too little in common to mark words
 * (then the whole lines stand as deleted and added) or are too long to compare cheaply.
 */
export function wordDiff(a: string, b: string, minShared = MIN_SHARED): WordPair | null {
  if (a === b) return { old: [{ text: a, changed: false }], new: [{ text: b, changed: false }] };
  const x = tokenize(a);
  const y = tokenize(b);
  // The common ends first: most edits touch a few words in the middle, so the table stays small.
  let pre = 0;
  while (pre < x.length && pre < y.length && x[pre] === y[pre]) pre++;
  let suf = 0;
  while (suf < x.length - pre && suf < y.length - pre && x[x.length - 1 - suf] === y[y.length - 1 - suf]) suf++;
  const xs = x.slice(pre, x.length - suf);
  const ys = y.slice(pre, y.length - suf);
  const n = xs.length;
  const m = ys.length;
  if (n > MAX_TOKENS || m > MAX_TOKENS) return null;

  // lcs[i * w + j]: the longest common subsequence of xs[i..] and ys[j..].
  const w = m + 1;
  const lcs = new Uint16Array((n + 1) * w);
  for (let i = n - 1; i >= 0; i--) {
    for (let j = m - 1; j >= 0; j--) {
      lcs[i * w + j] = xs[i] === ys[j] ? lcs[(i + 1) * w + j + 1]! + 1 : Math.max(lcs[(i + 1) * w + j]!, lcs[i * w + j + 1]!);
    }
  }
  const oldMarks: boolean[] = Array(pre).fill(false);
  const newMarks: boolean[] = Array(pre).fill(false);
  let i = 0;
  let j = 0;
  while (i < n && j < m) {
    if (xs[i] === ys[j]) {
      oldMarks.push(false);
      newMarks.push(false);
      i++;
      j++;
    } else if (lcs[(i + 1) * w + j]! >= lcs[i * w + j + 1]!) {
      oldMarks.push(true);
      i++;
    } else {
      newMarks.push(true);
      j++;
    }
  }
  for (; i < n; i++) oldMarks.push(true);
  for (; j < m; j++) newMarks.push(true);
  for (let k = 0; k < suf; k++) {
    oldMarks.push(false);
    newMarks.push(false);
  }
  bridgeBlanks(x, oldMarks);
  bridgeBlanks(y, newMarks);

  const kept = (tokens: string[], marks: boolean[]) => tokens.reduce((sum, t, k) => sum + (marks[k] || blank(t) ? 0 : t.length), 0);
  const size = (tokens: string[]) => tokens.reduce((sum, t) => sum + (blank(t) ? 0 : t.length), 0);
  const longest = Math.max(size(x), size(y));
  if (longest === 0 || kept(x, oldMarks) / longest < minShared) return null;
  return { old: segments(x, oldMarks), new: segments(y, newMarks) };
}

/** A space kept between two changed words joins them: "a b" → "c d" reads as one change. */
function bridgeBlanks(tokens: string[], marks: boolean[]): void {
  for (let k = 1; k < tokens.length - 1; k++) {
    if (!marks[k] && blank(tokens[k]!) && marks[k - 1] && marks[k + 1]) marks[k] = true;
  }
}

function segments(tokens: string[], marks: boolean[]): Segment[] {
  const out: Segment[] = [];
  tokens.forEach((text, k) => {
    const changed = marks[k] ?? false;
    const last = out[out.length - 1];
    if (last && last.changed === changed) last.text += text;
    else out.push({ text, changed });
  });
  return out;
}

/**
 * Pairs each run of deleted lines with the run of added lines right after it, first with
 * first: returns [deleted index, added index] pairs. Extra lines on either side stay unpaired.
 */
export function pairLines(kinds: readonly string[]): [number, number][] {
  const pairs: [number, number][] = [];
  let k = 0;
  while (k < kinds.length) {
    if (kinds[k] !== 'del') {
      k++;
      continue;
    }
    const delStart = k;
    while (k < kinds.length && kinds[k] === 'del') k++;
    const addStart = k;
    while (k < kinds.length && kinds[k] === 'add') k++;
    const count = Math.min(addStart - delStart, k - addStart);
    for (let p = 0; p < count; p++) pairs.push([delStart + p, addStart + p]);
  }
  return pairs;
}

/**
 * The word-level segments of every line of a hunk that has them (null for lines shown whole:
 * context, unpaired lines, and pairs too different to mark).
 */
export function hunkWords(lines: readonly { kind: string; text: string }[]): (Segment[] | null)[] {
  const out: (Segment[] | null)[] = lines.map(() => null);
  for (const [d, a] of pairLines(lines.map((l) => l.kind))) {
    const pair = wordDiff(lines[d]!.text, lines[a]!.text);
    if (!pair) continue;
    out[d] = pair.old;
    out[a] = pair.new;
  }
  return out;
}
