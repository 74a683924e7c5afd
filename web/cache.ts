/**
 * Apps kept in the browser: files by content hash in the Cache API (a reload never downloads a
 * file twice), and the app list and manifests too, so a tab cut off from the relay still starts.
 * Files are verified by the runtime on every load, so a corrupted cache entry is an error, never
 * a wrong answer. Files of a version the node dropped are deleted (`forget`); a file that does not
 * fit in storage is used from memory and not kept.
 * @example const source = cachedAppSource(httpAppSource(origin, fetch), (p) => show(p));
 */
import type { AppSource } from '../core/runtime';

export interface DownloadProgress {
  sha256: string;
  received: number;
  total: number;
}

const cacheName = 'brume-apps-v1';

export function cachedAppSource(
  network: AppSource,
  onProgress: (p: DownloadProgress) => void = () => {},
): AppSource {
  const open = () => caches.open(cacheName);
  const key = (path: string) => new Request(new URL(path, location.origin));

  /** Network first (apps change), the cached copy when the relay cannot be reached. */
  async function metadata<T>(path: string, load: () => Promise<T>): Promise<T> {
    try {
      const value = await load();
      await (await open()).put(key(path), Response.json(value));
      return value;
    } catch (e) {
      const hit = await (await open()).match(key(path));
      if (!hit) throw e;
      return (await hit.json()) as T;
    }
  }

  return {
    list: () => metadata('/brume-cache/apps', () => network.list()),
    manifest: (app, version) =>
      version === undefined
        ? metadata(`/brume-cache/apps/${app}`, () => network.manifest(app))
        : metadata(`/brume-cache/apps/${app}/versions/${version}`, () =>
            network.manifest(app, version),
          ),
    versions: (app) => metadata(`/brume-cache/apps/${app}/versions`, () => network.versions(app)),
    async blob(sha256) {
      const cache = await open();
      const path = `/brume-cache/blobs/${sha256}`;
      const hit = await cache.match(key(path));
      if (hit) return new Uint8Array(await hit.arrayBuffer());
      const bytes = await network.blob(sha256, (received, total) =>
        onProgress({ sha256, received, total }),
      );
      // Storage full: the file is used from memory this time, and fetched again next time.
      await cache.put(key(path), new Response(bytes as Uint8Array<ArrayBuffer>)).catch(() => {});
      return bytes;
    },
    async forget(sha256s) {
      const cache = await open();
      for (const sha256 of sha256s) await cache.delete(key(`/brume-cache/blobs/${sha256}`));
    },
  };
}

/** How many app files this browser holds (the join page shows it). */
export async function cachedFiles(): Promise<number> {
  const keys = await (await caches.open(cacheName)).keys();
  return keys.filter((r) => new URL(r.url).pathname.startsWith('/brume-cache/blobs/')).length;
}
