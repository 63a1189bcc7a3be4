// The app: hash routing (works under any base path), the signed-in session, the shell around
// each screen, theme, offline state, the quick switcher and the service worker.
import './style.css';
import { api, ApiError, setSignedOutHandler, type Instance, type User } from './api';
import { h, clear, toast, showError, statusBadge, icon } from './ui';
import { loginView } from './views/login';
import { dashboardView } from './views/dashboard';
import { settingsView } from './views/settings';
import { watchNotificationLinks } from './push';
import { instancesNow, startEvents, stopEvents } from './events';

export interface Ctx {
  user: User;
  root: HTMLElement;
  params: string[];
  query: URLSearchParams;
}
export type Cleanup = (() => void) | void;
type View = (ctx: Ctx) => Cleanup | Promise<Cleanup>;

export const session: { user: User | null; notice: string | null } = { user: null, notice: null };

/**
 * A view with something to lose (an editor with unsaved changes) sets this while it has; any in-app navigation asks it
 * first, and stays if it answers false.
 */
let leaveGuard: (() => boolean | Promise<boolean>) | null = null;
export function guardLeaving(guard: (() => boolean | Promise<boolean>) | null): void {
  leaveGuard = guard;
}
let shownHash = '';
let restoringHash = false;

// --- theme ---------------------------------------------------------------------------------
export type Theme = 'light' | 'dark' | 'system';
export function getTheme(): Theme {
  const t = localStorage.getItem('pd.theme');
  return t === 'light' || t === 'dark' ? t : 'system';
}
export function effectiveTheme(): 'light' | 'dark' {
  const t = getTheme();
  if (t !== 'system') return t;
  return matchMedia('(prefers-color-scheme: dark)').matches ? 'dark' : 'light';
}
export function applyTheme(theme?: Theme): void {
  if (theme) localStorage.setItem('pd.theme', theme);
  const effective = effectiveTheme();
  document.documentElement.dataset.theme = effective;
  document.querySelector('meta[name="theme-color"]')?.setAttribute('content', effective === 'dark' ? '#0f172a' : '#f8fafc');
  window.dispatchEvent(new CustomEvent('pd-theme', { detail: effective }));
}
applyTheme();
matchMedia('(prefers-color-scheme: dark)').addEventListener('change', () => applyTheme());

// --- viewport: the visual viewport's height so bars sit above the on-screen keyboard ---------
function trackViewport(): void {
  const vv = window.visualViewport;
  const set = () => {
    const height = vv ? vv.height : window.innerHeight;
    document.documentElement.style.setProperty('--vvh', `${Math.round(height)}px`);
    document.documentElement.style.setProperty('--vv-top', `${Math.round(vv ? vv.offsetTop : 0)}px`);
  };
  set();
  vv?.addEventListener('resize', set);
  vv?.addEventListener('scroll', set);
  window.addEventListener('resize', set);
}
trackViewport();

// --- on-screen keyboard: while it is up, the tab bar and the top bar step aside --------------
/**
 * Sets `kb-up` on <html> while a touch device's on-screen keyboard is up, so the stylesheet can
 * hide chrome that is not needed for typing (the tab bar would otherwise sit above the keyboard
 * and take a third of what is left). Two signs, both needed: an editable element has the focus
 * (focus alone is wrong once the keyboard is dismissed with the field still focused), and the
 * visual viewport is well below the tallest it has been at this width (a shrink alone may be a
 * rotated or split window). The height test works whether the keyboard resizes the layout
 * viewport (Android, `interactive-widget=resizes-content`) or only the visual one (iOS), and
 * Chromium's mobile emulation shows the same by shrinking the viewport.
 */
