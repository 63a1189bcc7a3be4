// Changes: an agent's git branch on a phone (issue 17). The branch against its base, the changed
// files with a staging box each, and a unified diff made for a narrow screen: lines wrap under
// their own indentation (no sideways scrolling), small line numbers, foldable files and hunks,
// and the changed words within a line marked. Stage, unstage and discard per file or hunk;
// commit, push, pull and merge into the base from the bar at the bottom. Merge conflicts are
// listed, never resolved here. Code is coloured by its language's Lezer grammar (git/highlight.ts,
// loaded with the first file that has one), under the word marks; other files stay plain.
// The same page shows a repository of the workspace read-only (#/repo/<folder>): its status and
// diffs, without staging, discarding or the bar.
// Loaded lazily from main.ts, with its stylesheet.
import { api, q, type Instance } from '../api';
import { h, clear, act, toast, showError, confirmDialog, inlineError, icon, errorText } from '../ui';
import type { Ctx } from '../main';
import { hunkWords, type Segment } from '../git/words';
import {
  aheadBehind, appendPage, canStage, commitPrefill, countsLine, diffQuery, foldedAtFirst, hangingIndent, numberDigits,
  relativeTime, showsUntracked, splitPath, stagedState, statusGlyph, toggleAction, type Mode,
} from '../git/layout';
import { highlightHunk, languageFor, loadLanguage, type Token } from '../git/highlight';
import type { CommitInfo, CommitResult, DiffFile, GitDiff, GitStatus, Hunk, MergeResult, PushResult, StatusFile } from '../git/types';
import '../changes.css';

const MODES: Mode[] = ['worktree', 'staged', 'head', 'last_commit', 'base'];
const isMode = (m: string | null): m is Mode => MODES.includes(m as Mode);

/** Where a Changes page reads from, and whether it may change anything. */
interface Source {
  /** GET: the status. */
  status: string;
  /** GET: a diff, with the query of diffQuery. */
  diff: string;
  /** The instance's API path its actions post to; null for a read-only page. */
  actions: string | null;
  /** The route of the page, without its mode. */
  hash: string;
  /** Under the title: the agent's or the repository's name. */
  subtitle: string;
  back: { href: string; label: string };
  /** Whether "vs base" may be offered before the status says. */
  base: string | null;
  /** Said when the status cannot be read. */
  notGit: string;
  instance: Instance | null;
}

/** #/changes/<id>: an agent's worktree, with staging, commit, push, pull and merge. */
export async function changesView(ctx: Ctx): Promise<() => void> {
  const id = ctx.params[0] ?? '';
  const base = `api/instances/${encodeURIComponent(id)}`;
  let instance: Instance;
  try {
    instance = await api.get<Instance>(base);
  } catch (e) {
    clear(ctx.root, h('div', { class: 'center-card' }, h('h1', null, 'Agent not found'), h('p', { role: 'alert' }, errorText(e)),
      h('a', { href: '#/', class: 'button primary' }, 'Back to agents')));
    return () => undefined;
  }
  return changesPage(ctx, {
    status: `${base}/git/status`, diff: `${base}/git/diff`, actions: base, hash: `#/changes/${encodeURIComponent(id)}`,
    subtitle: instance.name, back: { href: `#/t/${encodeURIComponent(id)}`, label: `Back to the terminal of ${instance.name}` },
    base: instance.git_base ?? null, instance,
    notGit: instance.git_repo ? `Repository: ${instance.git_repo}` : 'This agent was not started on a branch; its folder may not be a git repository.',
  });
}

/** #/repo/<folder>: a repository of the workspace, read-only (its status and diffs). */
export async function repoView(ctx: Ctx): Promise<() => void> {
  const folder = ctx.params.join('/');
  const query = (more: Record<string, string | number | boolean | undefined> = {}) => q({ folder, ...more });
  return changesPage(ctx, {
    status: `api/git/repo/status${query()}`, diff: `api/git/repo/diff${query()}`, actions: null,
    hash: `#/repo/${folder.split('/').map(encodeURIComponent).join('/')}`,
    subtitle: folder, back: { href: '#/files', label: 'Back to files' }, base: null, instance: null,
    notGit: `${folder} may not be a git repository.`,
  });
}

