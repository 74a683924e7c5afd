/**
 * The relay's durable storage, behind two small interfaces so a Redis-backed store
 * (relay/cluster/store.ts) can replace the file-system one for fabrics of several relays.
 *
 * Layout under `dataDir`:
 *   blobs/<sha256>             file bytes, content-addressed
 *   apps/<name>.json           the app's current manifest
 *   apps/<name>/<version>.json every version ever deployed
 *   .<file>.<random>.tmp       a write in progress, next to its target (relay/durable.ts)
 *   blobs/.upload.<random>.tmp an upload being streamed in (relay/blobs.ts)
 *
 * @example
 * const store = await createStore('.brume');
 * await store.blobs.put(sha, bytes);
 * await store.apps.put(manifest);
 */
import { createHash } from 'node:crypto';
import { mkdir, readdir, readFile, rm, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { InputError, InternalError } from '../core/errors';
import { type Manifest, parseManifest } from '../core/manifest';
import { isAppName, isAppVersion, isSha256 } from '../core/names';
import { removeTemporaries, writeDurable } from './durable';

/** Immutable bytes named by their sha256. */
export interface BlobStore {
  has(sha256: string): Promise<boolean>;
  /** The bytes, or undefined when no blob has that hash. */
  get(sha256: string): Promise<Uint8Array | undefined>;
  /** Stores `bytes` under `sha256` after checking that it is their hash; a no-op if present. */
  put(sha256: string, bytes: Uint8Array): Promise<void>;
}

/** Manifests by app name and version; one version per app is current. */
export interface AppStore {
  /** Names of every app with a current version, sorted. */
  names(): Promise<string[]>;
  current(name: string): Promise<Manifest | undefined>;
  get(name: string, version: string): Promise<Manifest | undefined>;
  /** Every version ever deployed, sorted by semver. */
  versions(name: string): Promise<string[]>;
  /** Records `manifest` in the history and, unless `current: false`, makes it current. */
  put(manifest: Manifest, options?: { current?: boolean }): Promise<void>;
}

export interface Store {
  /** Where it lives, for people (a directory, a Redis URL). */
  readonly location: string;
  readonly blobs: BlobStore;
  readonly apps: AppStore;
}

/** A Store in the file system under `dataDir` (created if missing). One relay per directory. */
export async function createStore(dataDir = '.brume'): Promise<Store> {
  const root = resolve(dataDir);
  const dirs = { blobs: join(root, 'blobs'), apps: join(root, 'apps') };
  for (const dir of Object.values(dirs)) await mkdir(dir, { recursive: true });
  // Temporaries were being written when a previous process died: never complete, never used.
  await rm(join(root, 'tmp'), { recursive: true, force: true }); // where older relays wrote them
  await removeTemporaries(dirs.blobs);
  await removeTemporaries(dirs.apps);
  for (const name of await readdir(dirs.apps)) {
    if (isAppName(name)) await removeTemporaries(join(dirs.apps, name)).catch(ignoreNotDir);
  }
  return { location: root, blobs: fileBlobs(dirs.blobs), apps: fileApps(dirs.apps) };
}

/**
 * Blobs as files named by their hash; a reader sees a whole file or none (relay/durable.ts).
 * Also a cluster's shared blob directory (relay/cluster/store.ts `clusterStore`).
 */
export function fileBlobs(dir: string): BlobStore {
  function blobPath(sha256: string): string {
    if (!isSha256(sha256)) {
      throw new InputError(`"${sha256}" is not a sha256: expected 64 lowercase hex digits`);
    }
    return join(dir, sha256);
  }
  const blobs: BlobStore = {
    async has(sha256) {
      return (await stat(blobPath(sha256)).catch(ignoreMissing)) !== undefined;
    },
    async get(sha256) {
      return readOptional(blobPath(sha256));
    },
    async put(sha256, bytes) {
      const path = blobPath(sha256);
      const actual = createHash('sha256').update(bytes).digest('hex');
      if (actual !== sha256) {
        throw new InternalError(`refusing to store a blob as ${sha256}: its sha256 is ${actual}`);
      }
      if (await blobs.has(sha256)) return;
      await writeDurable(path, bytes);
    },
  };
  return blobs;
}

/** Manifests as JSON files: `<name>.json` the current one, `<name>/<version>.json` each one. */
function fileApps(dir: string): AppStore {
  function checkName(name: string, version?: string): void {
    if (!isAppName(name) || (version !== undefined && !isAppVersion(version))) {
      throw new InputError(`"${name}${version ? `@${version}` : ''}" is not a valid app name`);
    }
  }
  const jsonNames = (entries: string[], valid: (name: string) => boolean) =>
    entries.filter((f) => f.endsWith('.json') && valid(f.slice(0, -5))).map((f) => f.slice(0, -5));
  return {
    async names() {
      return jsonNames(await readdir(dir), isAppName).sort();
    },
    async current(name) {
      checkName(name);
      return readManifest(join(dir, `${name}.json`));
    },
    async get(name, version) {
      checkName(name, version);
      return readManifest(join(dir, name, `${version}.json`));
    },
    async versions(name) {
      checkName(name);
      const entries = await readdir(join(dir, name)).catch(ignoreMissing);
      return jsonNames(entries ?? [], isAppVersion).sort(compareSemver);
    },
    async put(manifest, options = {}) {
      checkName(manifest.name, manifest.version);
      const json = new TextEncoder().encode(`${JSON.stringify(manifest, null, 2)}\n`);
      await mkdir(join(dir, manifest.name), { recursive: true });
      // History first: the current pointer never names a version that is not recorded.
      await writeDurable(join(dir, manifest.name, `${manifest.version}.json`), json);
      if (options.current !== false) await writeDurable(join(dir, `${manifest.name}.json`), json);
    },
  };
}

async function readManifest(path: string): Promise<Manifest | undefined> {
  const text = await readOptional(path);
  if (text === undefined) return undefined;
  try {
    return parseManifest(JSON.parse(text.toString('utf8')));
  } catch (e) {
    throw new InternalError(`stored manifest ${path} is unreadable: ${(e as Error).message}`, {
      cause: e,
    });
  }
}

/** Orders `MAJOR.MINOR.PATCH` strings numerically. */
export function compareSemver(a: string, b: string): number {
  const pa = a.split('.').map(Number);
  const pb = b.split('.').map(Number);
  for (let i = 0; i < 3; i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

async function readOptional(path: string): Promise<Buffer | undefined> {
  return readFile(path).catch(ignoreMissing);
}

function ignoreNotDir(e: unknown): void {
  if ((e as NodeJS.ErrnoException).code !== 'ENOTDIR') throw e;
}

function ignoreMissing(e: unknown): undefined {
  if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
  throw e;
}
