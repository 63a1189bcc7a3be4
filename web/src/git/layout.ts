//! Pure decisions of the Changes view (views/changes.ts): what each diff mode asks the server,
//! how a status reads in a glyph and in words, how wrapped lines hang, which files start folded,
//! and what a commit message is prefilled with. No DOM; unit-tested in test/layout.test.mjs.
import type { DiffFile, FileStatus, GitStatus, StatusFile } from './types';

/**
 * What a diff shows: `worktree` the unstaged changes, `staged` the index against HEAD, `head`
 * everything uncommitted (staged or not), `last_commit` what the last commit itself changed,
 * `base` the branch against where it left its base.
 */
export type Mode = 'worktree' | 'staged' | 'head' | 'last_commit' | 'base';

/** The query of GET …/git/diff for a mode and page. */
export function diffQuery(mode: Mode, page: number, path?: string): Record<string, string | number | boolean | undefined> {
  return {
    path,
    staged: mode === 'staged',
    against: mode === 'staged' ? 'worktree' : mode,
    page,
  };
}

/** The modes whose diff has the working tree's untracked files (after the tracked ones). */
export const showsUntracked = (mode: Mode) => mode === 'worktree' || mode === 'head';

/** "just now", "5 minutes ago", "3 hours ago", "2 days ago", or the date past a month. */
export function relativeTime(unixSeconds: number, now = Date.now()): string {
  const s = Math.max(0, Math.round(now / 1000 - unixSeconds));
  const ago = (n: number, unit: string) => `${n} ${unit}${n === 1 ? '' : 's'} ago`;
  if (s < 60) return 'just now';
  if (s < 3600) return ago(Math.floor(s / 60), 'minute');
  if (s < 86400) return ago(Math.floor(s / 3600), 'hour');
  if (s < 30 * 86400) return ago(Math.floor(s / 86400), 'day');
  return new Date(unixSeconds * 1000).toISOString().slice(0, 10);
}

/**
 * Which field of the clone dialog a refusal concerns: the folder's when it names the folder (it
 * exists, or is not a folder of the workspace), else the URL's (a refused URL, or git's own words
 * on a failed clone).
 */
export function cloneErrorField(message: string): 'url' | 'folder' {
  if (/\bURL\b|^fatal:|repository/i.test(message)) return 'url';
  return /folder|exists already/i.test(message) ? 'folder' : 'url';
}

/** The folder a clone goes to by default: the URL's last segment without `.git`. */
export function cloneFolder(url: string): string {
  const last = url.trim().replace(/[/\\]+$/, '').split(/[/:\\]/).pop() ?? '';
  return last.replace(/\.git$/i, '').replace(/^\.+/, '');
}

/** Staging happens in the two modes that show uncommitted changes. */
export const canStage = (mode: Mode) => mode === 'worktree' || mode === 'staged';

const GLYPHS: Record<FileStatus, [string, string]> = {
  modified: ['M', 'modified'],
  added: ['A', 'added'],
  deleted: ['D', 'deleted'],
  renamed: ['R', 'renamed'],
  untracked: ['U', 'new, not tracked'],
  conflicted: ['!', 'conflicted'],
  typechange: ['T', 'type changed'],
};

/** A one-letter glyph for the list and the words a screen reader says for it. */
export function statusGlyph(status: FileStatus | string): { glyph: string; words: string } {
  const [glyph, words] = GLYPHS[status as FileStatus] ?? ['?', status];
  return { glyph, words };
}

/** The staging box of a file: ticked when all of it is staged, half when only part. */
export function stagedState(file: Pick<StatusFile, 'staged' | 'unstaged' | 'status'>): 'true' | 'false' | 'mixed' {
  if (file.staged && file.unstaged) return 'mixed';
  if (file.staged) return 'true';
  return 'false';
}

/** A tap on the box stages what is not staged yet, or unstages a file that is wholly staged. */
export function toggleAction(file: Pick<StatusFile, 'staged' | 'unstaged' | 'status'>): 'stage' | 'unstage' {
  return stagedState(file) === 'true' ? 'unstage' : 'stage';
}

/** "3 changed · 1 added · 2 untracked", or "No changes". */
export function countsLine(counts: GitStatus['counts']): string {
  const parts = ([['changed', counts.changed], ['added', counts.added], ['deleted', counts.deleted], ['untracked', counts.untracked]] as const)
    .filter(([, n]) => n > 0)
    .map(([word, n]) => `${n} ${word}`);
  return parts.length ? parts.join(' · ') : 'No changes';
}

