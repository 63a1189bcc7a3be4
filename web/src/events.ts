// The tab's one live event stream (GET api/events, Server-Sent Events; docs/events.md): the
// user's instances as a snapshot and then as they change, usage figures, admins' alerts and
// "signed out". Views subscribe here instead of polling. Every connection starts with a fresh
// snapshot, so after sleep or a lost network the stream is simply opened again.
import { url, refreshSession, signedOut, type Instance } from './api';

/** Figures of a live instance after each of the monitor's samples. */
export interface Usage {
  id: string;
  memory_bytes: number | null;
  cpu_percent: number | null;
  last_activity_at: number | null;
  preview: string | null;
}
/** An alert raised or cleared on the host (admins only), as the webhook receives it. */
export interface Alert {
  event: 'raised' | 'cleared';
  kind: string;
  value: number;
  threshold: number;
  at: string;
}

type Listener = (instances: Instance[]) => void;

let source: EventSource | null = null;
/** The user's instances, newest first; null until the first snapshot. */
let current: Instance[] | null = null;
const listeners = new Set<Listener>();
const alertListeners = new Set<(alert: Alert) => void>();
/** Whether the tab is signed in and wants the stream. */
let running = false;
let retryTimer: ReturnType<typeof setTimeout> | undefined;
let failures = 0;
let hiddenAt = 0;
/** A tab hidden longer than this may have slept: its stream is opened afresh on return. */
const SLEPT_MS = 5000;

/** Opens the stream if it is not open (after sign-in; idempotent). */
export function startEvents(): void {
  running = true;
  if (source) return;
  clearTimeout(retryTimer);
  const es = new EventSource(url('api/events'), { withCredentials: true });
  source = es;
  const on = (name: string, handle: (data: unknown) => void) => es.addEventListener(name, (event) => {
    if (es !== source) return;
    handle(JSON.parse((event as MessageEvent<string>).data));
  });
  es.onopen = () => {
    failures = 0;
    window.dispatchEvent(new Event('pd-reachable'));
  };
  on('snapshot', (list) => publish(list as Instance[]));
  on('created', (instance) => {
    const i = instance as Instance;
    publish([i, ...(current ?? []).filter((x) => x.id !== i.id)]);
  });
  on('changed', (instance) => {
    const i = instance as Instance;
    const list = current ?? [];
    publish(list.some((x) => x.id === i.id) ? list.map((x) => (x.id === i.id ? i : x)) : [i, ...list]);
  });
  on('deleted', (gone) => publish((current ?? []).filter((x) => x.id !== (gone as { id: string }).id)));
  on('usage', (figures) => {
    const byId = new Map((figures as Usage[]).map((u) => [u.id, u]));
    publish((current ?? []).map((x) => {
      const u = byId.get(x.id);
      return u ? { ...x, memory_bytes: u.memory_bytes, cpu_percent: u.cpu_percent, preview: u.preview } : x;
    }));
  });
  on('alert', (alert) => alertListeners.forEach((l) => l(alert as Alert)));
  on('signed_out', () => {
    stopEvents();
    signedOut('Your session has ended. Sign in again.');
  });
  es.onerror = () => {
    if (es !== source) return;
    // Offline, retries only fail: the `online` event opens it again.
    if (!navigator.onLine) {
      es.close();
      source = null;
      return;
    }
    // A network error leaves it reconnecting by itself; a refusal (401, 409) closes it.
    if (es.readyState !== EventSource.CLOSED) return;
    source = null;
    void recover();
  };
}

/** After a refusal: refresh an expired session and try again, or hand over to sign-in. */
async function recover(): Promise<void> {
  failures++;
  if (!(await refreshSession())) {
    signedOut('Your session has ended. Sign in again.');
    return;
  }
  // Too many streams (other tabs) or a server restarting: back off.
  const wait = Math.min(60_000, 1000 * 2 ** Math.min(failures - 1, 6));
  if (running) retryTimer = setTimeout(startEvents, failures > 1 ? wait : 0);
}

/** Closes the stream (sign-out). */
export function stopEvents(): void {
  running = false;
  clearTimeout(retryTimer);
  source?.close();
  source = null;
  current = null;
  failures = 0;
}

/** Opens the stream again, for a fresh snapshot. */
function reopen(): void {
  if (!running) return;
  source?.close();
  source = null;
  if (navigator.onLine) startEvents();
}

function publish(list: Instance[]): void {
  current = list;
  for (const listener of listeners) listener(list);
}

/** Calls `listener` with the instances now (if known) and on every change; returns the unsubscribe. */
export function onInstances(listener: Listener): () => void {
  listeners.add(listener);
  if (current) listener(current);
  return () => listeners.delete(listener);
}

export function onAlert(listener: (alert: Alert) => void): () => void {
  alertListeners.add(listener);
  return () => alertListeners.delete(listener);
}

/** The instances as the stream last said, or null before its first snapshot. */
export function instancesNow(): Instance[] | null {
  return current;
}

// A phone's sleep or a network change can leave a dead connection that looks open.
document.addEventListener('visibilitychange', () => {
  if (document.visibilityState === 'hidden') {
    hiddenAt = Date.now();
    return;
  }
  if (Date.now() - hiddenAt > SLEPT_MS || source?.readyState !== EventSource.OPEN) reopen();
});
window.addEventListener('online', reopen);
window.addEventListener('pageshow', (event) => {
  if (event.persisted) reopen();
});