function trackKeyboard(): void {
  const touch = matchMedia('(pointer: coarse)');
  const tallest = new Map<number, number>();
  const editable = (el: Element | null): boolean =>
    el instanceof HTMLTextAreaElement || el instanceof HTMLSelectElement
    || (el instanceof HTMLInputElement && !['checkbox', 'radio', 'button', 'submit', 'reset', 'file', 'range', 'color'].includes(el.type))
    || (el instanceof HTMLElement && el.isContentEditable);
  const update = () => {
    const vv = window.visualViewport;
    const width = Math.round(vv ? vv.width * vv.scale : window.innerWidth);
    const height = vv ? vv.height * vv.scale : window.innerHeight;
    const most = Math.max(tallest.get(width) ?? 0, height);
    tallest.set(width, most);
    const up = touch.matches && editable(document.activeElement) && height < most - 120;
    document.documentElement.classList.toggle('kb-up', up);
  };
  window.visualViewport?.addEventListener('resize', update);
  window.addEventListener('resize', update);
  // Focus moves before the keyboard opens or after it closes; the resize that follows decides.
  document.addEventListener('focusin', update);
  document.addEventListener('focusout', () => setTimeout(update, 0));
  update();
}
trackKeyboard();

// --- offline banner --------------------------------------------------------------------------
function offlineBanner(): void {
  const banner = h('div', { class: 'offline', role: 'status', hidden: true });
  document.body.prepend(banner);
  // Offline as the browser says, or the server unreachable on the last call.
  let unreachable = false;
  const update = () => {
    banner.textContent = navigator.onLine
      ? 'The server cannot be reached. pocketdev keeps trying.'
      : 'You are offline. pocketdev will reconnect when the network is back.';
    banner.hidden = navigator.onLine && !unreachable;
  };
  window.addEventListener('online', update);
  window.addEventListener('offline', update);
  window.addEventListener('pd-unreachable', () => {
    unreachable = true;
    update();
  });
  window.addEventListener('pd-reachable', () => {
    unreachable = false;
    update();
  });
  update();
}
offlineBanner();

// --- instances shared by the switcher and the "next waiting" buttons --------------------------
export async function listInstances(): Promise<Instance[]> {
  // The live event stream's list when it has one; asked for only before its first snapshot.
  return instancesNow() ?? api.get<Instance[]>('api/instances');
}
export function waitingOnes(list: Instance[]): Instance[] {
  return list.filter((i) => i.state === 'running' && (i.status === 'waiting' || i.status === 'needs_permission'));
}
/** Opens the next instance waiting for its user, after `current` in the list's order. */
export async function jumpToNextWaiting(current?: string): Promise<void> {
  try {
    const list = await listInstances();
    const waiting = waitingOnes(list).filter((i) => i.id !== current);
    if (!waiting.length) {
      toast('No other agent is waiting for you.', 'info');
      return;
    }
    const index = current ? list.findIndex((i) => i.id === current) : -1;
    const next = waiting.find((i) => list.indexOf(i) > index) ?? waiting[0]!;
    location.hash = `#/t/${next.id}`;
  } catch (e) {
    showError(e);
  }
}

export async function openSwitcher(): Promise<void> {
  const d = h('dialog', { class: 'dialog switcher', 'aria-label': 'Switch to an agent' });
  const filter = h('input', { type: 'search', placeholder: 'Find an agent…', 'aria-label': 'Find an agent', autocomplete: 'off' });
  const list = h('ul', { class: 'switch-list' });
  const close = h('button', { type: 'button', class: 'secondary', onclick: () => d.close() }, 'Close');
  d.append(h('h2', null, 'Switch agent'), filter, list, h('div', { class: 'dialog-buttons' }, close));
  document.body.append(d);
  d.addEventListener('close', () => d.remove());
  d.showModal();
  let items: Instance[] = [];
  const render = () => {
    const needle = filter.value.toLowerCase();
    const shown = items.filter((i) => !needle || i.name.toLowerCase().includes(needle) || i.profile.toLowerCase().includes(needle));
    clear(list, shown.length ? shown.map((i) => h('li', null,
      h('a', { href: `#/t/${i.id}`, onclick: () => d.close() }, h('span', { class: 'switch-name' }, i.name), ' ', statusBadge(i.state, i.status)))) : h('li', { class: 'muted' }, items.length ? 'No match.' : 'No agents yet.'));
  };
  filter.addEventListener('input', render);
  const loading = listInstances().then((list) => {
    items = list;
  }, showError);
  filter.addEventListener('keydown', async (e) => {
    if (e.key !== 'Enter') return;
    e.preventDefault();
    // Enter typed before the list arrived still opens the first match.
    await loading;
    render();
    list.querySelector<HTMLAnchorElement>('a')?.click();
  });
  await loading;
  render();
}

