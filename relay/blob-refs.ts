/**
 * What keeps blobs (relay/blobs.ts) alive and when the rest goes: the relay's blob limits, the
 * streaming store wired over a Store with apps' files as its first referrer, the apps referrer
 * itself (which also says which hashes are public), and the periodic collection.
 * @example const { store, blobs, apps } = withBlobs(await createStore(dir), { graceMs });
 *          const timer = collectEvery(blobs, graceMs, log);
 */
import { type Blobs, openBlobs } from './blobs';
import type { RelayLogger } from './log';
import type { Store } from './store';

export interface BlobLimits {
  /** Largest blob `PUT /api/blobs` takes, in bytes. */
  maxBytes: number;
  /** A blob nothing refers to is collected once older than this. */
  graceMs: number;
  /** Uploads streamed at once. */
  maxUploads: number;
}

export const defaultBlobLimits: BlobLimits = {
  maxBytes: 1024 * 1024 * 1024,
  graceMs: 24 * 3_600_000,
  maxUploads: 16,
};

/**
 * The store with its blobs streamed (relay/blobs.ts): `store.blobs` is the streaming store, so a
 * deploy's files and an upload take turns with a collection; apps' files are its first referrer.
 */
export function withBlobs(base: Store, given: Partial<BlobLimits> = {}, now?: () => number) {
  const limits = { ...defaultBlobLimits, ...given };
  const blobs = openBlobs(base, {
    graceMs: limits.graceMs,
    maxUploads: limits.maxUploads,
    ...(now && { now }),
  });
  const apps = appFiles(base);
  blobs.addReferrer('apps', apps.live);
  const store: Store = { location: base.location, apps: base.apps, blobs };
  return { store, blobs, apps, limits };
}

/** Collects unreferenced blobs every grace period (at most hourly, at least each second). */
export function collectEvery(blobs: Blobs, graceMs: number, log: RelayLogger): NodeJS.Timeout {
  const every = Math.min(Math.max(graceMs, 1000), 3_600_000);
  let running = false;
  const timer = setInterval(() => {
    if (running) return;
    running = true;
    blobs
      .collect()
      .then(
        (r) => {
          if (r.deleted.length) {
            log.info(
              { deleted: r.deleted.length, kept: r.kept },
              `collected ${r.deleted.length} unreferenced blobs`,
            );
          }
        },
        (e: unknown) => log.warn(`blob collection skipped: ${(e as Error).message ?? e}`),
      )
      .finally(() => {
        running = false;
      });
  }, every);
  timer.unref();
  return timer;
}

/**
 * The referrer for apps' files: every file of every version ever deployed (a rollback needs
 * them), and `has`, whether a hash is one of them (such a file is public: tabs fetch it).
 * `stored(manifest)` tells it of a deploy; it reads the store once, on first use.
 */
export function appFiles(store: Store) {
  let known: Promise<Set<string>> | undefined;
  const load = async () => {
    const set = new Set<string>();
    for (const name of await store.apps.names()) {
      for (const version of await store.apps.versions(name)) {
        const m = await store.apps.get(name, version);
        for (const entry of Object.values(m?.files ?? {})) set.add(entry.sha256);
      }
    }
    return set;
  };
  const all = () => {
    known ??= load().catch((e: unknown) => {
      known = undefined;
      throw e;
    });
    return known;
  };
  return {
    live: async function* () {
      // Read afresh for a collection: a deploy in another relay process would be missed otherwise.
      known = undefined;
      yield* await all();
    },
    has: async (hash: string) => (await all()).has(hash),
    stored(files: Iterable<{ sha256: string }>) {
      void all().then((set) => {
        for (const f of files) set.add(f.sha256);
      });
    },
  };
}
