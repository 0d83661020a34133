// The demo page's service worker: it keeps a copy of the page and its
// files so that the page opens (and reloads) while the server is away.
// Network first, so a new version of the page is used as soon as the
// server is reachable; the copy is used only when it is not.
const CACHE = "synkfs-demo";
const FILES = ["/", "/demo.js", "/demo.css", "/synk.js"];

self.addEventListener("install", (ev) => {
  ev.waitUntil(caches.open(CACHE).then((c) => c.addAll(FILES)).then(() => self.skipWaiting()));
});

self.addEventListener("activate", (ev) => ev.waitUntil(self.clients.claim()));

self.addEventListener("fetch", (ev) => {
  const url = new URL(ev.request.url);
  if (ev.request.method !== "GET" || url.origin !== self.location.origin || !FILES.includes(url.pathname)) return;
  ev.respondWith(
    fetch(ev.request)
      .then((res) => {
        if (res.ok) {
          const copy = res.clone();
          ev.waitUntil(caches.open(CACHE).then((c) => c.put(url.pathname, copy)));
        }
        return res;
      })
      .catch(async () => (await caches.match(url.pathname)) || Response.error()),
  );
});