window.addEventListener('keydown', (e) => {
  if ((e.ctrlKey || e.metaKey) && e.key.toLowerCase() === 'k' && session.user && !location.hash.startsWith('#/t/')) {
    e.preventDefault();
    void openSwitcher();
  }
});

// --- routing -----------------------------------------------------------------------------------
const app = document.getElementById('app')!;
let cleanup: Cleanup = undefined;
let generation = 0;

function shell(user: User, active: string): HTMLElement {
  const nav = [
    ['agents', '#/', 'Agents'],
    ['files', '#/files', 'Files'],
    ['settings', '#/settings', 'Settings'],
    ...(user.role === 'admin' ? [['admin', '#/admin', 'Admin']] : []),
  ];
  const main = h('main', { id: 'main', class: 'view', tabindex: -1 });
  const header = h('header', { class: 'topbar' },
    h('a', { href: '#/', class: 'brand', 'aria-label': 'pocketdev, agents' }, h('img', { src: './icon.svg', alt: '', width: 24, height: 24 }), h('span', null, 'pocketdev')),
    h('div', { class: 'topbar-actions' },
      h('button', { type: 'button', class: 'icon-button', 'aria-label': 'Next agent waiting for you', title: 'Next waiting agent', onclick: () => void jumpToNextWaiting() }, icon('next')),
      h('button', { type: 'button', class: 'icon-button', 'aria-label': 'Switch agent', title: 'Switch agent (Ctrl-K)', onclick: () => void openSwitcher() }, icon('switch')),
      h('button', { type: 'button', class: 'secondary small', onclick: signOut }, 'Sign out')),
  );
  const tabs = h('nav', { class: 'tabs', 'aria-label': 'Main' },
    nav.map(([key, href, label]) => h('a', { href, class: key === active ? 'tab active' : 'tab', 'aria-current': key === active ? 'page' : undefined }, label)));
  const wrapper = h('div', { class: 'shell' }, h('a', { href: '#main', class: 'skip', onclick: (e: Event) => { e.preventDefault(); main.focus(); } }, 'Skip to content'), header, tabs, main);
  return wrapper;
}

async function signOut(): Promise<void> {
  // Closed first: the stream's own "signed out" must not race this sign-out's message.
  stopEvents();
  try {
    await api.post('api/auth/logout');
  } catch {
    // Signed out already, or offline: the cookies go either way on the next sign-in.
  }
  session.user = null;
  session.notice = 'You signed out.';
  location.hash = '#/login';
}

setSignedOutHandler((why) => {
  stopEvents();
  if (!session.user) return;
  session.user = null;
  session.notice = why;
  if (location.hash !== '#/login') location.hash = '#/login';
  else void route();
});

async function loadUser(): Promise<User | null> {
  try {
    return await api.get<User>('api/auth/me');
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) return null;
    throw e;
  }
}