async function changesPage(ctx: Ctx, src: Source): Promise<() => void> {
  // The instance's action routes; read-only pages never reach a use of it.
  const base = src.actions ?? '';
  const readOnly = src.actions === null;
  const instance = src.instance;
  let mode: Mode = isMode(ctx.query.get('mode')) ? ctx.query.get('mode') as Mode : 'worktree';
  if (mode === 'base' && readOnly) mode = 'worktree';
  let commit: CommitInfo | null = null;
  let status: GitStatus | null = null;
  let statusError: unknown = null;
  let files: DiffFile[] = [];
  let page = 0;
  let pages = 1;
  let diffError: unknown = null;
  let loading = true;
  // Folds the reader chose, by file (and hunk); the rest follow foldedAtFirst.
  const fileFolds = new Map<string, boolean>();
  const hunkFolds = new Map<string, boolean>();
  let gone = false;

  // --- layout ------------------------------------------------------------------------------
  const refreshButton = h('button', { type: 'button', class: 'icon-button', 'aria-label': 'Refresh', title: 'Refresh', onclick: () => void act(refreshButton, () => refresh(true)) }, '⟳');
  const header = h('header', { class: 'cf-head' },
    h('a', { href: src.back.href, class: 'icon-button', 'aria-label': src.back.label }, icon('back')),
    h('div', { class: 'cf-titles' }, h('h1', null, 'Changes'), h('span', { class: 'cf-agent' }, src.subtitle)),
    refreshButton);
  const summary = h('section', { class: 'cf-summary', 'aria-label': 'Branch' });
  const notice = h('div', { class: 'cf-notice', hidden: true });
  const modes = h('div', { class: 'cf-modes', role: 'group', 'aria-label': 'Which changes to show' });
  const commitLine = h('p', { class: 'cf-commit-line', hidden: true });
  const list = h('nav', { class: 'cf-list', 'aria-label': 'Changed files' });
  const diffs = h('div', { class: 'cf-diffs' });
  const more = h('button', { type: 'button', class: 'secondary wide cf-more', hidden: true }, 'More');
  more.addEventListener('click', () => void act(more, () => loadPage(page + 1)));
  const commitButton = h('button', { type: 'button', class: 'primary', onclick: () => void openCommit() }, 'Commit');
  const pushButton = h('button', { type: 'button', class: 'secondary' }, 'Push');
  const pullButton = h('button', { type: 'button', class: 'secondary' }, 'Pull');
  const mergeButton = h('button', { type: 'button', class: 'secondary' }, 'Merge');
  pushButton.addEventListener('click', () => void push());
  pullButton.addEventListener('click', () => void pull());
  mergeButton.addEventListener('click', () => void merge());
  const bar = h('div', { class: 'cf-bar', role: 'toolbar', 'aria-label': 'Git actions' }, commitButton, pushButton, pullButton, mergeButton);
  clear(ctx.root, h('div', { class: 'cf-page' }, header, h('div', { class: 'cf-content' }, summary, notice, modes, commitLine, list, diffs, more), readOnly ? null : bar));

  // --- loading -----------------------------------------------------------------------------
  /** The key (data-key) of the control with the focus, which gets it back after a rendering. */
  const focusedKey = () => (document.activeElement as HTMLElement | null)?.dataset?.key;

  async function loadStatus(): Promise<void> {
    try {
      status = await api.get<GitStatus>(src.status);
      statusError = null;
    } catch (e) {
      status = null;
      statusError = e;
    }
  }

  /** A page of a mode's diff; the repository's route has its folder in the query already. */
  const diffUrl = (m: Mode, p: number) => `${src.diff}${src.diff.includes('?') ? q(diffQuery(m, p)).replace(/^\?/, '&') : q(diffQuery(m, p))}`;

  /** Pages 0..`upTo` of the current mode's diff, in order. */
  async function loadDiff(upTo: number): Promise<void> {
    const asked = mode;
    const got: DiffFile[] = [];
    let last: GitDiff | null = null;
    try {
      for (let p = 0; p <= upTo && (!last || p < last.pages); p++) {
        last = await api.get<GitDiff>(diffUrl(asked, p));
        appendPage(got, last.files);
      }
      if (asked !== mode) return;
      files = got;
      page = last?.page ?? 0;
      pages = last?.pages ?? 1;
      commit = last?.commit ?? null;
      diffError = null;
    } catch (e) {
      if (asked !== mode) return;
      files = got;
      diffError = e;
    }
  }

  async function loadPage(p: number): Promise<void> {
    const asked = mode;
    const next = await api.get<GitDiff>(diffUrl(asked, p));
    if (asked !== mode || gone) return;
    appendPage(files, next.files);
    page = next.page;
    pages = next.pages;
    render();
  }

  /** Status and diff again, keeping the pages already shown; errors show in the page. */
  async function refresh(loud = false, key = focusedKey()): Promise<void> {
    await Promise.all([loadStatus(), loadDiff(page)]);
    loading = false;
    if (gone) return;
    render(focusedKey() ?? key);
    if (loud && (statusError || diffError)) throw statusError ?? diffError;
  }

  // --- rendering -----------------------------------------------------------------------------
  function render(key = focusedKey()): void {
    renderSummary();
    renderModes();
    renderCommitLine();
    renderList();
    renderDiffs();
    more.hidden = page + 1 >= pages;
    more.textContent = `More (page ${page + 2} of ${pages})`;
    const repoReady = status !== null;
    for (const b of [commitButton, pullButton]) b.disabled = !repoReady;
    pushButton.disabled = !repoReady || !status?.branch;
    mergeButton.hidden = !status?.base || !status.branch;
    if (key) ctx.root.querySelector<HTMLElement>(`[data-key="${CSS.escape(key)}"]`)?.focus({ preventScroll: true });
  }

  function renderSummary(): void {
    if (loading) {
      clear(summary, h('p', { class: 'muted' }, 'Loading…'));
      return;
    }
    if (!status) {
      clear(summary, h('p', { class: 'form-error', role: 'alert' }, errorText(statusError)), h('p', { class: 'muted' }, src.notGit));
      return;
    }
    const s = status;
    clear(summary,
      h('p', { class: 'cf-branch' }, icon('branch', 16), h('span', { class: 'sr-only' }, 'Branch '),
        h('strong', null, s.branch ?? 'detached HEAD'),
        s.base ? [h('span', { 'aria-hidden': 'true' }, ' → '), h('span', { class: 'sr-only' }, ' based on '), s.base] : null),
      h('p', { class: 'muted cf-meta' }, s.base ? aheadBehind(s.ahead, s.behind, s.base) : null, s.base && s.head ? ' · ' : null,
        s.head ? h('code', null, s.head.slice(0, 7)) : null, ` · ${s.repo}`),
      h('p', { class: 'cf-counts' }, countsLine(s.counts)));
  }

  function renderModes(): void {
    const label = (m: Mode) => m === 'worktree' ? 'Unstaged' : m === 'staged' ? 'Staged' : m === 'head' ? 'Uncommitted'
      : m === 'last_commit' ? 'Last commit' : `vs ${status?.base ?? src.base ?? 'base'}`;
    clear(modes, MODES.filter((m) => m !== 'base' || (!readOnly && (status?.base || src.base))).map((m) =>
      h('button', { type: 'button', class: 'cf-mode', 'aria-pressed': String(m === mode), 'data-key': `mode:${m}`, onclick: () => void switchMode(m) }, label(m))));
  }

  /** The last commit's short id, summary, author and when, above its files. */
  function renderCommitLine(): void {
    commitLine.hidden = mode !== 'last_commit' || loading || !commit;
    if (commitLine.hidden || !commit) return;
    const at = new Date(commit.date * 1000);
    clear(commitLine, h('span', { class: 'sr-only' }, 'Commit '), h('code', null, commit.id.slice(0, 7)), ' ',
      h('strong', { class: 'cf-commit-summary' }, commit.summary), ' ',
      h('span', { class: 'muted' }, `by ${commit.author}, `, h('time', { datetime: at.toISOString(), title: at.toLocaleString() }, relativeTime(commit.date))));
  }

  async function switchMode(next: Mode): Promise<void> {
    if (next === mode) return;
    mode = next;
    files = [];
    page = 0;
    pages = 1;
    commit = null;
    history.replaceState(null, '', `${src.hash}${next === 'worktree' ? '' : `?mode=${next}`}`);
    clear(diffs, h('p', { class: 'muted' }, 'Loading…'));
    render();
    await loadDiff(0);
    if (!gone && mode === next) render();
  }

  const statusOf = (path: string) => status?.files.find((f) => f.path === path);
  const diffOf = (path: string) => files.find((f) => f.path === path);
  /**
   * The diff's files. The server sends the untracked ones after the tracked (with their lines);
   * any the status lists that the diff lacks (an older server) come after its last page, bare,
   * since they are what an agent adds most, and discarding one happens here.
   */
  const shownFiles = (): DiffFile[] => {
    if (!showsUntracked(mode) || !status || page + 1 < pages) return files;
    const untracked = status.files.filter((f) => f.status === 'untracked' && !diffOf(f.path))
      .map((f): DiffFile => ({ path: f.path, status: 'untracked', binary: false, additions: 0, deletions: 0, hunks: [] }));
    return untracked.length ? [...files, ...untracked] : files;
  };

  function renderList(): void {
    // Uncommitted modes list every changed file (with its staging box); the others list the
    // files of the diff loaded so far.
    const rows: HTMLElement[] = [];
    if (canStage(mode) && status && !readOnly) {
      for (const f of status.files) rows.push(listRow(f.path, f.status, diffOf(f.path), f));
    } else {
      for (const f of shownFiles()) rows.push(listRow(f.path, f.status, f, undefined));
    }
    if (!rows.length) {
      clear(list, loading ? null : h('p', { class: 'muted cf-empty' }, emptyWords()));
      return;
    }
    clear(list, h('h2', { class: 'sr-only' }, 'Files'), h('ul', { class: 'cf-rows' }, rows));
  }

  function emptyWords(): string {
    if (!status && statusError) return '';
    switch (mode) {
      case 'worktree': return status?.files.length ? 'Nothing unstaged: every change is staged.' : 'Nothing changed in the working tree.';
      case 'staged': return 'Nothing is staged.';
      case 'head': return 'Nothing uncommitted: the working tree is the last commit.';
      case 'last_commit': return commit ? 'The last commit changed no file.' : 'No commit yet.';
      case 'base': return `This branch has no changes against ${status?.base ?? 'its base'}.`;
    }
  }

  function listRow(path: string, st: string, diff: DiffFile | undefined, sf: StatusFile | undefined): HTMLElement {
    const g = statusGlyph(st);
    const { dir, name } = splitPath(path);
    return h('li', { class: 'cf-row' },
      readOnly ? null : sf && sf.status !== 'conflicted' ? stageBox(sf) : h('span', { class: 'cf-box-space', 'aria-hidden': 'true' }),
      h('span', { class: `cf-glyph cf-${st}`, title: g.words, 'aria-hidden': 'true' }, g.glyph),
      h('button', { type: 'button', class: 'cf-jump', 'data-key': `jump:${path}`, onclick: () => void jumpTo(path) },
        h('span', { class: 'sr-only' }, `${g.words}: `), dir ? h('span', { class: 'cf-dir' }, dir) : null, h('span', { class: 'cf-name' }, name)),
      diff ? stat(diff) : null);
  }

  function stat(f: DiffFile): HTMLElement | null {
    if (f.status === 'untracked' && !f.hunks.length) return null;
    return h('span', { class: 'cf-stat' },
      f.binary ? 'bin' : [h('span', { class: 'cf-plus' }, `+${f.additions}`), ' ', h('span', { class: 'cf-minus' }, `−${f.deletions}`)]);
  }

  function stageBox(f: StatusFile): HTMLButtonElement {
    const state = stagedState(f);
    const b = h('button', {
      type: 'button', role: 'checkbox', class: 'cf-box', 'aria-checked': state, 'aria-label': `Stage ${f.path}`,
      title: state === 'true' ? 'Staged: tap to unstage' : state === 'mixed' ? 'Partly staged: tap to stage the rest' : 'Tap to stage',
      'data-key': `stage:${f.path}`,
    }, h('span', { class: 'cf-box-mark', 'aria-hidden': 'true' }, state === 'true' ? '✓' : state === 'mixed' ? '–' : ''));
    b.addEventListener('click', () => {
      const action = toggleAction(f);
      void run(b, () => api.post(`${base}/git/${action}`, { paths: [f.path] }), `${action === 'stage' ? 'Staged' : 'Unstaged'} ${f.path}.`);
    });
    return b;
  }

  function renderDiffs(): void {
    if (loading) {
      clear(diffs, h('p', { class: 'muted' }, 'Loading…'));
      return;
    }
    const shown = shownFiles();
    // The list says it when it is empty too; when it lists files with nothing to show in this
    // mode (Staged, with nothing staged), the diff says so.
    const nothing = !shown.length && !diffError && list.querySelector('.cf-row') ? h('p', { class: 'muted cf-empty' }, emptyWords()) : null;
    clear(diffs,
      diffError ? h('p', { class: 'form-error', role: 'alert' }, errorText(diffError)) : null,
      nothing,
      shown.map(fileSection));
  }

  function fileSection(f: DiffFile): HTMLElement {
    const key = `${mode}:${f.path}`;
    const folded = fileFolds.get(key) ?? foldedAtFirst(f);
    const g = statusGlyph(f.status);
    const bodyId = `cf-body-${cssId(f.path)}`;
    const body = h('div', { class: 'cf-body', id: bodyId, hidden: folded });
    const fold = h('button', { type: 'button', class: 'cf-file-fold', 'aria-expanded': String(!folded), 'aria-controls': bodyId, 'data-key': `file:${f.path}` },
      h('span', { class: `cf-glyph cf-${f.status}`, 'aria-hidden': 'true' }, g.glyph),
      h('span', { class: 'sr-only' }, `${g.words}: `),
      h('span', { class: 'cf-path' }, f.old_path && f.old_path !== f.path ? `${f.old_path} → ${f.path}` : f.path));
    fold.addEventListener('click', () => {
      const open = fold.getAttribute('aria-expanded') !== 'true';
      fileFolds.set(key, !open);
      fold.setAttribute('aria-expanded', String(open));
      body.hidden = !open;
      if (open && !body.childElementCount) fillBody(body, f);
    });
    const sf = canStage(mode) && !readOnly ? statusOf(f.path) : undefined;
    const actions = h('div', { class: 'cf-file-actions' },
      stat(f),
      sf && sf.status !== 'conflicted' ? stageBox(sf) : null,
      mode === 'worktree' && sf && (sf.unstaged || sf.status === 'untracked') ? discardButton(sf) : null);
    // A folded file's lines are drawn when it is opened: a lockfile costs nothing until then.
    if (!folded) fillBody(body, f);
    return h('section', { class: 'cf-file', 'data-path': f.path, 'aria-label': f.path },
      h('div', { class: 'cf-file-head' }, h('h2', { class: 'cf-file-title' }, fold), actions),
      body);
  }

  function discardButton(f: StatusFile): HTMLButtonElement {
    const b = h('button', { type: 'button', class: 'secondary small cf-discard', 'aria-label': `Discard changes to ${f.path}`, 'data-key': `discard:${f.path}` }, 'Discard');
    b.addEventListener('click', async () => {
      const untracked = f.status === 'untracked';
      const ok = await confirmDialog(untracked ? `Delete ${f.path}?` : `Discard changes to ${f.path}?`,
        untracked ? `${f.path} is new and not in git: discarding deletes the file. This cannot be undone.`
          : `The unstaged changes to ${f.path} will be lost${f.staged ? '; what is staged stays' : ''}. This cannot be undone.`,
        untracked ? 'Delete file' : 'Discard');
      if (!ok) return;
      await run(b, () => api.post(`${base}/git/discard`, { paths: [f.path] }), untracked ? `Deleted ${f.path}.` : `Discarded the changes to ${f.path}.`);
    });
    return b;
  }

  function fillBody(body: HTMLElement, f: DiffFile): void {
    if (f.binary) {
      clear(body, h('p', { class: 'muted cf-note' }, 'Binary file: not shown.'));
      return;
    }
    if (!f.hunks.length && f.status === 'untracked') {
      clear(body, h('p', { class: 'muted cf-note' }, 'New, not in git yet; its lines are not shown (one of very many new files). Stage it to see them under Staged.'));
      return;
    }
    if (!f.hunks.length) {
      clear(body, h('p', { class: 'muted cf-note' }, f.status === 'renamed' ? 'Renamed; the content is the same.' : 'No changes to the text (the file mode or type changed, or it is empty).'));
      return;
    }
    body.style.setProperty('--digits', String(numberDigits(f)));
    const blocks = f.hunks.map((hunk) => hunkBlock(f, hunk));
    clear(body, blocks);
    colour(body, f, blocks);
  }

  /**
   * Colours a file's lines by its language once the grammar has loaded: only the text of each
   * line is drawn again, so the buttons (and the focus on one) stay.
   */
  function colour(body: HTMLElement, f: DiffFile, blocks: HTMLElement[]): void {
    const language = languageFor(f.path);
    if (!language) return;
    void loadLanguage(language).then((highlighter) => {
      if (gone || !highlighter) return;
      f.hunks.forEach((hunk, k) => {
        const block = blocks[k];
        if (!block || !body.contains(block)) return;
        const texts = block.querySelectorAll<HTMLElement>('.cf-line > .cf-text');
        const tokens = highlightHunk(highlighter, hunk.lines);
        const words = hunkWords(hunk.lines);
        hunk.lines.forEach((line, j) => {
          const t = tokens[j];
          if (t && line.text && texts[j]) texts[j].replaceChildren(...paint(words[j] ?? [{ text: line.text, changed: false }], t));
        });
      });
    }, () => undefined);
  }

  function hunkBlock(f: DiffFile, hunk: Hunk): HTMLElement {
    const key = `${mode}:${f.path}:${hunk.header}`;
    const folded = hunkFolds.get(key) ?? false;
    const linesId = `cf-hunk-${cssId(f.path)}-${cssId(hunk.id)}`;
    const lines = h('div', { class: 'cf-lines', id: linesId, hidden: folded });
    const words = hunkWords(hunk.lines);
    lines.append(...hunk.lines.map((line, k) => lineRow(line.kind, line.kind === 'del' ? line.old : line.new ?? line.old, line.text,
      words[k] ?? [{ text: line.text, changed: false }])));
    const fold = h('button', { type: 'button', class: 'cf-hunk-fold', 'aria-expanded': String(!folded), 'aria-controls': linesId, 'data-key': `hunk:${f.path}:${hunk.id}` },
      h('span', { class: 'cf-chevron', 'aria-hidden': 'true' }), h('span', { class: 'sr-only' }, 'Lines '), hunk.header);
    fold.addEventListener('click', () => {
      const open = fold.getAttribute('aria-expanded') !== 'true';
      hunkFolds.set(key, !open);
      fold.setAttribute('aria-expanded', String(open));
      lines.hidden = !open;
    });
    const sf = statusOf(f.path);
    // An untracked file has no hunks in git's index to stage: its box stages it whole.
    const hunkAction = readOnly ? null : mode === 'worktree' ? 'stage' : mode === 'staged' ? 'unstage' : null;
    const stageHunk = hunkAction && sf && f.status !== 'untracked' && sf.status !== 'untracked' && sf.status !== 'conflicted'
      ? h('button', { type: 'button', class: 'secondary small cf-hunk-stage', 'aria-label': `${hunkAction === 'stage' ? 'Stage' : 'Unstage'} hunk at line ${hunk.new_start} of ${f.path}`, 'data-key': `hunkstage:${f.path}:${hunk.id}` },
        hunkAction === 'stage' ? 'Stage hunk' : 'Unstage hunk')
      : null;
    stageHunk?.addEventListener('click', () => void run(stageHunk, () => api.post(`${base}/git/${hunkAction}`, { paths: [f.path], hunks: [hunk.id] }),
      `${hunkAction === 'stage' ? 'Staged' : 'Unstaged'} the hunk at line ${hunk.new_start} of ${f.path}.`));
    return h('div', { class: 'cf-hunk' }, h('div', { class: 'cf-hunk-head' }, fold, stageHunk), lines);
  }

  function lineRow(kind: 'context' | 'add' | 'del', no: number | null | undefined, text: string, segments: Segment[]): HTMLElement {
    const tag = kind === 'add' ? 'ins' : kind === 'del' ? 'del' : 'span';
    const content = h(tag, { class: 'cf-text' }, text ? paint(segments, null) : '\u200b');
    const row = h('div', { class: `cf-line cf-${kind}` },
      h('span', { class: 'cf-no', 'aria-hidden': 'true' }, no ?? ''),
      h('span', { class: 'cf-sign', 'aria-hidden': 'true' }, kind === 'add' ? '+' : kind === 'del' ? '−' : ' '),
      content);
    const hang = hangingIndent(text);
    if (hang) row.style.setProperty('--hang', String(hang));
    return row;
  }

  // --- navigation ----------------------------------------------------------------------------
  /** Scrolls to a file's diff, loading further pages until it comes (or there are none). */
  async function jumpTo(path: string): Promise<void> {
    const find = () => diffs.querySelector<HTMLElement>(`.cf-file[data-path="${CSS.escape(path)}"]`);
    try {
      while (!find() && page + 1 < pages && !gone) await loadPage(page + 1);
    } catch (e) {
      showError(e);
      return;
    }
    const section = find();
    if (!section) {
      toast(`${path} has no changes to show here${canStage(mode) ? ` in ${mode === 'staged' ? 'Staged' : 'Unstaged'}` : ''}.`, 'info');
      return;
    }
    const fold = section.querySelector<HTMLButtonElement>('.cf-file-fold');
    if (fold?.getAttribute('aria-expanded') === 'false') fold.click();
    section.scrollIntoView({ block: 'start', behavior: matchMedia('(prefers-reduced-motion: reduce)').matches ? 'auto' : 'smooth' });
    fold?.focus({ preventScroll: true });
  }

  // --- actions -------------------------------------------------------------------------------
  /** An action with its toast, then status and diff again (also after a failure: the repository may have moved). */
  async function run<T>(button: HTMLButtonElement | null, work: () => Promise<T>, done: string): Promise<T | undefined> {
    // Taken before the button is disabled (which drops the focus), so it comes back to the same control.
    const key = focusedKey() ?? button?.dataset.key;
    const result = await act(button, work, done);
    await refresh(false, key);
    return result;
  }

  async function push(): Promise<void> {
    const result = await act(pushButton, () => api.post<PushResult>(`${base}/git/push`));
    await refresh();
    if (!result) return;
    toast(`Pushed ${result.branch} to ${result.remote}.`);
    clear(notice, h('p', null, `Pushed ${result.branch} to ${result.remote}.`),
      result.compare_url ? h('p', null, h('a', { href: result.compare_url, target: '_blank', rel: 'noopener noreferrer', class: 'button primary' }, 'Compare and open a pull request')) : null,
      closeNotice());
    notice.setAttribute('role', 'status');
    notice.hidden = false;
  }

  async function pull(): Promise<void> {
    await run(pullButton, () => api.post(`${base}/git/pull`), `Pulled ${status?.branch ?? 'the branch'}.`);
  }

  async function merge(): Promise<void> {
    const branch = status?.branch ?? 'this branch';
    const into = status?.base ?? 'the base';
    if (!(await confirmDialog(`Merge ${branch} into ${into}?`,
      `The commits of ${branch} are merged into ${into}. Uncommitted changes are not part of it. If files conflict, the merge stops and lists them; nothing is resolved for you.`,
      'Merge', 'primary'))) return;
    const result = await act(mergeButton, () => api.post<MergeResult>(`${base}/git/merge`));
    await refresh();
    if (!result) return;
    if (result.outcome === 'merged') {
      toast(`Merged ${branch} into ${into}.`);
      notice.hidden = true;
    } else if (result.outcome === 'up_to_date') {
      toast(`${into} already has everything in ${branch}.`, 'info');
      notice.hidden = true;
    } else {
      toast(`The merge into ${into} stopped: ${result.conflicts.length} ${result.conflicts.length === 1 ? 'file conflicts' : 'files conflict'}.`, 'error');
      clear(notice,
        h('h2', null, `Merge into ${into} stopped with conflicts`),
        h('p', null, 'These files changed on both sides. Ask the agent to resolve them, or resolve them in the terminal; then commit.'),
        h('ul', { class: 'cf-conflicts' }, result.conflicts.map((p) => h('li', null, h('code', null, p)))),
        closeNotice());
      notice.setAttribute('role', 'alert');
      notice.hidden = false;
    }
  }

  function closeNotice(): HTMLButtonElement {
    return h('button', { type: 'button', class: 'secondary small', onclick: () => { notice.hidden = true; } }, 'Dismiss');
  }

  /** The commit sheet: a message (prefilled from what the agent said last), what goes in. */
  async function openCommit(): Promise<void> {
    if (!status || !instance) return;
    const staged = status.files.filter((f) => f.staged);
    if (!status.files.length) {
      toast('Nothing to commit: no file changed.', 'info');
      return;
    }
    const latest = await api.get<Instance>(base).catch(() => instance);
    const d = h('dialog', { class: 'dialog cf-commit', 'aria-labelledby': 'cf-commit-title' });
    const message = h('textarea', {
      id: 'cf-message', name: 'message', rows: 4, required: true, autocapitalize: 'sentences', maxLength: 5000,
      value: commitPrefill(latest.preview), placeholder: 'What changed, in a line',
    });
    const stageAll = h('input', { type: 'checkbox', id: 'cf-stage-all', checked: !staged.length });
    const submit = h('button', { type: 'submit', class: 'primary' }, 'Commit');
    const error = inlineError(submit, 'cf-commit-error');
    const what = staged.length
      ? `${staged.length} staged ${staged.length === 1 ? 'file' : 'files'}: ${staged.slice(0, 5).map((f) => f.path).join(', ')}${staged.length > 5 ? ', …' : ''}`
      : 'Nothing is staged yet.';
    const form = h('form', { class: 'stack' },
      h('h2', { id: 'cf-commit-title' }, `Commit to ${status.branch ?? 'the current branch'}`),
      h('p', { class: 'muted cf-what' }, what),
      h('label', { class: 'field', for: 'cf-message' }, h('span', null, 'Message'), message),
      h('label', { class: 'check', for: 'cf-stage-all' }, stageAll, `Stage all ${status.files.length} changed ${status.files.length === 1 ? 'file' : 'files'} first`),
      error.el,
      h('div', { class: 'dialog-buttons' }, h('button', { type: 'button', class: 'secondary', onclick: () => d.close() }, 'Cancel'), submit));
    const paths = status.files.filter((f) => f.status !== 'conflicted').map((f) => f.path);
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      const text = message.value.trim();
      if (!text) {
        error.show(new Error('write a message first'));
        message.focus();
        return;
      }
      const result = await act(submit, async () => {
        if (stageAll.checked && paths.length) await api.post(`${base}/git/stage`, { paths });
        return api.post<CommitResult>(`${base}/git/commit`, { message: text });
      }, undefined, error);
      if (!result) return;
      d.close();
      toast(`Committed ${result.commit.slice(0, 7)}: ${result.summary}`);
      await refresh();
    });
    d.append(form);
    document.body.append(d);
    d.addEventListener('close', () => {
      d.remove();
      commitButton.focus();
    });
    d.showModal();
    message.focus();
    message.setSelectionRange(message.value.length, message.value.length);
  }

  // A return to the tab (the agent kept working) brings the view up to date.
  const onVisible = () => {
    if (document.visibilityState === 'visible') void refresh();
  };
  document.addEventListener('visibilitychange', onVisible);

  render();
  await refresh();
  return () => {
    gone = true;
    document.removeEventListener('visibilitychange', onVisible);
  };
}

