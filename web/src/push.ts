// Web Push in the page: the Settings panel (enable on this device, the devices with revoke,
// waiting delay, quiet hours, the iOS note), the terminal menu's mute, and the link a tapped
// notification left for the page (iOS opens the start URL, not the one asked for).
import { api } from './api';
import { h, clear, act, when, toast, confirmDialog } from './ui';

export interface PushInfo {
  enabled: boolean;
  public_key: string;
}
export interface PushDevice {
  id: number;
  device: string;
  endpoint: string;
  created_at: string;
  last_success_at: string | null;
}
export interface PushPreferences {
  waiting_delay_secs: number;
  quiet_hours: { start: string; end: string; utc_offset_minutes: number } | null;
}

const PENDING = 'pocketdev-pending-link';
/** A link older than this was not the reason the app opened. */
const PENDING_FRESH_MS = 10 * 60 * 1000;

/** Goes where the last tapped notification leads, once. */
export async function followPendingLink(): Promise<void> {
  if (!('caches' in window)) return;
  try {
    const cache = await caches.open(PENDING);
    const key = new URL('./pending-link', document.baseURI).href;
    const hit = await cache.match(key);
    if (!hit) return;
    await cache.delete(key);
    const { url, at } = (await hit.json()) as { url?: string; at?: number };
    if (typeof url === 'string' && url.startsWith('#/') && typeof at === 'number' && Date.now() - at < PENDING_FRESH_MS && location.hash !== url) {
      location.hash = url;
    }
  } catch {
    // No link, or storage unavailable: stay where we are.
  }
}

/** Follows notification taps: at start, and whenever the service worker says one happened. */
export function watchNotificationLinks(): void {
  void followPendingLink();
  navigator.serviceWorker?.addEventListener('message', (event: MessageEvent) => {
    if ((event.data as { type?: string } | null)?.type === 'pocketdev-open') void followPendingLink();
  });
}

function isIos(): boolean {
  return /iPhone|iPad|iPod/.test(navigator.userAgent) || (navigator.platform === 'MacIntel' && navigator.maxTouchPoints > 1);
}

function standalone(): boolean {
  return window.matchMedia('(display-mode: standalone)').matches || (navigator as Navigator & { standalone?: boolean }).standalone === true;
}

function base64url(text: string): Uint8Array<ArrayBuffer> {
  const b64 = text.replace(/-/g, '+').replace(/_/g, '/') + '='.repeat((4 - (text.length % 4)) % 4);
  const raw = atob(b64);
  const out = new Uint8Array(new ArrayBuffer(raw.length));
  for (let i = 0; i < raw.length; i++) out[i] = raw.charCodeAt(i);
  return out;
}

async function currentSubscription(): Promise<PushSubscription | null> {
  if (!('serviceWorker' in navigator) || !('PushManager' in window)) return null;
  const registration = await navigator.serviceWorker.getRegistration();
  return (await registration?.pushManager.getSubscription()) ?? null;
}

function minutesToHhmm(total: number): string {
  return `${String(Math.floor(total / 60)).padStart(2, '0')}:${String(total % 60).padStart(2, '0')}`;
}

