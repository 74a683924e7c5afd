/**
 * The relay's Store (relay/store.ts: apps and blobs) in Redis, for relays that share it.
 *
 * Keys (after the link's prefix, `brume:` by default):
 *   apps             hash  name → the current manifest's JSON
 *   app:<name>       hash  version → that version's manifest JSON (every version ever deployed)
 *   blob:<sha256>    string the bytes of a small blob
 *   blobs:bytes      integer the bytes of every blob kept in Redis, together
 *
 * Where blob bytes live: a blob of at most `smallBlobBytes` (default 1 MiB) is kept in Redis,
 * where every relay reads it; Redis keeps at most `maxRedisBlobBytes` (default 256 MiB) of them
 * together, a put past that is refused (E_QUOTA) with nothing kept. A larger blob is a file
 * `<blobDir>/<sha256>` in a directory every relay mounts (NFS, a shared volume), written with
 * writeDurable (whole or absent; two relays writing the same hash write the same bytes); without a
 * `blobDir` a large blob is refused (E_LIMIT naming the bound). Redis memory is the scarce resource
 * of a cluster, so large bytes never go there; a directory is what operators already share.
 * The streaming, ranged and collected blob API (relay/blobs.ts) still works over the file store
 * only: this is the BlobStore interface (has, get, put).
 *
 * What comes back from Redis is as hostile as a file on disk: a manifest goes through
 * parseManifest and must carry the name and version it is stored under; a blob's bytes must hash
 * to its name. Either refusal is an InternalError naming the key, never a crash.
 * Every write is one atomic step (MULTI or a script): a reader sees the old state or the new one.
 * A cluster of relays (`brume start --redis`) uses `clusterStore` instead: one rule for blob bytes,
 * every blob a file under the shared directory, whatever its size (see below).
 * @example const redis = await openRedis(url);
 *          const store = redisStore(redis, { blobDir: '/mnt/brume-blobs' });
 *          const shared = await clusterStore(redis, '/mnt/brume-blobs');
 */
