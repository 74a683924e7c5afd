/**
 * Blobs of any size in the content-addressed store (relay/store.ts, `<data>/blobs/<sha256>`):
 * streamed in (hashed while written to a temporary file, fsynced, renamed; an existing hash is
 * kept and the temporary dropped), streamed out whole or as a byte range, and collected when no
 * referrer names them (mark and sweep) and they are older than the grace period. Apps' files are
 * one referrer (relay/blob-refs.ts); jobs register theirs. A blob still being uploaded is a
 * temporary file, never a candidate; one written (or uploaded again) within the grace is kept.
 * @example
 * const blobs = openBlobs(store, { graceMs: 86_400_000, maxUploads: 16 });
 * const { hash, size } = await blobs.putStream(req.raw, 1024 * MiB);
 * blobs.open(hash, { start: 0, end: 99 }).pipe(res);
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream, type WriteStream } from 'node:fs';
import { type FileHandle, open, readdir, rename, rm, stat, utimes } from 'node:fs/promises';
import { join } from 'node:path';
import { PassThrough, type Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  InputError,
  LimitError,
  QuotaError,
  TimeoutError,
  UnavailableError,
  UnsupportedError,
} from '../core/errors';
import { isSha256 } from '../core/names';
import { syncDir } from './durable';
import type { BlobStore, Store } from './store';

/** A byte range, both ends included (as HTTP's `bytes=start-end`). */
export interface ByteRange {
  start: number;
  end: number;
}

/** What a referrer names: the hashes it still uses. */
export type Live = () => AsyncIterable<string> | Iterable<string>;

/** A blob held open: read it once, or close it. */
export interface OpenBlob {
  size: number;
  read(range?: ByteRange): Readable;
  close(): Promise<void>;
}

export interface BlobInfo {
  hash: string;
  size: number;
  /** When it was written or last uploaded again (ms since the epoch). */
  modified: number;
}

export interface Blobs extends BlobStore {
  /**
   * Streams `body` into the store; answers its hash and size. Over `limit` bytes: LimitError and
   * nothing kept; `expect` given and not the body's sha256: InputError; disk full: QuotaError.
   */
  putStream(
    body: Readable,
    limit: number,
    expect?: string,
  ): Promise<{ hash: string; size: number }>;
  /** Stores bytes already in memory (a job's result); answers their hash and size. */
  putBytes(bytes: Uint8Array): Promise<{ hash: string; size: number }>;
  stat(hash: string): Promise<{ size: number } | undefined>;
  /** The blob's bytes (those of `range` only, when given) as a stream. */
  open(hash: string, range?: ByteRange): Readable;
  /**
   * The blob opened now (a later collection cannot take it away), or undefined when absent:
   * its size, and a stream of its bytes or of `range` of them, to be read once.
   */
  openFile(hash: string): Promise<OpenBlob | undefined>;
  /** Names what keeps blobs alive; a referrer that throws stops a collection (nothing deleted). */
  addReferrer(name: string, live: Live): void;
  /** The referrers' names that name each of `hashes`. */
  referrers(hashes: string[]): Promise<Map<string, string[]>>;
  /** Blobs in hash order after `after`, at most `limit`. */
  list(after: string, limit: number): Promise<BlobInfo[]>;
  /** One mark and sweep: deletes what no referrer names and is older than the grace. */
  collect(): Promise<{ deleted: string[]; kept: number }>;
  /** Uploads in progress now. */
  uploading(): number;
}

export interface BlobOptions {
  /** A blob no referrer names is deleted once it is older than this. */
  graceMs: number;
  /** Uploads streamed at once; one more is refused (E_UNAVAILABLE) until one ends. */
  maxUploads: number;
  /** An upload that sends nothing for this long is cut (E_TIMEOUT): it holds a slot. Default 60 s. */
  idleMs?: number;
  /** The clock collection ages blobs by; default Date.now (tests move it instead of waiting). */
  now?: () => number;
}

