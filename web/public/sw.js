// pocketdev's service worker: keeps the app shell (index, hashed assets, icons) so the app opens
// at once and can say it is offline. It never touches the API or the terminal sockets.
// Renamed per build (scripts/postbuild.mjs) so each deploy's worker drops the previous cache.
const CACHE = 'pocketdev-shell-v1';
const SCOPE = new URL(self.registration.scope);
const SHELL = ['./', './manifest.webmanifest', './icon.svg'];

self.addEventListener('install', (event) => {
  event.waitUntil(
    caches.open(CACHE).then((cache) => cache.addAll(SHELL.map((p) => new URL(p, SCOPE).href))).catch(() => undefined),
  );
  self.skipWaiting();
});

self.addEventListener('activate', (event) => {
  event.waitUntil(
    caches.keys()
      .then((keys) => Promise.all(keys.filter((k) => k !== CACHE).map((k) => caches.delete(k))))
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
