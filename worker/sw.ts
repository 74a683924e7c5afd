/**
 * The join page's service worker: keeps the page itself (HTML, scripts, onnxruntime's wasm) so a
 * tab cut off from the relay still starts, with apps from the Cache API (web/cache.ts). Network
 * first, so a relay that is there always serves the current page; the cache only when it is not.
 * The API, node sockets and signalling are never cached.
 */
const sw = self as unknown as ServiceWorkerGlobalScope;

const shell = 'brume-shell-v1';

sw.addEventListener('install', () => {
  void sw.skipWaiting();
});
sw.addEventListener('activate', (event) => {
  event.waitUntil(sw.clients.claim());
});

sw.addEventListener('fetch', (event) => {
  const req = event.request;
  const url = new URL(req.url);
  if (req.method !== 'GET' || url.origin !== sw.location.origin) return;
  if (/^\/(api|ws|peerjs|brume-cache)(\/|$)/.test(url.pathname)) return;
  event.respondWith(networkFirst(req));
});

async function networkFirst(req: Request): Promise<Response> {
  let res: Response;
  try {
    res = await fetch(req);
  } catch (e) {
    const cache = await caches.open(shell);
    // The page's own URL with a query (?role=fog) is the same page.
    const hit =
      (await cache.match(req)) ??
      (req.mode === 'navigate' ? await cache.match(req, { ignoreSearch: true }) : undefined);
    if (hit) return hit;
    throw e;
  }
  // Storage full (QuotaExceededError): the page is served, just not kept this time.
  if (res.ok) {
    const copy = res.clone();
    await caches
      .open(shell)
      .then((c) => c.put(req, copy))
      .catch(() => undefined);
  }
  return res;
}