/** Where the branch stands against its base, in words. */
export function aheadBehind(ahead: number, behind: number, base: string | null): string {
  const against = base ? ` ${base}` : ' its base';
  if (!ahead && !behind) return `even with${against}`;
  const parts = [];
  if (ahead) parts.push(`${ahead} ahead`);
  if (behind) parts.push(`${behind} behind`);
  return `${parts.join(', ')} of${against}`;
}

/** The path cut into its folder (shown small) and its name (shown bold). */
export function splitPath(path: string): { dir: string; name: string } {
  const cut = path.lastIndexOf('/');
  return cut < 0 ? { dir: '', name: path } : { dir: path.slice(0, cut + 1), name: path.slice(cut + 1) };
}

/**
 * How far a wrapped line's continuation is indented, in columns: as far as the line's own
 * indentation (a tab counting `tab`), plus one, so wrapped code still reads as one block;
 * capped, since a phone has about 40 columns and deep nesting would leave none for the text.
 */
export function hangingIndent(text: string, tab = 4, cap = 8): number {
  let cols = 0;
  for (const ch of text) {
    if (ch === ' ') cols += 1;
    else if (ch === '\t') cols += tab - (cols % tab);
    else break;
  }
  return Math.min(cols, cap) + (text.trim() ? 1 : 0);
}

/** The width of the line-number column in digits, for the largest number a file shows. */
export function numberDigits(file: Pick<DiffFile, 'hunks'>): number {
  let most = 1;
  for (const hunk of file.hunks) most = Math.max(most, hunk.old_start + hunk.old_lines, hunk.new_start + hunk.new_lines);
  return String(most).length;
}

const GENERATED = /(^|\/)(package-lock\.json|npm-shrinkwrap\.json|yarn\.lock|pnpm-lock\.yaml|Cargo\.lock|poetry\.lock|Pipfile\.lock|composer\.lock|Gemfile\.lock|go\.sum|uv\.lock)$|\.min\.(js|css)$|\.map$/;
/** Past this many lines a file starts folded: one file must not bury the rest on a phone. */
export const FOLD_LINES = 400;

/** Lockfiles, minified and map files, long deleted files and very long diffs start folded. */
export function foldedAtFirst(file: Pick<DiffFile, 'path' | 'status' | 'hunks'>): boolean {
  const lines = file.hunks.reduce((sum, h) => sum + h.lines.length, 0);
  return GENERATED.test(file.path) || lines > FOLD_LINES || (file.status === 'deleted' && lines > 40);
}

/**
 * A commit message from the agent's last line on screen: without its bullet or prompt mark,
 * on one line, at most `max` characters cut at a word; empty when it is only the agent's chrome
 * (a prompt, a hint, a box) rather than something it said.
 */
export function commitPrefill(preview: string | null | undefined, max = 72): string {
  if (!preview) return '';
  let text = preview.replace(/\s+/g, ' ').trim();
  text = text.replace(/^[\s⏺●•◦∙·✻✶✳✢*>❯›$#\-–—│|]+/u, '').trim();
  if (!/[\p{L}\p{N}]{2}/u.test(text)) return '';
  if (/\b(esc to interrupt|for shortcuts|bypass permissions|auto-accept|tokens? used|ctrl\+[a-z])\b/i.test(text)) return '';
  if (text.length > max) {
    const cut = text.slice(0, max - 1);
    const space = cut.lastIndexOf(' ');
    text = `${(space > max / 2 ? cut.slice(0, space) : cut).replace(/[\s,;:.-]+$/, '')}…`;
  }
  return text;
}

/**
 * Adds a later page of a diff to the files shown. A file cut between pages continues the last
 * one (its counts are the whole file's on every page, so they are not added up), and so does a
 * hunk cut between them: it comes again with the same id and its further lines.
 */
export function appendPage(into: DiffFile[], next: readonly DiffFile[]): void {
  for (const f of next) {
    const last = into[into.length - 1];
    if (!last || last.path !== f.path || last.status !== f.status) {
      into.push({ ...f, hunks: f.hunks.map((h) => ({ ...h, lines: [...h.lines] })) });
      continue;
    }
    for (const hunk of f.hunks) {
      const open = last.hunks[last.hunks.length - 1];
      if (open && open.id === hunk.id) open.lines.push(...hunk.lines);
      else last.hunks.push({ ...hunk, lines: [...hunk.lines] });
    }
  }
}
