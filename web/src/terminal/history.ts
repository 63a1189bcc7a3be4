// The agent's whole tmux history in a full-height sheet: the newest page first, earlier pages as
// the reader scrolls up (or taps "Load earlier"), and a search whose matches open their page with
// the line highlighted. Only pages asked for are downloaded. See GET /api/instances/{id}/history
// in the API description for positions (rows counted from the bottom) and how output printed
// between pages moves them.
import { api, q } from '../api';
import { h, toast, showError } from '../ui';
import './history.css';

/** `HistoryPage` in src/instances/routes.rs. */
interface Page {
  lines: string[];
  first: number | null;
  last: number | null;
  total: number;
}

/** `HistorySearch` in src/instances/routes.rs. */
interface Search {
  query: string;
  matches: { position: number; text: string }[];
  truncated: boolean;
  total: number;
}

const PAGE = 500;
/** How often a page is asked again when output arrived since the positions were learnt. */
const TRIES = 3;
const LINK = /(https?:\/\/[^\s"'<>]+)/g;

export function openHistory(opts: { instanceId: string; name: string }): void {
  if (document.querySelector('.history-sheet')) return;
  const base = `api/instances/${encodeURIComponent(opts.instanceId)}/history`;

  // The lines held: a run of rows from `top` down to `bottom` (positions as of `total`).
  let top: number | null = null;
  let bottom: number | null = null;
  let total = 0;
  let busy = false;

  const d = h('dialog', { class: 'dialog select-sheet history-sheet', 'aria-labelledby': 'history-title' });
  const status = h('p', { class: 'muted history-status', role: 'status', 'aria-live': 'polite' });
  const earlier = h('button', { type: 'button', class: 'secondary small history-more' }, 'Load earlier');
  const later = h('button', { type: 'button', class: 'secondary small history-more', hidden: true }, 'Load later');
  const lines = h('div', { class: 'history-lines' });
  const scroller = h('div', { class: 'history-scroll', tabindex: 0, role: 'region', 'aria-label': 'History text' }, earlier, lines, later);
  const searchInput = h('input', { type: 'search', id: 'history-q', name: 'q', autocomplete: 'off', autocapitalize: 'off', maxLength: 200, required: true });
  searchInput.spellcheck = false;
  const results = h('ul', { class: 'history-results', 'aria-label': 'Matches', hidden: true });
  const searchForm = h('form', { class: 'history-search', role: 'search' },
    h('label', { for: 'history-q' }, 'Search the history'),
    h('div', { class: 'history-search-row' }, searchInput, h('button', { type: 'submit', class: 'primary small' }, 'Search')));
  const copyAll = h('button', { type: 'button', class: 'secondary' }, 'Copy all');
  const copySel = h('button', { type: 'button', class: 'primary' }, 'Copy selection');
  d.append(
    h('h2', { id: 'history-title' }, `History of ${opts.name}`),
    searchForm, results, status, scroller,
    h('div', { class: 'dialog-buttons' }, h('button', { type: 'button', class: 'secondary', onclick: () => d.close() }, 'Close'), copyAll, copySel));

  function lineEl(text: string): HTMLElement {
    const el = h('div', { class: 'history-line' });
    let at = 0;
    for (const m of text.matchAll(LINK)) {
      el.append(text.slice(at, m.index));
      el.append(h('a', { href: m[0], target: '_blank', rel: 'noopener noreferrer' }, m[0]));
      at = (m.index ?? 0) + m[0].length;
    }
    el.append(text.slice(at) || '\u200b');
    return el;
  }

  function showEnds() {
    const atTop = top === null || top + 1 >= total;
    earlier.disabled = atTop;
    earlier.textContent = atTop ? 'Start of the history' : 'Load earlier';
    later.hidden = bottom === null || bottom === 0;
  }

  /**
   * A page asked for with positions learnt at `since` (a `total`): when output arrived meanwhile
   * every row moved up by the growth, so it is asked again with positions moved by it. Answers
   * the page and how far the positions held moved.
   */
  async function fetchPage(before: number, count: number, since: number): Promise<{ page: Page; moved: number }> {
    let moved = 0;
    for (let i = 0; ; i++) {
      const page = await api.get<Page>(base + q({ before: before + moved, lines: count }));
      const growth = page.total - since - moved;
      if (growth <= 0 || i + 1 >= TRIES) return { page, moved };
      moved += growth;
    }
  }

  async function run(work: () => Promise<void>) {
    if (busy) return;
    busy = true;
    scroller.setAttribute('aria-busy', 'true');
    try {
      await work();
    } catch (e) {
      showError(e);
    } finally {
      busy = false;
      scroller.removeAttribute('aria-busy');
      showEnds();
    }
  }

  function shift(moved: number) {
    if (top !== null) top += moved;
    if (bottom !== null) bottom += moved;
  }

  const loadNewest = () => run(async () => {
    status.textContent = 'Loading…';
    const page = await api.get<Page>(base + q({ lines: PAGE }));
    lines.replaceChildren(...page.lines.map(lineEl));
    ({ first: top, last: bottom, total } = page);
    status.textContent = page.lines.length ? '' : 'Nothing printed yet.';
    scroller.scrollTop = scroller.scrollHeight;
  });

  const loadEarlier = () => run(async () => {
    if (top === null || top + 1 >= total) return;
    status.textContent = 'Loading earlier lines…';
    const { page, moved } = await fetchPage(top + 1, PAGE, total);
    shift(moved);
    total = page.total;
    if (page.first !== null) {
      // Keep what is on screen where it is while lines arrive above it.
      const from = scroller.scrollHeight - scroller.scrollTop;
      lines.prepend(...page.lines.map(lineEl));
      scroller.scrollTop = scroller.scrollHeight - from;
      top = page.first;
    }
    status.textContent = '';
  });

  const loadLater = () => run(async () => {
    if (bottom === null || bottom === 0) return;
    status.textContent = 'Loading later lines…';
    const before = Math.max(0, bottom - PAGE);
    const { page, moved } = await fetchPage(before, bottom - before, total);
    shift(moved);
    total = page.total;
    if (page.last !== null) {
      lines.append(...page.lines.map(lineEl));
      bottom = page.last;
    }
    status.textContent = '';
  });

  /** The page that starts with the match at `position` (as of `since`), the line highlighted. */
  const openMatch = (position: number, since: number) => run(async () => {
    status.textContent = 'Loading…';
    const count = Math.min(PAGE, position + 1);
    const { page } = await fetchPage(position - count + 1, count, since);
    if (page.first === null) {
      status.textContent = 'That line is no longer in the history.';
      return;
    }
    lines.replaceChildren(...page.lines.map(lineEl));
    ({ first: top, last: bottom, total } = page);
    const hit = lines.firstElementChild as HTMLElement | null;
    if (hit) {
      hit.classList.add('history-hit');
      hit.setAttribute('aria-current', 'true');
      const offset = hit.getBoundingClientRect().top - scroller.getBoundingClientRect().top + scroller.scrollTop;
      scroller.scrollTop = Math.max(0, offset - scroller.clientHeight / 3);
    }
    status.textContent = '';
  });

  async function search(event: Event) {
    event.preventDefault();
    const text = searchInput.value;
    if (!text) return;
    try {
      status.textContent = 'Searching…';
      const found = await api.get<Search>(base + q({ q: text }));
      results.replaceChildren(...found.matches.map((m) => h('li', null,
        h('button', { type: 'button', class: 'history-match', onclick: () => void openMatch(m.position, found.total) }, m.text || ' '))));
      results.hidden = found.matches.length === 0;
      const n = found.matches.length;
      status.textContent = n === 0 ? `No line holds “${text}”.`
        : `${n}${found.truncated ? ' newest' : ''} ${n === 1 ? 'match' : 'matches'}, newest first; tap one to see it.`;
    } catch (e) {
      status.textContent = '';
      showError(e);
    }
  }

  function heldText(): string {
    return Array.from(lines.children, (el) => (el.textContent ?? '').replace(/\u200b/g, '')).join('\n');
  }

  async function copy(text: string) {
    try {
      await navigator.clipboard.writeText(text);
      toast('Copied.');
    } catch {
      toast('The browser did not allow copying; select the text and use its Copy.', 'error');
    }
  }

  // A tap on the button clears the selection before its click: keep what was selected.
  let picked = '';
  const selectionChange = () => {
    const s = window.getSelection()?.toString() ?? '';
    if (s) picked = s;
  };
  document.addEventListener('selectionchange', selectionChange);
  copyAll.addEventListener('click', () => void copy(heldText()));
  copySel.addEventListener('click', () => {
    const s = window.getSelection()?.toString() || picked;
    if (!s) toast('Select some text first: press and hold, then drag.', 'info');
    else void copy(s.replace(/\u200b/g, ''));
  });
  earlier.addEventListener('click', () => void loadEarlier());
  later.addEventListener('click', () => void loadLater());
  searchForm.addEventListener('submit', (e) => void search(e));
  scroller.addEventListener('scroll', () => {
    // Near the top: the page above comes before the reader gets there.
    if (scroller.scrollTop < 200 && lines.childElementCount && !earlier.disabled) void loadEarlier();
  }, { passive: true });

  document.body.append(d);
  d.addEventListener('close', () => {
    document.removeEventListener('selectionchange', selectionChange);
    d.remove();
  });
  d.showModal();
  void loadNewest();
}