/** The Settings section "Notifications". */
export function notificationsPanel(): { el: HTMLElement; load: () => Promise<void> } {
  const status = h('p', { class: 'muted', id: 'push-status' });
  const enable = h('button', { type: 'button', class: 'primary', id: 'push-enable' }, 'Enable on this device');
  const devices = h('ul', { class: 'secret-list', 'aria-label': 'Devices that get notifications' }, h('li', { class: 'muted' }, 'Loading…'));
  const delay = h('input', { id: 'push-delay', type: 'number', min: 0, max: 1440, step: 1, value: '1', inputmode: 'numeric' });
  const quiet = h('input', { id: 'push-quiet', type: 'checkbox' });
  const quietStart = h('input', { id: 'push-quiet-start', type: 'time', value: '22:00' });
  const quietEnd = h('input', { id: 'push-quiet-end', type: 'time', value: '07:00' });
  const save = h('button', { type: 'submit', class: 'primary' }, 'Save notification settings');
  const form = h('form', { class: 'stack' },
    h('label', { class: 'field', for: 'push-delay' }, h('span', null, 'Tell me an agent is waiting for input after (minutes)'), delay),
    h('label', { class: 'check' }, quiet, ' Quiet hours: no agent notifications'),
    h('div', { class: 'push-quiet-times' },
      h('label', { class: 'field', for: 'push-quiet-start' }, h('span', null, 'From'), quietStart),
      h('label', { class: 'field', for: 'push-quiet-end' }, h('span', null, 'To'), quietEnd)),
    save);
  const ios = isIos()
    ? h('p', { class: 'muted', id: 'push-ios' }, standalone()
      ? 'On iPhone and iPad notifications have no Allow / Deny buttons: tap one to open the agent and answer there.'
      : 'On iPhone and iPad, notifications need pocketdev on the Home Screen: tap Share, then "Add to Home Screen", and enable them from the app there. They have no Allow / Deny buttons: tap one to answer in the app.')
    : null;
  const el = h('section', { class: 'panel', 'aria-labelledby': 'push-h' },
    h('h2', { id: 'push-h' }, 'Notifications'),
    h('p', { class: 'muted' }, 'When an agent asks for permission, waits for you, or ends, and when someone signs in to your account.'),
    status, enable, ios, h('h3', null, 'Devices'), devices, form);

  let info: PushInfo | null = null;

  const refreshDevices = async () => {
    const list = await act(null, () => api.get<PushDevice[]>('api/push/subscriptions'));
    if (!list) return;
    const mine = (await currentSubscription().catch(() => null))?.endpoint;
    clear(devices, list.length ? list.map((d) => {
      const revoke = h('button', { type: 'button', class: 'danger small', 'aria-label': `Revoke ${d.device}` }, 'Revoke');
      revoke.addEventListener('click', async () => {
        if (!(await confirmDialog(`Stop notifications to ${d.device}?`, 'It gets no more notifications until enabled again there.', 'Revoke'))) return;
        const done = await act(revoke, () => api.del(`api/push/subscriptions/${d.id}`).then(() => true), `${d.device} gets no more notifications.`);
        if (done && d.endpoint === mine) await (await currentSubscription())?.unsubscribe().catch(() => false);
        if (done) void refreshDevices();
      });
      return h('li', { class: 'secret-row push-device' },
        h('span', null, d.device, d.endpoint === mine ? h('span', { class: 'muted' }, ' (this device)') : null),
        h('span', { class: 'muted small-print' }, d.last_success_at ? `last notified ${when(d.last_success_at)}` : `added ${when(d.created_at)}`),
        revoke);
    }) : h('li', { class: 'muted' }, 'No device gets notifications yet.'));
  };

  enable.addEventListener('click', async () => {
    if (!info?.enabled) return;
    const key = info.public_key;
    await act(enable, async () => {
      const permission = await Notification.requestPermission();
      if (permission !== 'granted') throw new Error('notifications are blocked for this site in the browser settings');
      const registration = await navigator.serviceWorker.ready;
      const subscription = (await registration.pushManager.getSubscription())
        ?? (await registration.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: base64url(key) }));
      await api.post('api/push/subscriptions', { subscription: subscription.toJSON() });
      return true;
    }, 'This device gets notifications now.');
    void refreshDevices();
  });

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const body: PushPreferences = {
      waiting_delay_secs: Math.max(0, Math.min(1440, Math.round(Number(delay.value) || 0))) * 60,
      quiet_hours: quiet.checked ? { start: quietStart.value, end: quietEnd.value, utc_offset_minutes: -new Date().getTimezoneOffset() } : null,
    };
    await act(save, () => api.put('api/push/preferences', body), 'Notification settings saved.');
  });

  const load = async () => {
    info = await act(null, () => api.get<PushInfo>('api/push/config')) ?? null;
    const supported = 'serviceWorker' in navigator && 'PushManager' in window && window.isSecureContext;
    if (!info?.enabled) {
      status.textContent = 'This server does not send notifications: an admin must set push.subject in its configuration.';
      enable.hidden = true;
    } else if (!supported) {
      status.textContent = isIos() && !standalone() ? 'Add pocketdev to the Home Screen to get notifications here.' : 'This browser cannot receive notifications here (it needs HTTPS and Web Push).';
      enable.hidden = true;
    } else {
      status.textContent = Notification.permission === 'denied' ? 'Notifications are blocked for this site in the browser settings.' : '';
    }
    const prefs = await act(null, () => api.get<PushPreferences>('api/push/preferences'));
    if (prefs) {
      delay.value = String(Math.round(prefs.waiting_delay_secs / 60));
      quiet.checked = !!prefs.quiet_hours;
      if (prefs.quiet_hours) {
        // Shown on this device's clock, whatever offset they were set with.
        const shift = -new Date().getTimezoneOffset() - prefs.quiet_hours.utc_offset_minutes;
        const at = (hhmm: string) => {
          const [hh, mm] = hhmm.split(':').map(Number);
          return minutesToHhmm((((hh ?? 0) * 60 + (mm ?? 0) + shift) % 1440 + 1440) % 1440);
        };
        quietStart.value = at(prefs.quiet_hours.start);
        quietEnd.value = at(prefs.quiet_hours.end);
      }
    }
    await refreshDevices();
  };
  return { el, load };
}

/** The terminal menu's item muting this instance's notifications. */
export function muteMenuItem(instanceId: string, closeMenu: () => void): HTMLButtonElement {
  let muted: boolean | null = null;
  const item = h('button', { type: 'button', role: 'menuitem', class: 'push-mute' }, 'Mute notifications');
  const show = () => {
    item.textContent = muted ? 'Unmute notifications' : 'Mute notifications';
  };
  void api.get<string[]>('api/push/mutes').then((ids) => {
    muted = ids.includes(instanceId);
    show();
  }).catch(() => undefined);
  item.addEventListener('click', async () => {
    closeMenu();
    const next = !muted;
    const path = `api/push/mutes/${encodeURIComponent(instanceId)}`;
    const done = await act(null, () => (next ? api.put(path) : api.del(path)).then(() => true));
    if (done) {
      muted = next;
      show();
      toast(next ? 'No notifications about this agent.' : 'Notifications about this agent are on.', 'ok', 2000);
    }
  });
  return item;
}
