// The terminal: xterm.js over the instance's WebSocket (docs/terminal-protocol.md), with a key
// bar for the keys a phone lacks, a compose box sent as one paste, image upload, touch scrolling,
// a selection sheet for copying, and reconnection with backoff and a fresh ticket per attempt.
import { Terminal } from '@xterm/xterm';
import { FitAddon } from '@xterm/addon-fit';
import { WebLinksAddon } from '@xterm/addon-web-links';
import '@xterm/xterm/css/xterm.css';
import { api, ApiError, mkdirp, upload, type Instance, type Model } from '../api';
import type { ServerMessage, ClientMessage } from '../protocol';
import { Close, MAX_FRAME } from '../protocol';
import { h, clear, toast, showError, statusBadge, act, icon } from '../ui';
import { approvalSheet } from '../approvals';
import { mountKeyBar, customizeKeys, ctrlOf } from '../terminal/keys';
import { mountScrolling } from '../terminal/scroll';
import { mountSelection } from '../terminal/select';
import { effectiveTheme, jumpToNextWaiting, openSwitcher, waitingOnes, type Ctx } from '../main';
import { muteMenuItem } from '../push';
import { onInstances } from '../events';
import { money, tokenCount, type SpendTotals } from './usage';

const FONT_KEY = 'pd.fontSize';
const themes = {
  dark: { background: '#0b1220', foreground: '#e2e8f0', cursor: '#22c55e', selectionBackground: '#334155' },
  light: { background: '#ffffff', foreground: '#0f172a', cursor: '#15803d', selectionBackground: '#bfdbfe',
    black: '#0f172a', white: '#64748b', brightWhite: '#334155', yellow: '#a16207', brightYellow: '#854d0e' },
};

function defaultFont(): number {
  const saved = Number(localStorage.getItem(FONT_KEY));
  if (saved >= 8 && saved <= 32) return saved;
  return window.innerWidth < 500 ? 13 : 15;
}