/**
 * A line's text as nodes: the word marks (changed words) with the grammar's token classes
 * inside them, each piece a span of its own when it has a class.
 */
function paint(segments: Segment[], tokens: Token[] | null): (Node | string)[] {
  const out: (Node | string)[] = [];
  let at = 0;
  for (const seg of segments) {
    const pieces = tokens ? slice(tokens, at, at + seg.text.length) : [{ text: seg.text, cls: '' }];
    at += seg.text.length;
    const nodes = pieces.map((p) => (p.cls ? h('span', { class: p.cls }, p.text) : p.text));
    out.push(seg.changed ? h('span', { class: 'cf-word' }, nodes) : nodes.length === 1 && typeof nodes[0] === 'string' ? nodes[0] : h('span', null, nodes));
  }
  return out;
}

/** The tokens' text between two offsets of the line, cut where the range cuts them. */
function slice(tokens: Token[], from: number, to: number): { text: string; cls: string }[] {
  const out: { text: string; cls: string }[] = [];
  for (const t of tokens) {
    const a = Math.max(from, t.from);
    const b = Math.min(to, t.to);
    if (a < b) out.push({ text: t.text.slice(a - t.from, b - t.from), cls: t.cls });
  }
  return out;
}

/** A path made safe for an element id. */
function cssId(s: string): string {
  let out = '';
  for (const ch of s) out += /[A-Za-z0-9_-]/.test(ch) ? ch : `_${ch.codePointAt(0)!.toString(16)}`;
  return out;
}