async function route(): Promise<void> {
  if (restoringHash) {
    restoringHash = false;
    return;
  }
  if (leaveGuard && location.hash !== shownHash) {
    const target = location.hash;
    // The address bar shows where we still are while the view is asked.
    restoringHash = true;
    location.replace(shownHash || '#/');
    if (!(await leaveGuard())) return;
    leaveGuard = null;
    location.hash = target;
    return;
  }
  shownHash = location.hash;
  const my = ++generation;
  const raw = location.hash.replace(/^#\/?/, '');
  const [pathPart, queryPart] = raw.split('?');
  const parts = (pathPart ?? '').split('/').map(decodeURIComponent);
  const query = new URLSearchParams(queryPart ?? '');
  const name = parts[0] ?? '';

  if (typeof cleanup === 'function') cleanup();
  cleanup = undefined;
  leaveGuard = null;
  // Dialogs a view opened (the switcher, the selection sheet) go with it.
  for (const open of document.querySelectorAll('dialog[open]')) (open as HTMLDialogElement).close();

  if (!session.user && name !== 'login' && name !== 'register') {
    try {
      session.user = await loadUser();
    } catch (e) {
      clear(app, h('div', { class: 'center-card' }, h('h1', null, 'pocketdev'), h('p', { role: 'alert' }, e instanceof Error ? e.message : String(e)),
        h('button', { type: 'button', class: 'primary', onclick: () => void route() }, 'Try again')));
      return;
    }
    if (my !== generation) return;
    if (!session.user) {
      location.replace('#/login');
      return;
    }
  }

  if (name === 'login' || name === 'register') {
    if (session.user) {
      location.replace('#/');
      return;
    }
    const done = await loginView(app, name === 'register' ? 'register' : 'login', query, (user) => {
      session.user = user;
      location.hash = query.get('next') ?? '#/';
    });
    adopt(my, done);
    return;
  }

  const user = session.user!;
  startEvents();
  let view: View;
  let active = '';
  let fullScreen = false;
  // A page of its own, without the tab bar: its header leads back to the agent.
  let bare = false;
  switch (name) {
    case '':
      view = dashboardView;
      active = 'agents';
      break;
    case 't':
      view = (await import('./views/terminal')).terminalView;
      fullScreen = true;
      break;
    case 'changes':
    case 'repo':
      view = name === 'changes' ? (await import('./views/changes')).changesView : (await import('./views/changes')).repoView;
      bare = true;
      break;
    case 'files':
    case 'edit':
      view = name === 'files' ? (await import('./views/files')).filesView : (await import('./views/files')).editView;
      active = 'files';
      break;
    case 'settings':
      view = settingsView;
      active = 'settings';
      break;
    case 'admin':
      if (user.role !== 'admin') {
        location.replace('#/');
        return;
      }
      view = (await import('./views/admin')).adminView;
      active = 'admin';
      break;
    default:
      location.replace('#/');
      return;
  }
  if (my !== generation) return;
  let root: HTMLElement;
  if (fullScreen) {
    root = h('div', { class: 'full' });
    clear(app, root);
  } else if (bare) {
    root = h('main', { id: 'main', class: 'bare', tabindex: -1 });
    clear(app, root);
  } else {
    const s = shell(user, active);
    clear(app, s);
    root = s.querySelector('main')!;
  }
  document.body.classList.toggle('is-full', fullScreen);
  try {
    adopt(my, await view({ user, root, params: parts.slice(1), query }));
  } catch (e) {
    showError(e);
  }
}

/** A view that finished loading after the user went elsewhere is cleaned up at once, not left running. */
function adopt(my: number, done: Cleanup): void {
  if (my !== generation) {
    if (typeof done === 'function') done();
    return;
  }
  cleanup = done;
}

window.addEventListener('hashchange', () => void route());
void route();

// --- service worker: the app shell offline, never the API -----------------------------------
if ('serviceWorker' in navigator && window.isSecureContext && !import.meta.env.DEV) {
  window.addEventListener('load', () => {
    navigator.serviceWorker.register('./sw.js', { scope: './' }).catch(() => undefined);
  });
  // A tapped notification's link, also when the app started at its start URL (iOS).
  watchNotificationLinks();
}
