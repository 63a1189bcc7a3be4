// pocketdev's service worker: keeps the app shell (index, hashed assets, icons) so the app opens
// at once and can say it is offline, and shows Web Push notifications. It never touches the
// API or the terminal sockets, except to answer a notification's action.
// Renamed per build (scripts/postbuild.mjs) so each deploy's worker drops the previous cache.
const CACHE = 'pocketdev-shell-v1';
const SCOPE = new URL(self.registration.scope);
const SHELL = ['./', './manifest.webmanifest', './icon.svg'];
// Where a tapped notification leads, kept for the page to read at start: iOS opens the start
// URL whatever `openWindow` was given. Not a shell cache, so a new build keeps it.
const PENDING = 'pocketdev-pending-link';

self.addEventListener('install', (event) => {
  event.waitUntil(
    caches.open(CACHE).then((cache) => cache.addAll(SHELL.map((p) => new URL(p, SCOPE).href))).catch(() => undefined),
  );
  self.skipWaiting();
});

self.addEventListener('activate', (event) => {
  event.waitUntil(
    caches.keys()
      .then((keys) => Promise.all(keys.filter((k) => k !== CACHE && k !== PENDING).map((k) => caches.delete(k))))
      .then(() => self.clients.claim()),
  );
});

self.addEventListener('fetch', (event) => {
  const request = event.request;
  if (request.method !== 'GET') return;
  const url = new URL(request.url);
  if (url.origin !== SCOPE.origin || !url.pathname.startsWith(SCOPE.pathname)) return;
  const rel = url.pathname.slice(SCOPE.pathname.length);
  // Live data is never cached: the API, the terminal sockets, metrics, downloads.
  if (rel.startsWith('api/') || rel.startsWith('ws/') || rel === 'api' || rel === 'ws' || rel === 'metrics') return;

  if (rel.startsWith('assets/')) {
    // Hashed names never change: cache first.
    event.respondWith(
      caches.match(request).then((hit) => hit || fetch(request).then((response) => {
        if (response.ok) {
          const copy = response.clone();
          caches.open(CACHE).then((cache) => cache.put(request, copy));
        }
        return response;
      })),
    );
    return;
  }
  // The index and the other shell files: network first, the cached copy when offline.
  const key = request.mode === 'navigate' || rel === '' || rel === 'index.html' ? new URL('./', SCOPE).href : request;
  event.respondWith(
    fetch(request).then((response) => {
      if (response.ok) {
        const copy = response.clone();
        caches.open(CACHE).then((cache) => cache.put(key, copy));
      }
      return response;
    }).catch(() => caches.match(key).then((hit) => hit || new Response('pocketdev is offline', {
      status: 503, headers: { 'content-type': 'text/plain; charset=utf-8' },
    }))),
  );
});

// --- Web Push -------------------------------------------------------------------------------
// The payload (src/push/mod.rs `Payload`): {kind, tag, title, body, url, instance, question, token}.
// `clear` withdraws the notification with its tag; every other push shows one (iOS drops a
// subscription whose pushes show nothing), a generic one when the payload cannot be read.
async function showPush(data) {
  const tag = typeof data.tag === 'string' ? data.tag : 'pocketdev';
  if (data.kind === 'clear') {
    for (const shown of await self.registration.getNotifications({ tag })) shown.close();
    return;
  }
  const options = {
    body: typeof data.body === 'string' ? data.body : '',
    tag,
    data,
    icon: new URL('./icon-192.png', SCOPE).href,
    renotify: data.kind === 'permission',
    requireInteraction: data.kind === 'permission',
  };
  const choices = data.question && Array.isArray(data.question.choices) ? data.question.choices : [];
  if (data.token && choices.length) {
    // Shown where the platform has them (Chromium on Android and desktop); iOS has none.
    options.actions = choices.slice(0, 2).map((c) => ({ action: String(c.id), title: String(c.label) }));
  }
  await self.registration.showNotification(typeof data.title === 'string' && data.title ? data.title : 'pocketdev', options);
}

self.addEventListener('push', (event) => {
  let data = {};
  try {
    data = event.data ? event.data.json() : {};
  } catch {
    data = {};
  }
  event.waitUntil(showPush(data && typeof data === 'object' ? data : {}));
});

/** Opens (or focuses) the app at `hash`, such as `#/t/<id>`, and leaves the link for a page that starts elsewhere. */
async function openLink(hash) {
  const link = typeof hash === 'string' && hash.startsWith('#/') ? hash : '#/';
  const cache = await caches.open(PENDING);
  await cache.put(new URL('./pending-link', SCOPE).href, new Response(JSON.stringify({ url: link, at: Date.now() })));
  const windows = await self.clients.matchAll({ type: 'window', includeUncontrolled: true });
  const client = windows.find((c) => c.url.startsWith(SCOPE.href)) ?? windows[0];
  if (client) {
    await client.focus().catch(() => undefined);
    client.postMessage({ type: 'pocketdev-open' });
    return;
  }
  await self.clients.openWindow(new URL(link, SCOPE).href);
}

/**
 * What a tap on a notification does: an action (Allow / Deny) answers through the token it
 * carries, without opening the app; a tap on the body opens the instance's terminal. Named and
 * on `self` so tests can call it: no API clicks a notification.
 */
async function handleNotificationClick(action, notification) {
  const data = notification.data || {};
  notification.close();
  if (action && data.token && data.instance) {
    const response = await fetch(new URL('api/push/act', SCOPE).href, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      credentials: 'omit',
      body: JSON.stringify({ instance: data.instance, token: data.token, choice: action }),
    }).catch(() => null);
    let message = 'Could not answer from here. Tap to open pocketdev.';
    try {
      const body = await response.json();
      if (response.ok) {
        // Answered: nothing to say. Otherwise what happened instead (see approvals.ts).
        const words = { gone: 'Already answered.', changed: 'The question changed: look again.', still_open: 'Sent, but the question is still open.' }[body && body.outcome];
        if (!words) return;
        message = `${words} Tap to open pocketdev.`;
      } else if (body && body.error && body.error.message) {
        message = `${body.error.message}. Tap to open pocketdev.`;
      }
    } catch {
      if (response && response.ok) return;
      // the generic words
    }
    await self.registration.showNotification(notification.title || 'pocketdev', {
      body: message,
      tag: notification.tag,
      data: { ...data, token: null },
      icon: new URL('./icon-192.png', SCOPE).href,
    });
    return;
  }
  await openLink(data.url);
}
self.handleNotificationClick = handleNotificationClick;

self.addEventListener('notificationclick', (event) => {
  const job = handleNotificationClick(event.action, event.notification);
  try {
    event.waitUntil(job);
  } catch {
    // A synthetic event (tests) cannot extend its lifetime; the work runs all the same.
  }
});