export async function terminalView(ctx: Ctx): Promise<() => void> {
  const id = ctx.params[0] ?? '';
  let instance: Instance | null = null;
  try {
    instance = await api.get<Instance>(`api/instances/${encodeURIComponent(id)}`);
  } catch (e) {
    clear(ctx.root, h('div', { class: 'center-card' }, h('h1', null, 'Agent not found'), h('p', { role: 'alert' }, e instanceof Error ? e.message : String(e)), h('a', { href: '#/', class: 'button primary' }, 'Back to agents')));
    return () => undefined;
  }

  // --- layout ------------------------------------------------------------------------------
  const badge = h('span', { class: 'term-status', 'aria-live': 'polite' }, statusBadge(instance.state, instance.status));
  const title = h('h1', { class: 'term-title' }, instance.name);
  const waitingCount = h('span', { class: 'count', hidden: true });
  // One slim row: the agent's name gets the room; text size, the switcher and files live in a
  // menu (a popover: a tap outside closes it).
  // What this agent spent, read when the menu opens; it leads to the account's usage.
  const spendItem = h('a', { href: '#/settings', role: 'menuitem', class: 'term-spend', onclick: () => menu.hidePopover() }, 'Usage');
  const showSpend = async () => {
    try {
      const u = await api.get<{ measured: boolean; currency: string; conversation: { tokens: number; cost: number } | null; today: SpendTotals }>(`api/instances/${encodeURIComponent(id)}/usage`);
      spendItem.textContent = !u.measured ? 'Usage: not measured for this agent'
        : `Usage: ${money(u.today.cost, u.currency)} today · this conversation ${tokenCount(u.conversation?.tokens ?? 0)} tokens`;
    } catch {
      spendItem.textContent = 'Usage';
    }
  };
  // Offered only for agents that can come back where they were (their profile says how).
  const suspendItem = h('button', { type: 'button', role: 'menuitem', onclick: () => { menu.hidePopover(); void suspendNow(); } }, 'Suspend (free its memory)');
  void api.get<Model[]>('api/models').then((models) => {
    if (models.find((m) => m.id === instance!.profile)?.can_resume) spendItem.before(suspendItem);
  }).catch(() => undefined);
  const menu = h('div', { class: 'term-menu', id: `term-menu-${id}`, popover: 'auto', role: 'menu', 'aria-label': 'Terminal menu' },
    h('button', { type: 'button', role: 'menuitem', onclick: () => setFont(fontSize - 1) }, 'A− Smaller text'),
    h('button', { type: 'button', role: 'menuitem', onclick: () => setFont(fontSize + 1) }, 'A+ Larger text'),
    h('button', { type: 'button', role: 'menuitem', onclick: () => { menu.hidePopover(); void openSwitcher(); } }, 'Switch agent'),
    h('button', { type: 'button', role: 'menuitem', onclick: () => { menu.hidePopover(); void import('../terminal/history').then((m) => m.openHistory({ instanceId: id, name: instance!.name })); } }, 'History and search'),
    // Its branch's diff, for an agent started on a branch (issue 17).
    instance.git_branch ? h('a', { href: `#/changes/${encodeURIComponent(id)}`, role: 'menuitem', onclick: () => menu.hidePopover() }, 'Changes') : null,
    h('button', { type: 'button', role: 'menuitem', onclick: () => { menu.hidePopover(); customizeKeys(() => keys.rebuild()); } }, 'Customize keys'),
    muteMenuItem(id, () => menu.hidePopover()),
    spendItem,
    h('a', { href: '#/files', role: 'menuitem', onclick: () => menu.hidePopover() }, 'Files'));
  menu.addEventListener('toggle', (e) => {
    if ((e as ToggleEvent).newState === 'open') void showSpend();
  });
  const header = h('header', { class: 'term-head' },
    h('a', { href: '#/', class: 'icon-button', 'aria-label': 'Back to agents' }, icon('back')),
    // The name on top with the whole width, the status small beneath it.
    h('div', { class: 'term-titles' }, title, badge),
    h('div', { class: 'term-head-actions' },
      h('button', { type: 'button', class: 'icon-button', 'aria-label': 'Next agent waiting for you', title: 'Next waiting agent', onclick: () => void jumpToNextWaiting(id) }, icon('next'), waitingCount),
      h('button', { type: 'button', class: 'icon-button', 'aria-label': 'More', title: instance.git_branch ? 'Text size, switch agent, changes, files' : 'Text size, switch agent, files', popovertarget: `term-menu-${id}` }, '⋯')),
    menu);
  const banner = h('div', { class: 'term-banner', role: 'status', hidden: true });
  const screen = h('div', { class: 'term-screen', 'aria-label': `Terminal of ${instance.name}`, role: 'region' });

  // On a short screen the message box folds into the key bar (see the stylesheet).
  const composeKey = h('button', { type: 'button', class: 'key key-glyph fold', 'aria-label': 'Write a message' }, '✎');
  composeKey.addEventListener('pointerdown', (e) => e.preventDefault());
  composeKey.addEventListener('click', () => {
    full.classList.add('composing');
    compose.focus();
  });
  const keybar = h('div', { class: 'keybar', role: 'toolbar', 'aria-label': 'Terminal keys' });

  const compose = h('textarea', {
    class: 'compose-input', rows: 1, placeholder: 'Message the agent…', 'aria-label': 'Message to send to the agent',
    autocapitalize: 'sentences', enterKeyHint: 'send',
  });
  const fileInput = h('input', { type: 'file', accept: 'image/*', hidden: true, 'aria-hidden': 'true', tabindex: -1 });
  const imageButton = h('button', { type: 'button', class: 'icon-button', 'aria-label': 'Attach an image' }, icon('image'));
  const sendButton = h('button', { type: 'submit', class: 'primary send', 'aria-label': 'Send message' }, 'Send');
  // Phone keyboards have no Shift-Return: a new line has a button of its own.
  const newlineButton = h('button', { type: 'button', class: 'icon-button', 'aria-label': 'New line in the message', title: 'New line' }, '↵');
  // "As keys": the message is typed key by key (`:wq` in vim, a menu choice in a TUI) rather
  // than pasted as one piece; remembered per agent on this device.
  const keysModeKey = `pd.compose-keys.${id}`;
  let asKeys = localStorage.getItem(keysModeKey) === '1';
  const keysToggle = h('button', { type: 'button', class: 'icon-button compose-mode', 'aria-label': 'Keys: send as keystrokes', 'aria-pressed': String(asKeys), title: 'Send as keystrokes instead of a paste' }, 'Keys');
  const doneButton = h('button', { type: 'button', class: 'icon-button fold-done', 'aria-label': 'Back to the keys', title: 'Back to the keys' }, '⌄');
  const composeForm = h('form', { class: 'compose' }, doneButton, imageButton, fileInput, keysToggle, compose, newlineButton, sendButton);

  const approvals = approvalSheet(id);
  const full = h('div', { class: 'term-page' }, header, banner, screen, approvals.el, composeForm, keybar);
  clear(ctx.root, full);
  approvals.show(instance.pending_approval);

  // --- xterm --------------------------------------------------------------------------------
  let fontSize = defaultFont();
  const term = new Terminal({
    fontSize,
    // The symbols font comes last: only glyphs that no monospace font has are drawn from it.
    fontFamily: 'ui-monospace, "SFMono-Regular", "DejaVu Sans Mono", Menlo, Consolas, monospace, "pocketdev symbols"',
    scrollback: 5000,
    theme: themes[effectiveTheme()],
    allowProposedApi: true,
    cursorBlink: false,
    // Programs pick colours for a dark background (Claude Code's prompt is pale blue): xterm
    // darkens or lightens any text that would fall below WCAG AA against its background.
    minimumContrastRatio: 4.5,
    convertEol: false,
    macOptionIsMeta: true,
  });
  const fit = new FitAddon();
  term.loadAddon(fit);
  term.loadAddon(new WebLinksAddon((_event, uri) => window.open(uri, '_blank', 'noopener,noreferrer')));
  term.open(screen);
  // Browser tests compare the buffer with tmux's own screen through this.
  (screen as HTMLElement & { terminal?: Terminal }).terminal = term;
  // Phones: typing straight into xterm's hidden textarea is unreliable; keep autocorrect off.
  term.textarea?.setAttribute('autocorrect', 'off');
  term.textarea?.setAttribute('autocapitalize', 'off');
  term.textarea?.setAttribute('spellcheck', 'false');
  term.textarea?.setAttribute('aria-label', 'Terminal input');
  // Android keyboards duplicate words typed straight into xterm.js (an upstream problem): there a
  // tap on the terminal opens the message box instead, and the ⌨ key still types directly.
  const android = /Android/i.test(navigator.userAgent);
  let typingDirectly = false;
  term.textarea?.addEventListener('focus', () => {
    if (!android || typingDirectly) return;
    // After the tap's own focus change is over.
    setTimeout(() => {
      if (typingDirectly || document.activeElement !== term.textarea) return;
      full.classList.add('composing');
      compose.focus();
    });
  });
  term.textarea?.addEventListener('blur', () => {
    typingDirectly = false;
  });
  // The space below the last row, where the height is not a whole number of rows, takes the
  // terminal's own background.
  screen.style.backgroundColor = themes[effectiveTheme()].background;
  const onTheme = (e: Event) => {
    const theme = themes[(e as CustomEvent<'light' | 'dark'>).detail];
    term.options.theme = theme;
    screen.style.backgroundColor = theme.background;
  };
  window.addEventListener('pd-theme', onTheme);

  const safeFit = () => {
    try {
      fit.fit();
    } catch {
      // Not laid out yet.
    }
  };
  safeFit();

  function setFont(size: number) {
    fontSize = Math.min(28, Math.max(8, size));
    localStorage.setItem(FONT_KEY, String(fontSize));
    term.options.fontSize = fontSize;
    safeFit();
    toast(`Text size ${fontSize}`, 'info', 1200);
  }

  // --- connection ----------------------------------------------------------------------------
  let ws: WebSocket | null = null;
  let closed = false;
  let ended = false;
  let attempt = 0;
  let retryTimer: ReturnType<typeof setTimeout> | undefined;
  let pingTimer: ReturnType<typeof setInterval> | undefined;
  let lastPong = Date.now();
  let expectSnapshot = false;
  let restarting = false;
  let lastSize = '';
  const encoder = new TextEncoder();

  const showBanner = (text: string, ...actions: HTMLElement[]) => {
    clear(banner, h('span', null, text), ...actions);
    banner.hidden = false;
  };
  const hideBanner = () => {
    banner.hidden = true;
  };
  const setStatus = (state: string, status?: string | null, reason?: string | null) => {
    clear(badge, statusBadge(state, status));
    badge.title = reason ?? '';
  };

  // To the prompt; once scrolling on glass is mounted, its glide stops there too.
  let toLatest = () => term.scrollToBottom();
  function send(message: ClientMessage) {
    if (ws?.readyState === WebSocket.OPEN) ws.send(JSON.stringify(message));
  }
  function sendBytes(data: string) {
    if (ws?.readyState !== WebSocket.OPEN) {
      toast('Not connected; the keys were not sent.', 'error', 2000);
      return;
    }
    const bytes = encoder.encode(data);
    for (let i = 0; i < bytes.length; i += MAX_FRAME) ws.send(bytes.slice(i, i + MAX_FRAME));
    // Typing means looking at the prompt again, as in a desktop terminal.
    toLatest();
  }
  function sendKey(data: string) {
    if (data.length === 1 && keys.takeCtrl()) data = ctrlOf(data);
    sendBytes(data);
  }
  function sendPaste(text: string) {
    if (!text) return;
    if (ws?.readyState !== WebSocket.OPEN) {
      toast('Not connected; nothing was sent.', 'error');
      return false;
    }
    send({ type: 'paste', data: text });
    toLatest();
    return true;
  }
  // The sticky Ctrl of the key bar applies to a key typed on the keyboard too.
  term.onData((data) => sendKey(data));
  term.onBinary((data) => {
    if (ws?.readyState === WebSocket.OPEN) ws.send(Uint8Array.from(data, (c) => c.charCodeAt(0)));
  });

  const keys = mountKeyBar(keybar, composeKey, {
    send: sendKey,
    arrow: (c) => (term.modes.applicationCursorKeysMode ? `\x1bO${c}` : `\x1b[${c}`),
    paste: () => void pasteClipboard(),
    select: () => openSelection(),
    typeDirectly: () => {
      typingDirectly = true;
      term.focus();
    },
  });

  const sendSize = () => {
    const size = `${term.cols}x${term.rows}`;
    if (size === lastSize) return;
    lastSize = size;
    send({ type: 'resize', cols: term.cols, rows: term.rows });
  };
  const onResize = () => {
    // A message laid out for another width may need fewer (or more) lines now.
    if (compose.value) grow();
    safeFit();
    sendSize();
    // Toasts sit just above the message box and key bar.
    document.body.style.setProperty('--term-bottom', `${composeForm.offsetHeight + keybar.offsetHeight}px`);
  };
  const observer = new ResizeObserver(() => onResize());
  observer.observe(screen);

  let connecting = false;
  async function connect() {
    // One attempt at a time: a wake-up during a ticket request must not open a second socket.
    if (closed || connecting || ws) return;
    clearTimeout(retryTimer);
    connecting = true;
    let ticket: string;
    try {
      ticket = (await api.post<{ ticket: string }>(`api/instances/${id}/ticket`)).ticket;
    } catch (e) {
      connecting = false;
      if (e instanceof ApiError && e.status === 404) {
        showBanner('This agent no longer exists.', h('a', { href: '#/', class: 'button secondary small' }, 'Back to agents'));
        return;
      }
      if (e instanceof ApiError && e.status === 401) return; // signed out; the app shows sign-in
      scheduleReconnect(e instanceof Error ? e.message : String(e));
      return;
    }
    connecting = false;
    if (closed) return;
    safeFit();
    const wsUrl = new URL(`ws/instance/${id}`, document.baseURI);
    wsUrl.protocol = wsUrl.protocol === 'https:' ? 'wss:' : 'ws:';
    wsUrl.search = new URLSearchParams({ ticket, cols: String(term.cols), rows: String(term.rows) }).toString();
    lastSize = `${term.cols}x${term.rows}`;
    const socket = new WebSocket(wsUrl);
    socket.binaryType = 'arraybuffer';
    ws = socket;
    socket.onopen = () => {
      attempt = 0;
      lastPong = Date.now();
      hideBanner();
      full.dataset.connected = 'true';
    };
    socket.onmessage = (event) => {
      if (socket !== ws) return;
      lastPong = Date.now();
      if (typeof event.data === 'string') {
        handle(JSON.parse(event.data) as ServerMessage);
        return;
      }
      const bytes = new Uint8Array(event.data as ArrayBuffer);
      if (expectSnapshot) {
        expectSnapshot = false;
        term.reset();
      }
      term.write(bytes);
    };
    socket.onclose = (event) => {
      if (socket !== ws) return;
      ws = null;
      full.dataset.connected = 'false';
      if (closed) return;
      // After an `exit`, however the socket went: a reconnect would only show the end again, or resume an agent
      // just suspended. The banner's own button is the way back.
      if (ended && !restarting) return;
      if (event.code === Close.normal && restarting) {
        restarting = false;
        retryTimer = setTimeout(() => void connect(), 1000);
        return;
      }
      if (event.code === Close.normal) {
        if (!ended) showBanner('The terminal closed: ' + (event.reason || 'the instance ended.'), restartButton());
        return;
      }
      if (event.code === Close.policy && /signed out/i.test(event.reason)) {
        showBanner('You were signed out.');
        void api.get('api/auth/me').catch(() => undefined);
        return;
      }
      if (event.code === Close.policy) {
        scheduleReconnect(event.reason || 'Too many viewers.', 10_000);
        return;
      }
      scheduleReconnect(event.reason || (navigator.onLine ? 'Connection lost.' : 'You are offline.'));
    };
  }

  async function suspendNow() {
    const done = await act(null, () => api.post<Instance>(`api/instances/${id}/suspend`));
    if (done) toast('Suspended: its memory is free. It resumes where it was when you come back.', 'ok');
  }

  function resumeButton() {
    const b = h('button', { type: 'button', class: 'primary small' }, 'Resume');
    b.addEventListener('click', () => {
      ended = false;
      hideBanner();
      void connect();
    });
    return b;
  }

  /** Names what the agent's last resume lost, with a one-tap "send again". */
  async function showInterrupted() {
    let current: Instance;
    try {
      current = await api.get<Instance>(`api/instances/${id}`);
    } catch {
      return;
    }
    const lost = current.interrupted;
    if (!lost || closed) return;
    const what = lost.kind === 'tool' ? `A tool call never finished when the agent's process went: ${lost.text}.`
      : `The agent's process went before it answered: “${lost.text}”.`;
    const again = h('button', { type: 'button', class: 'primary small' }, 'Send again');
    const dismiss = h('button', { type: 'button', class: 'secondary small' }, 'Dismiss');
    again.hidden = !lost.prompt;
    again.addEventListener('click', async () => {
      const sent = await act(again, () => api.post<Instance>(`api/instances/${id}/interrupted/retry`), 'Sent again.');
      if (sent) hideBanner();
    });
    dismiss.addEventListener('click', async () => {
      hideBanner();
      await api.del(`api/instances/${id}/interrupted`).catch(() => undefined);
    });
    showBanner(what, again, dismiss);
  }

  function restartButton() {
    const b = h('button', { type: 'button', class: 'primary small' }, 'Restart');
    b.addEventListener('click', async () => {
      const ok = await act(b, () => api.post<Instance>(`api/instances/${id}/restart`), 'Restarted.');
      if (ok) {
        ended = false;
        hideBanner();
        setStatus(ok.state, ok.status);
        void connect();
      }
    });
    return b;
  }

  function scheduleReconnect(why: string, minDelay = 0) {
    if (closed) return;
    const delay = Math.max(minDelay, Math.min(15_000, 500 * 2 ** attempt));
    attempt++;
    const retry = h('button', { type: 'button', class: 'secondary small', onclick: () => void connect() }, 'Retry now');
    showBanner(`${why} Reconnecting in ${Math.round(delay / 1000) || 1} s…`, retry);
    full.dataset.connected = 'false';
    retryTimer = setTimeout(() => void connect(), delay);
  }

  function handle(m: ServerMessage) {
    switch (m.type) {
      case 'hello':
        setStatus(m.state);
        // The server resumes a suspended agent for whoever opens it; its screen follows.
        if (m.state === 'suspended') showBanner('Resuming the agent where it was…');
        if (m.state === 'exited' || m.state === 'stopped') {
          term.reset();
          expectSnapshot = false;
        }
        break;
      case 'snapshot':
        expectSnapshot = true;
        if (m.reason === 'connect') {
          if (!banner.hidden && /^Resuming/.test(banner.textContent ?? '')) hideBanner();
          void showInterrupted();
        }
        break;
      case 'status':
        setStatus(m.state, m.status, m.reason);
        approvals.statusChanged(m.status);
        break;
      case 'exit': {
        ended = m.reason !== 'restart';
        setStatus(m.state);
        const what = m.reason === 'budget' ? 'The agent was stopped: its spending budget is spent. Settings → Usage says when it starts again.'
          : m.state === 'stopped' ? `The agent was stopped (${m.reason}).` : `The agent exited${m.exit_code !== null ? ` with status ${m.exit_code}` : ''}${m.reason !== 'exit' ? ` (${m.reason.replace('_', ' ')})` : ''}.`;
        if (m.state === 'suspended') {
          ended = true;
          // Said by why: a kill is not something the user chose.
          const why = m.reason === 'crash' ? 'The agent\'s process was killed. It waits suspended and comes back where it was.'
            : m.reason === 'idle' ? 'Suspended after a while idle: its process is gone and its memory free. It comes back where it was.'
              : m.reason === 'memory' ? 'Suspended to make room for another agent. It comes back where it was.'
                : m.reason === 'budget' ? 'Suspended: the spending budget is spent. Settings → Usage says when it can resume.'
                  : 'Suspended: the agent\'s process is gone and its memory free. It comes back where it was.';
          showBanner(why, resumeButton());
        } else if (m.reason === 'restart') {
          // The close follows; reconnect once it has come (see onclose).
          restarting = true;
          showBanner('The agent is restarting…');
        } else {
          showBanner(what, restartButton());
        }
        break;
      }
      case 'error':
        toast(m.message, 'error');
        break;
      case 'size':
      case 'pong':
        break;
    }
  }

  pingTimer = setInterval(() => {
    if (ws?.readyState !== WebSocket.OPEN) return;
    if (Date.now() - lastPong > 25_000) {
      // A silent socket (a sleeping phone, a dead network): drop it and start again.
      const dead = ws;
      ws = null;
      dead.close();
      scheduleReconnect('The connection stopped answering.');
      return;
    }
    send({ type: 'ping', id: Date.now() });
  }, 10_000);

  const wake = () => {
    if (document.visibilityState !== 'visible' || closed) return;
    if (!ws && !ended) {
      attempt = 0;
      void connect();
    } else if (ws?.readyState === WebSocket.OPEN) {
      send({ type: 'ping', id: Date.now() });
    }
  };
  document.addEventListener('visibilitychange', wake);
  window.addEventListener('online', wake);
  // Offline, the terminal's own banner says so (the app-wide one would cover the header).
  const offline = () => {
    if (!ended) showBanner('You are offline. The terminal reconnects when the connection is back.');
  };
  const online = () => {
    if (ws?.readyState === WebSocket.OPEN && !ended) hideBanner();
  };
  window.addEventListener('offline', offline);
  window.addEventListener('online', online);

  // --- touch: swipe and flick to scroll, a long press selects in place -------------------------
  const selection = mountSelection({ term, screen, copy: (text) => void copy(text), paste: () => void pasteClipboard(), more: () => openSelection() });
  const scrolling = mountScrolling({
    term,
    screen,
    scrollRemote: (lines, col, row) => send({ type: 'scroll', lines, col, row }),
    onLongPress: (x, y) => selection.selectAt(x, y),
  });
  toLatest = () => scrolling.toBottom();
  let lastSheet = 0;
  screen.addEventListener('contextmenu', (e) => {
    if (!matchMedia('(pointer: coarse)').matches) return;
    // The phone's own long press: the same as ours (which has usually come first).
    e.preventDefault();
    if (!term.hasSelection()) selection.selectAt(e.clientX, e.clientY);
  });

  function bufferText(): string {
    const buffer = term.buffer.active;
    const lines: string[] = [];
    const start = Math.max(0, buffer.length - 1000);
    for (let y = start; y < buffer.length; y++) lines.push(buffer.getLine(y)?.translateToString(true) ?? '');
    while (lines.length && !lines[lines.length - 1]) lines.pop();
    return lines.join('\n');
  }

  function openSelection() {
    // One sheet per long-press, whichever of the timer and the context menu comes first.
    if (Date.now() - lastSheet < 1000 || document.querySelector('.select-sheet')) return;
    lastSheet = Date.now();
    const text = bufferText();
    const d = h('dialog', { class: 'dialog select-sheet', 'aria-label': 'Select text' });
    const pre = h('pre', { class: 'select-text', tabindex: 0 });
    // Links become tappable here too.
    const re = /(https?:\/\/[^\s"'<>]+)/g;
    let last = 0;
    for (const m of text.matchAll(re)) {
      pre.append(text.slice(last, m.index));
      pre.append(h('a', { href: m[0], target: '_blank', rel: 'noopener noreferrer' }, m[0]));
      last = (m.index ?? 0) + m[0].length;
    }
    pre.append(text.slice(last));
    const copyAll = h('button', { type: 'button', class: 'secondary' }, 'Copy all');
    copyAll.addEventListener('click', () => void copy(text));
    const copySel = h('button', { type: 'button', class: 'primary' }, 'Copy selection');
    // A tap on the button clears the selection before its click: keep what was selected as
    // the finger (or mouse) came down.
    let picked = '';
    selectionChange = () => {
      const s = window.getSelection()?.toString() ?? '';
      if (s) picked = s;
    };
    document.addEventListener('selectionchange', selectionChange);
    copySel.addEventListener('click', () => {
      const s = window.getSelection()?.toString() || picked;
      if (!s) toast('Select some text first: press and hold, then drag.', 'info');
      else void copy(s);
    });
    d.append(h('h2', null, 'Select text'), h('p', { class: 'muted' }, 'Press and hold to select, then copy.'), pre,
      h('div', { class: 'dialog-buttons' }, h('button', { type: 'button', class: 'secondary', onclick: () => d.close() }, 'Close'), copyAll, copySel));
    document.body.append(d);
    d.addEventListener('close', () => {
      document.removeEventListener('selectionchange', selectionChange);
      d.remove();
    });
    d.showModal();
    pre.scrollTop = pre.scrollHeight;
  }
  let selectionChange = () => {};

  async function copy(text: string) {
    try {
      await navigator.clipboard.writeText(text);
      toast('Copied.');
    } catch {
      toast('The browser did not allow copying; select the text and use its Copy.', 'error');
    }
  }

  async function pasteClipboard() {
    try {
      const text = await navigator.clipboard.readText();
      if (!text) {
        toast('The clipboard is empty.', 'info');
        return;
      }
      if (sendPaste(text)) toast('Pasted.', 'ok', 1200);
    } catch {
      toast('The browser did not allow reading the clipboard. Paste into the message box instead.', 'error');
      compose.focus();
    }
  }

  // --- compose box and images -----------------------------------------------------------------
  // A longer message grows the box upwards over the terminal's last rows rather than shrinking
  // the terminal: every resize costs tmux a re-layout and the viewer a fresh snapshot.
  const grow = () => {
    compose.style.height = 'auto';
    compose.style.marginTop = '0';
    const base = compose.offsetHeight;
    const height = Math.min(compose.scrollHeight, 160);
    compose.style.height = `${height}px`;
    compose.style.marginTop = `${Math.min(0, base - height)}px`;
  };
  compose.addEventListener('input', grow);
  composeForm.addEventListener('submit', (e) => {
    e.preventDefault();
    const text = compose.value;
    if (!text.trim()) {
      sendKey('\r');
      return;
    }
    if (asKeys) {
      sendBytes(text.replace(/\r?\n/g, '\r') + '\r');
      compose.value = '';
      grow();
    } else if (sendPaste(text)) {
      sendBytes('\r');
      compose.value = '';
      grow();
    }
  });
  compose.addEventListener('keydown', (e) => {
    // Return sends, as the phone keyboard's label says; Shift-Return (or ↵) makes a new line.
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      composeForm.requestSubmit();
    }
  });
  doneButton.addEventListener('click', () => full.classList.remove('composing'));
  newlineButton.addEventListener('click', () => {
    const at = compose.selectionStart ?? compose.value.length;
    compose.setRangeText('\n', at, compose.selectionEnd ?? at, 'end');
    grow();
    compose.focus();
  });
  const showMode = () => {
    keysToggle.setAttribute('aria-pressed', String(asKeys));
    keysToggle.classList.toggle('on', asKeys);
    compose.placeholder = asKeys ? 'Keys to type, then Return…' : 'Message the agent…';
  };
  keysToggle.addEventListener('click', () => {
    asKeys = !asKeys;
    if (asKeys) localStorage.setItem(keysModeKey, '1');
    else localStorage.removeItem(keysModeKey);
    showMode();
  });
  showMode();
  imageButton.addEventListener('click', () => fileInput.click());
  fileInput.addEventListener('change', () => {
    const file = fileInput.files?.[0];
    fileInput.value = '';
    if (file) void attachImage(file);
  });
  compose.addEventListener('paste', (e) => {
    const item = [...(e.clipboardData?.items ?? [])].find((i) => i.kind === 'file' && i.type.startsWith('image/'));
    const file = item?.getAsFile();
    if (file) {
      e.preventDefault();
      void attachImage(file);
    }
  });

  async function attachImage(file: File) {
    const stamp = new Date().toISOString().replace(/[-:]/g, '').replace(/\..*/, '');
    const ext = file.type.split('/')[1]?.replace('jpeg', 'jpg') ?? 'png';
    const base = (file.name && file.name !== 'image.png' ? file.name : `pasted.${ext}`).replace(/[^\w.-]+/g, '_');
    const named = new File([file], `${stamp}-${base}`, { type: file.type });
    toast('Uploading the image…', 'info', 1500);
    try {
      await mkdirp('.pocketdev/uploads');
      const [saved] = await upload('.pocketdev/uploads', [named]);
      if (!saved) throw new Error('The upload returned nothing.');
      const insert = (compose.value && !/\s$/.test(compose.value) ? ' ' : '') + saved.path + ' ';
      compose.value += insert;
      grow();
      compose.focus();
      toast(`Image saved as ${saved.path}.`);
    } catch (e) {
      showError(e);
    }
  }

  // --- live count of waiting agents, from the event stream ---------------------------------
  const stopWaiting = onInstances((list) => {
    const n = waitingOnes(list).filter((i) => i.id !== id).length;
    waitingCount.hidden = n === 0;
    waitingCount.textContent = String(n);
  });

  void connect();
  if (!matchMedia('(pointer: coarse)').matches) term.focus();

  return () => {
    closed = true;
    keys.dispose();
    scrolling.dispose();
    selection.dispose();
    clearTimeout(retryTimer);
    document.removeEventListener('selectionchange', selectionChange);
    clearInterval(pingTimer);
    stopWaiting();
    observer.disconnect();
    document.body.style.removeProperty('--term-bottom');
    document.removeEventListener('visibilitychange', wake);
    window.removeEventListener('online', wake);
    window.removeEventListener('offline', offline);
    window.removeEventListener('online', online);
    window.removeEventListener('pd-theme', onTheme);
    ws?.close(1000);
    ws = null;
    term.dispose();
  };
}