import { createHash } from 'node:crypto';
import { mkdir, readFile, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { InputError, InternalError, LimitError, QuotaError } from '../../core/errors';
import { type Manifest, parseManifest } from '../../core/manifest';
import { isAppName, isAppVersion, isSha256 } from '../../core/names';
import { writeDurable } from '../durable';
import { type AppStore, type BlobStore, compareSemver, fileBlobs, type Store } from '../store';
import type { RedisLink } from './redis';

export interface RedisStoreOptions {
  /** Blobs of at most this many bytes are kept in Redis. Default 1 MiB. */
  smallBlobBytes?: number;
  /** Bytes of small blobs Redis keeps together at most. Default 256 MiB. */
  maxRedisBlobBytes?: number;
  /** The shared directory for larger blobs; without one they are refused. */
  blobDir?: string;
}

export const redisStoreDefaults = { smallBlobBytes: 1 << 20, maxRedisBlobBytes: 256 << 20 };

/** Apps and blobs in Redis (and large blobs in `blobDir`). */
export async function redisStore(redis: RedisLink, o: RedisStoreOptions = {}): Promise<Store> {
  const blobDir = o.blobDir === undefined ? undefined : resolve(o.blobDir);
  if (blobDir) await mkdir(blobDir, { recursive: true });
  return {
    location: `${redis.location} (${redis.prefix}*)${blobDir ? ` + ${blobDir}` : ''}`,
    apps: redisApps(redis),
    blobs: redisBlobs(redis, { ...redisStoreDefaults, ...o, blobDir }),
  };
}

/**
 * The Store of a relay in a cluster: apps in Redis (as `redisStore`), and every blob's bytes,
 * small or large, a file `<blobDir>/blobs/<sha256>` in a directory all relays mount (NFS, a
 * shared volume). One rule, so the streaming, ranged and collected blob API (relay/blobs.ts, which
 * works under `location`/blobs) is the same on every relay and any relay serves any blob; Redis
 * memory, the scarce resource of a cluster, holds no bytes. Writes are whole-or-absent files
 * (writeDurable, an upload's rename), and two relays writing one hash write the same bytes.
 * Unlike `createStore`, nothing is cleaned up at start: a temporary file in the shared directory
 * may be another relay's upload in progress.
 * @example const store = await clusterStore(redis, '/mnt/brume-blobs');
 *          const blobs = openBlobs(store, limits); // files under /mnt/brume-blobs/blobs
 */
export async function clusterStore(redis: RedisLink, blobDir: string): Promise<Store> {
  const root = resolve(blobDir);
  const dir = join(root, 'blobs');
  await mkdir(dir, { recursive: true });
  return { location: root, apps: redisApps(redis), blobs: fileBlobs(dir) };
}

function redisApps(redis: RedisLink): AppStore {
  const current = redis.key('apps');
  const history = (name: string) => redis.key('app', name);
  function checkName(name: string, version?: string): void {
    if (!isAppName(name) || (version !== undefined && !isAppVersion(version))) {
      throw new InputError(`"${name}${version ? `@${version}` : ''}" is not a valid app name`);
    }
  }
  /** A manifest read back: parsed, and the one stored under `name` (and `version`). */
  function read(where: string, text: string | null, name: string, version?: string) {
    if (text === null) return undefined;
    let manifest: Manifest;
    try {
      manifest = parseManifest(JSON.parse(text));
    } catch (e) {
      throw new InternalError(`stored manifest ${where} is unreadable: ${(e as Error).message}`, {
        cause: e,
      });
    }
    if (manifest.name !== name || (version !== undefined && manifest.version !== version))
      throw new InternalError(
        `stored manifest ${where} is ${manifest.name}@${manifest.version}, not the one stored there`,
      );
    return manifest;
  }
  return {
    async names() {
      const names = await redis.run('list apps', (c) => c.hkeys(current));
      return names.filter(isAppName).sort();
    },
    async current(name) {
      checkName(name);
      const text = await redis.run(`read app ${name}`, (c) => c.hget(current, name));
      return read(`${current} ${name}`, text, name);
    },
    async get(name, version) {
      checkName(name, version);
      const text = await redis.run(`read app ${name}@${version}`, (c) =>
        c.hget(history(name), version),
      );
      return read(`${history(name)} ${version}`, text, name, version);
    },
    async versions(name) {
      checkName(name);
      const versions = await redis.run(`list versions of ${name}`, (c) => c.hkeys(history(name)));
      return versions.filter(isAppVersion).sort(compareSemver);
    },
    async put(manifest, options = {}) {
      checkName(manifest.name, manifest.version);
      const json = `${JSON.stringify(manifest, null, 2)}\n`;
      await redis.run(`store app ${manifest.name}@${manifest.version}`, async (c) => {
        // One transaction: the current pointer never names a version that is not recorded.
        const tx = c.multi().hset(history(manifest.name), manifest.version, json);
        if (options.current !== false) tx.hset(current, manifest.name, json);
        const replies = await tx.exec();
        const failed = replies?.find(([e]) => e);
        if (!replies || failed) throw failed?.[0] ?? new Error('the transaction was aborted');
      });
    },
  };
}

/** Adds a small blob unless present, within the byte bound: 1 stored, 0 present, -1 over. */
const PUT_SMALL = `
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local total = tonumber(redis.call('GET', KEYS[2]) or '0')
if total == nil then return redis.error_reply('blobs:bytes is not a number') end
if total + tonumber(ARGV[2]) > tonumber(ARGV[3]) then return -1 end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('INCRBY', KEYS[2], ARGV[2])
return 1`;

function redisBlobs(
  redis: RedisLink,
  o: { smallBlobBytes: number; maxRedisBlobBytes: number; blobDir: string | undefined },
): BlobStore {
  const total = redis.key('blobs', 'bytes');
  function blobKey(sha256: string): string {
    if (!isSha256(sha256)) {
      throw new InputError(`"${sha256}" is not a sha256: expected 64 lowercase hex digits`);
    }
    return redis.key('blob', sha256);
  }
  const filePath = (sha256: string) => (o.blobDir ? join(o.blobDir, sha256) : undefined);
  function checked(where: string, sha256: string, bytes: Uint8Array): Uint8Array {
    const actual = createHash('sha256').update(bytes).digest('hex');
    if (actual !== sha256)
      throw new InternalError(`stored blob ${where} is damaged: its bytes hash to ${actual}`);
    return bytes;
  }
  const blobs: BlobStore = {
    async has(sha256) {
      const key = blobKey(sha256);
      if ((await redis.run(`look up blob ${sha256}`, (c) => c.exists(key))) === 1) return true;
      const path = filePath(sha256);
      return path !== undefined && (await stat(path).catch(ignoreMissing)) !== undefined;
    },
    async get(sha256) {
      const key = blobKey(sha256);
      const bytes = await redis.run(`read blob ${sha256}`, (c) => c.getBuffer(key));
      if (bytes) return checked(key, sha256, new Uint8Array(bytes));
      const path = filePath(sha256);
      const file = path === undefined ? undefined : await readFile(path).catch(ignoreMissing);
      return file && checked(path!, sha256, new Uint8Array(file));
    },
    async put(sha256, bytes) {
      const key = blobKey(sha256);
      const actual = createHash('sha256').update(bytes).digest('hex');
      if (actual !== sha256) {
        throw new InternalError(`refusing to store a blob as ${sha256}: its sha256 is ${actual}`);
      }
      if (bytes.byteLength > o.smallBlobBytes) {
        const path = filePath(sha256);
        if (path === undefined)
          throw new LimitError(
            `a blob of ${bytes.byteLength} bytes is over the ${o.smallBlobBytes} bytes kept in Redis, and no shared blob directory is set`,
          );
        if ((await stat(path).catch(ignoreMissing)) === undefined) await writeDurable(path, bytes);
        return;
      }
      const r = await redis.run(`store blob ${sha256}`, (c) =>
        c.eval(
          PUT_SMALL,
          2,
          key,
          total,
          Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength),
          bytes.byteLength,
          o.maxRedisBlobBytes,
        ),
      );
      if (r === -1)
        throw new QuotaError(
          `Redis holds ${o.maxRedisBlobBytes} bytes of blobs at most (its limit): the blob was not stored`,
        );
    },
  };
  return blobs;
}

function ignoreMissing(e: unknown): undefined {
  if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
  throw e;
}
