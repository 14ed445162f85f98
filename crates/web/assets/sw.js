// The page's service worker: every file of the export is cached on the first visit and
// answered from the cache afterwards, so the page works offline. The cache's name changes
// with the files' contents (`retrain export web` writes it), so a new export replaces it.
// What it serves gets the headers of cross-origin isolation, which ONNX Runtime Web's
// threads need, also where the web server cannot set them (GitHub Pages).
"use strict";
const VERSION = "{{CACHE}}";
const FILES = ["{{FILES}}"];
const PREFIX = "retrain:" + self.registration.scope + ":";
const CACHE = PREFIX + VERSION;

self.addEventListener("install", (e) => {
  e.waitUntil(caches.open(CACHE).then((c) => c.addAll(FILES)).then(() => self.skipWaiting()));
});

self.addEventListener("activate", (e) => {
  e.waitUntil(
    caches.keys()
      .then((keys) => Promise.all(keys.filter((k) => k.startsWith(PREFIX) && k !== CACHE).map((k) => caches.delete(k))))
      .then(() => self.clients.claim()),
  );
});

function isolated(response) {
  if (response.type === "opaque" || response.headers.get("Cross-Origin-Embedder-Policy")) return response;
  const headers = new Headers(response.headers);
  headers.set("Cross-Origin-Opener-Policy", "same-origin");
  headers.set("Cross-Origin-Embedder-Policy", "require-corp");
  return new Response(response.body, { status: response.status, statusText: response.statusText, headers });
}

self.addEventListener("fetch", (e) => {
  const req = e.request;
  if (req.method !== "GET" || new URL(req.url).origin !== self.location.origin) return;
  e.respondWith(
    caches.open(CACHE)
      .then((c) => c.match(req, { ignoreSearch: true }))
      .then((hit) => hit || fetch(req))
      // Every response: a worker's script in an isolated page needs the headers as well.
      .then(isolated),
  );
});