const DISK_FULL = new Set(['ENOSPC', 'EDQUOT']);

/** Streaming, ranges and collection over the file store `store` (its blobs folder). */
export function openBlobs(store: Store, o: BlobOptions): Blobs {
  const dir = join(store.location, 'blobs');
  const now = o.now ?? Date.now;
  const referrers = new Map<string, Live>();
  let active = 0;
  // Finishing an upload (rename or refresh) and deleting a blob take turns, so a sweep never
  // deletes a blob an upload has just answered as stored.
  let turn: Promise<unknown> = Promise.resolve();
  const exclusive = <T>(fn: () => Promise<T>): Promise<T> => {
    const run = turn.then(fn);
    turn = run.catch(() => undefined);
    return run;
  };

  function pathOf(hash: string): string {
    if (!isSha256(hash)) {
      throw new InputError(
        `hash: "${hash.slice(0, 80)}" is not a sha256 (64 lowercase hex digits)`,
      );
    }
    return join(dir, hash);
  }

  async function putStream(body: Readable, limit: number, expect?: string) {
    if (expect !== undefined && !isSha256(expect)) {
      throw new InputError(
        `x-brume-sha256: "${expect.slice(0, 80)}" is not 64 lowercase hex digits`,
      );
    }
    if (active >= o.maxUploads) {
      throw new UnavailableError(
        `the relay streams ${active} uploads at once (limit ${o.maxUploads}, --max-uploads): try again shortly`,
      );
    }
    active++;
    const tmp = join(dir, `.upload.${randomBytes(6).toString('hex')}.tmp`);
    // Through a PassThrough: a refusal ends the pipeline without destroying `body` (an HTTP
    // request whose socket must still carry the answer). Listened to at once: it may fail now.
    const pass = new PassThrough();
    pass.on('error', () => {}); // the pipeline below reports it (it may fail before that starts)
    body.once('error', (e) => pass.destroy(e));
    body.once('close', () => {
      if (!body.readableEnded)
        pass.destroy(new InputError('the upload was cut off before its end'));
    });
    body.pipe(pass);
    const idleMs = o.idleMs ?? 60_000;
    const stalled = () =>
      pass.destroy(new TimeoutError(`the upload sent nothing for ${idleMs} ms: cut`));
    const idle = setTimeout(stalled, idleMs);
    let out: WriteStream | undefined;
    try {
      const hasher = createHash('sha256');
      let size = 0;
      const count = new Transform({
        transform(chunk: Buffer, _enc, done) {
          size += chunk.length;
          if (size > limit) {
            done(
              new LimitError(`the blob is over the limit of ${limit} bytes (${mib(limit)} MiB)`),
            );
            return;
          }
          hasher.update(chunk);
          idle.refresh();
          done(null, chunk);
        },
      });
      // fsynced (flush) before it closes, and the pipeline waits for the close.
      out = createWriteStream(tmp, { flags: 'wx', mode: 0o600, flush: true });
      await pipeline(pass, count, out);
      const hash = hasher.digest('hex');
      if (expect !== undefined && expect !== hash) {
        throw new InputError(`x-brume-sha256: the body's sha256 is ${hash}, not ${expect}`);
      }
      await exclusive(async () => {
        // Uploaded again: young again, so the grace starts over for whoever uploaded it.
        if (await touch(join(dir, hash), now())) await rm(tmp, { force: true });
        else {
          await rename(tmp, join(dir, hash));
          await syncDir(dir);
          await touch(join(dir, hash), now()); // its age by the collection's clock
        }
      });
      return { hash, size };
    } catch (e) {
      pass.destroy();
      // A file still being opened would appear after the rm: wait for the stream to let it go.
      if (out && !out.closed) await new Promise<void>((r) => out?.once('close', () => r()));
      await rm(tmp, { force: true });
      throw typed(e);
    } finally {
      clearTimeout(idle);
      active--;
    }
  }

  async function live(): Promise<Map<string, string[]>> {
    const named = new Map<string, string[]>();
    for (const [name, list] of referrers) {
      for await (const hash of list()) {
        if (!isSha256(hash)) continue;
        const names = named.get(hash);
        if (names) names.includes(name) || names.push(name);
        else named.set(hash, [name]);
      }
    }
    return named;
  }

  const blobs: Blobs = {
    has: (hash) => store.blobs.has(hash),
    get: (hash) => store.blobs.get(hash),
    async put(hash, bytes) {
      // Stored again: young again (in turn with a sweep, which might otherwise take it now).
      const touched = await exclusive(() => touch(pathOf(hash), now()));
      if (touched) return;
      await store.blobs.put(hash, bytes);
      await touch(pathOf(hash), now()); // its age by the collection's clock
    },
    putStream,
    async putBytes(bytes) {
      const hash = createHash('sha256').update(bytes).digest('hex');
      await blobs.put(hash, bytes);
      return { hash, size: bytes.byteLength };
    },
    async stat(hash) {
      const s = await stat(pathOf(hash)).catch(ignoreMissing);
      return s ? { size: s.size } : undefined;
    },
    open(hash, range) {
      return createReadStream(pathOf(hash), range ?? {});
    },
    async openFile(hash) {
      const handle = await open(pathOf(hash), 'r').catch(ignoreMissing);
      if (!handle) return undefined;
      const { size } = await handle.stat().catch(async (e: unknown) => {
        await handle.close();
        throw e;
      });
      return { size, read: (range) => readHandle(handle, range), close: () => handle.close() };
    },
    addReferrer(name, list) {
      if (referrers.has(name)) throw new InputError(`blob referrer "${name}" is registered twice`);
      referrers.set(name, list);
    },
    async referrers(hashes) {
      const named = await live();
      return new Map(hashes.map((h) => [h, named.get(h) ?? []]));
    },
    async list(after, limit) {
      const names = (await readdir(dir)).filter((n) => isSha256(n) && n > after).sort();
      const out: BlobInfo[] = [];
      for (const hash of names) {
        if (out.length >= limit) break;
        const s = await stat(join(dir, hash)).catch(ignoreMissing);
        if (s) out.push({ hash, size: s.size, modified: Math.round(s.mtimeMs) });
      }
      return out;
    },
    async collect() {
      const named = await live(); // first: a referrer that fails leaves everything in place
      const deleted: string[] = [];
      let kept = 0;
      for (const hash of (await readdir(dir)).filter(isSha256)) {
        if (named.has(hash)) {
          kept++;
          continue;
        }
        const gone = await exclusive(async () => {
          const s = await stat(join(dir, hash)).catch(ignoreMissing);
          if (!s || now() - s.mtimeMs < o.graceMs) return false;
          await rm(join(dir, hash), { force: true });
          return true;
        });
        if (gone) deleted.push(hash);
        else kept++;
      }
      if (deleted.length) await syncDir(dir);
      return { deleted, kept };
    },
    uploading: () => active,
  };
  return blobs;
}

function mib(bytes: number): string {
  return (bytes / 2 ** 20).toFixed(bytes % 2 ** 20 === 0 ? 0 : 1);
}

function readHandle(handle: FileHandle, range?: ByteRange): Readable {
  return createReadStream('', { fd: handle, ...range, autoClose: true });
}

/** Errors of the disk in the typed shape a caller gets. */
function typed(e: unknown): unknown {
  const code = (e as NodeJS.ErrnoException).code;
  if (code && DISK_FULL.has(code)) {
    return new QuotaError("the relay's disk is full: the blob was not stored (nothing kept)");
  }
  if (code === 'EROFS') return new UnsupportedError("the relay's blob store is read-only");
  return e;
}

/** Sets the file's time to now; false when there is no such file. */
async function touch(path: string, ms: number): Promise<boolean> {
  const t = new Date(ms);
  return (await utimes(path, t, t).then(() => true, ignoreMissing)) === true;
}

function ignoreMissing(e: unknown): undefined {
  if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
  throw e;
}
