//! Syntax colours for the Changes view's diff lines. A hunk is a piece of a file, not the whole,
//! so each side of it is parsed as code on its own: the new side (context and added lines) and
//! the old side (context and deleted lines), with the Lezer grammar of the file's language (the
//! parsers of the CodeMirror language packages) and @lezer/highlight's classHighlighter; the
//! `tok-*` classes it gives are then cut back onto the lines (changes.css colours them). Each
//! grammar is a chunk of its own, imported the first time a file of its language is shown, so the
//! first page load carries none. Unknown extensions stay plain.
//! The mapping is pure (unit-tested in test/highlight.test.mjs); the imports are all dynamic.
import type { DiffLine } from './types';

/** A piece of one line: offsets within the line, its text, and its classes ('' when plain). */
export interface Token {
  from: number;
  to: number;
  text: string;
  cls: string;
}

/** A styled range of a parsed text, as highlightTree reports it. */
export interface Span {
  from: number;
  to: number;
  cls: string;
}

/** Parses a text and gives its styled ranges, in order, not overlapping. */
export interface Highlighter {
  spans(text: string): Span[];
}

export type Language = 'javascript' | 'typescript' | 'jsx' | 'tsx' | 'python' | 'rust' | 'css' | 'html' | 'json' | 'markdown';

const EXTENSIONS: Record<string, Language> = {
  js: 'jsx', mjs: 'javascript', cjs: 'javascript', jsx: 'jsx',
  ts: 'typescript', mts: 'typescript', cts: 'typescript', tsx: 'tsx',
  py: 'python', pyi: 'python', rs: 'rust', css: 'css', scss: 'css',
  html: 'html', htm: 'html', svg: 'html', xml: 'html', vue: 'html',
  json: 'json', jsonc: 'json', webmanifest: 'json', md: 'markdown', markdown: 'markdown',
};

/** The language of a file by its extension; null for one without a grammar here. */
export function languageFor(path: string): Language | null {
  const name = path.slice(path.lastIndexOf('/') + 1).toLowerCase();
  const dot = name.lastIndexOf('.');
  return dot > 0 ? EXTENSIONS[name.slice(dot + 1)] ?? null : null;
}

/** Past this many characters a side is not parsed: colours are not worth a frozen phone. */
export const MAX_CHARS = 200_000;

/**
 * The tokens of each line of a hunk (null for a line left plain): the added and context lines
 * from the new side's parse, the deleted ones from the old side's. Every line's tokens cover it
 * whole, in order, so the text can be drawn from them alone.
 */
export function highlightHunk(highlighter: Highlighter, lines: readonly Pick<DiffLine, 'kind' | 'text'>[]): (Token[] | null)[] {
  const out: (Token[] | null)[] = lines.map(() => null);
  for (const side of ['new', 'old'] as const) {
    const skip = side === 'new' ? 'del' : 'add';
    const picked: number[] = [];
    lines.forEach((l, k) => {
      if (l.kind !== skip) picked.push(k);
    });
    const text = picked.map((k) => lines[k]!.text).join('\n');
    if (!picked.length || text.length > MAX_CHARS) continue;
    let spans: Span[];
    try {
      spans = highlighter.spans(text);
    } catch {
      continue;
    }
    const cut = cutLines(picked.map((k) => lines[k]!.text), spans);
    picked.forEach((k, i) => {
      // A context line is on both sides; the new side's reading of it wins.
      if (side === 'new' || lines[k]!.kind === 'del') out[k] = cut[i]!;
    });
  }
  return out;
}

/**
 * Cuts the styled ranges of a text (its lines joined by '\n') back into the lines: each line's
 * tokens, plain pieces between the styled ones, ranges that cross lines split at each line end.
 */
export function cutLines(lines: readonly string[], spans: readonly Span[]): Token[][] {
  const out: Token[][] = [];
  let start = 0;
  let s = 0;
  for (const line of lines) {
    const end = start + line.length;
    const tokens: Token[] = [];
    let at = 0;
    // Ranges that ended before this line are done with.
    while (s < spans.length && spans[s]!.to <= start) s++;
    for (let k = s; k < spans.length && spans[k]!.from < end; k++) {
      const from = Math.max(spans[k]!.from, start) - start;
      const to = Math.min(spans[k]!.to, end) - start;
      if (to <= from || from < at) continue;
      if (from > at) tokens.push({ from: at, to: from, text: line.slice(at, from), cls: '' });
      tokens.push({ from, to, text: line.slice(from, to), cls: spans[k]!.cls });
      at = to;
    }
    if (at < line.length) tokens.push({ from: at, to: line.length, text: line.slice(at), cls: '' });
    out.push(tokens);
    start = end + 1;
  }
  return out;
}

/** A parser's styled ranges through @lezer/highlight: the `tok-*` classes. */
interface LezerParser {
  parse(text: string): unknown;
}

const loaded = new Map<Language, Promise<Highlighter | null>>();

/** The highlighter of a language, its grammar imported once; null when it cannot load. */
export function loadLanguage(language: Language): Promise<Highlighter | null> {
  let ready = loaded.get(language);
  if (!ready) {
    ready = Promise.all([import('@lezer/highlight'), parserOf(language)]).then(([hl, parser]) => ({
      spans(text: string): Span[] {
        const spans: Span[] = [];
        hl.highlightTree(parser.parse(text) as Parameters<typeof hl.highlightTree>[0], hl.classHighlighter, (from, to, cls) => spans.push({ from, to, cls }));
        return spans;
      },
    }), () => null);
    loaded.set(language, ready);
  }
  return ready;
}

async function parserOf(language: Language): Promise<LezerParser> {
  switch (language) {
    case 'javascript': return (await import('@lezer/javascript')).parser;
    case 'jsx': return (await import('@lezer/javascript')).parser.configure({ dialect: 'jsx' });
    case 'typescript': return (await import('@lezer/javascript')).parser.configure({ dialect: 'ts' });
    case 'tsx': return (await import('@lezer/javascript')).parser.configure({ dialect: 'ts jsx' });
    case 'python': return (await import('@lezer/python')).parser;
    case 'rust': return (await import('@lezer/rust')).parser;
    case 'css': return (await import('@lezer/css')).parser;
    case 'html': return (await import('@lezer/html')).parser;
    case 'json': return (await import('@lezer/json')).parser;
    case 'markdown': {
      const md = await import('@lezer/markdown');
      return md.parser.configure(md.GFM);
    }
  }
}
