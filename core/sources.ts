import { NotFoundError } from './errors';
import { type HttpFetch, relayClient } from './relay-client';
import type { AppSource } from './runtime';

/** The slice of the Fetch API a source needs; pass the platform's `fetch`. */
export type FetchLike = HttpFetch;

/**
 * Apps from a relay's HTTP API (`/api/apps`, `/api/apps/:name`, `/api/blobs/:sha256`).
 * @example const source = httpAppSource('http://127.0.0.1:8787', fetch);
 */
export function httpAppSource(base: string, fetchImpl: FetchLike): AppSource {
  const relay = relayClient({ base, fetch: fetchImpl });
  return {
    list: () => relay.json<{ name: string; version: string }[]>('GET', '/api/apps'),
    manifest: (app, version) =>
      relay.json<unknown>(
        'GET',
        version === undefined
          ? `/api/apps/${encodeURIComponent(app)}`
          : `/api/apps/${encodeURIComponent(app)}/versions/${encodeURIComponent(version)}`,
      ),
    versions: (app) => relay.json<string[]>('GET', `/api/apps/${encodeURIComponent(app)}/versions`),
    async blob(sha256, onProgress) {
      const res = await relay.send('GET', `/api/blobs/${sha256}`);
      const total = Number(res.headers.get('content-length') ?? 0);
      if (!onProgress || !res.body) return new Uint8Array(await res.arrayBuffer());
      const reader = res.body.getReader();
      const parts: Uint8Array[] = [];
      let received = 0;
      for (;;) {
        const { done, value } = await reader.read();
        if (done || !value) break;
        parts.push(value);
        received += value.byteLength;
        onProgress(received, total);
      }
      const out = new Uint8Array(received);
      let at = 0;
      for (const p of parts) {
        out.set(p, at);
        at += p.byteLength;
      }
      return out;
    },
  };
}

/** Apps held in memory (unpacked bundles): for Node nodes and tests. */
export function memoryAppSource(
  bundles: {
    manifest: { name: string; files: Record<string, { sha256: string }> };
    files: Record<string, Uint8Array>;
  }[],
): AppSource {
  const blobs = new Map<string, Uint8Array>();
  const manifests = new Map<string, unknown>();
  // Every version given, by `name@version`; the last one given of an app is its current one.
  const versions = new Map<string, unknown>();
  for (const b of bundles) {
    manifests.set(b.manifest.name, b.manifest);
    versions.set(`${b.manifest.name}@${(b.manifest as { version?: string }).version}`, b.manifest);
    for (const [path, entry] of Object.entries(b.manifest.files)) {
      const bytes = b.files[path];
      if (bytes) blobs.set(entry.sha256, bytes);
    }
  }
  return {
    list: async () =>
      [...manifests.entries()].map(([name, m]) => ({
        name,
        version: (m as { version: string }).version,
      })),
    manifest: async (app, version) => {
      const m = version === undefined ? manifests.get(app) : versions.get(`${app}@${version}`);
      if (!m) throw new NotFoundError(`no app "${app}"${version ? ` version ${version}` : ''}`);
      return m;
    },
    versions: async (app) =>
      [...versions.keys()]
        .filter((k) => k.startsWith(`${app}@`))
        .map((k) => k.slice(app.length + 1)),
    blob: async (sha256) => {
      const b = blobs.get(sha256);
      if (!b) throw new NotFoundError(`no file with sha256 ${sha256}`);
      return b;
    },
  };
}
