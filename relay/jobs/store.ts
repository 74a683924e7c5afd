/**
 * Where jobs are kept, behind a small interface (`JobStore`) so a shared store (Redis, issue 17:
 * relay/cluster/jobs.ts) can replace the file. The file store is one append-only log, `<data>/jobs/jobs.log`, in the
 * context log's record format (relay/context-log.ts: header, then length + CRC32 + MessagePack
 * payload per record): each record is a job's whole state after a change, or a tombstone
 * `{ id, gone: true }`; the last record of an id wins. Appends are group-committed — the records
 * written while an fsync runs go out together in the next one — so a `put` resolves only once its
 * record is on disk, and a thousand jobs accepted at once cost a few fsyncs, not a thousand
 * (one file per job through writeDurable would pay a file write, an fsync, a rename and a
 * directory fsync for every change). When the log is over twice what it holds live plus a floor,
 * it is rewritten with the live records only (writeDurable: the old log or the new, never a mix).
 * A torn tail (a crash mid-append) is cut off at start, with a warning.
 * @example const store = await openJobLog(dir, { warn }); for (const j of await store.load()) …
 *          await store.put(job);   // durable now
 */

import type { FileHandle } from 'node:fs/promises';
import { mkdir, open, readFile, truncate } from 'node:fs/promises';
import { join } from 'node:path';
import { decode, encode } from '../../core/codec';
import { HEADER_BYTES, logHeader, logRecord, scanLog } from '../context-log';
import { removeTemporaries, writeDurable } from '../durable';
import { isJobId } from './ids';
import { type Job, jobStates } from './job';

export interface JobStore {
  /** Every job kept, as last written (call once, before any put). */
  load(): Promise<Job[]>;
  /** Writes `job` as it is now; resolves once that is durable. */
  put(job: Job): Promise<void>;
  /** Forgets jobs for good (their retention is over); durable when it resolves. */
  forget(ids: string[]): Promise<void>;
  /** Bytes on disk and bytes live, for metrics and tests. */
  size(): { logBytes: number; liveBytes: number };
  close(): Promise<void>;
}

type Record_ = Job | { id: string; gone: true };

const FILE = 'jobs.log';

/** Reads the log's records as they were written (tests check a job succeeded once in them). */
export function parseRecord(payload: Uint8Array): Record_ {
  const r = decode(payload) as Partial<Job> & { gone?: boolean };
  if (!r || typeof r !== 'object' || typeof r.id !== 'string' || !isJobId(r.id))
    throw new Error('not a job record');
  if (r.gone !== true && !jobStates.includes(r.state as Job['state']))
    throw new Error(`job ${r.id} has no known state`);
  return r as Record_;
}

/** Every record of the log at `dir` in order, for tests and tools. */
export async function readJobLog(dir: string): Promise<Record_[]> {
  return scanLog(await readFile(join(dir, FILE)), parseRecord).records;
}

export async function openJobLog(
  dir: string,
  o: { warn(m: string): void; compactFloorBytes?: number },
): Promise<JobStore> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await removeTemporaries(dir, [FILE]);
  const path = join(dir, FILE);
  const floor = o.compactFloorBytes ?? 1024 * 1024;
  /** The last payload of each live job. */
  const live = new Map<string, Uint8Array>();
  let liveBytes = 0;
  let logBytes = 0;
  let generation = 1;

  const bytes = await readFile(path).catch((e: NodeJS.ErrnoException) => {
    if (e.code === 'ENOENT') return undefined;
    throw e;
  });
  if (bytes) {
    // A copy of each payload: a slice of the file's buffer would keep all of it in memory.
    const scan = scanLog(bytes, (p) => ({ payload: new Uint8Array(p), record: parseRecord(p) }));
    for (const { payload, record } of scan.records)
      setLive(record.id, 'gone' in record ? undefined : payload);
    generation = scan.generation ?? 1;
    logBytes = scan.good;
    if (scan.stop) {
      o.warn(
        `${path}: ${scan.stop} at byte ${scan.good}; cut there (a write the relay did not finish)`,
      );
      await truncate(path, scan.good);
    }
  }
  if (!bytes || logBytes < HEADER_BYTES) {
    await writeDurable(path, logHeader(generation));
    logBytes = HEADER_BYTES;
  }
  let handle: FileHandle = await open(path, 'a', 0o600);

  function setLive(id: string, payload: Uint8Array | undefined): void {
    liveBytes -= live.get(id)?.byteLength ?? 0;
    if (payload) {
      live.set(id, payload);
      liveBytes += payload.byteLength;
    } else live.delete(id);
  }

  // Group commit: records wait in `batch` while a write+fsync runs; the next one takes them all.
  let batch: { buf: Buffer; done(e?: unknown): void }[] = [];
  let flushing: Promise<void> | undefined;
  let closed = false;

  function append(buf: Buffer): Promise<void> {
    if (closed) return Promise.reject(new Error('the job log is closed'));
    return new Promise<void>((resolve, reject) => {
      batch.push({ buf, done: (e) => (e ? reject(e) : resolve()) });
      flushing ??= flush();
    });
  }

  async function flush(): Promise<void> {
    while (batch.length > 0) {
      const taken = batch;
      batch = [];
      try {
        const all = Buffer.concat(taken.map((t) => t.buf));
        await handle.write(all);
        await handle.sync();
        logBytes += all.byteLength;
        for (const t of taken) t.done();
      } catch (e) {
        for (const t of taken) t.done(e);
      }
      if (logBytes > 2 * liveBytes + floor)
        await compact().catch((e: unknown) =>
          o.warn(`${path}: compaction failed: ${(e as Error).message}`),
        );
    }
    flushing = undefined;
  }

  /** Rewrites the log with the live records only, under the next generation. */
  async function compact(): Promise<void> {
    const parts = [logHeader(generation + 1), ...[...live.values()].map((p) => logRecord(p))];
    const all = Buffer.concat(parts);
    await handle.close();
    try {
      await writeDurable(path, all);
      generation++;
      logBytes = all.byteLength;
    } finally {
      handle = await open(path, 'a', 0o600);
    }
  }

  return {
    async load() {
      return [...live.values()].map((p) => parseRecord(p) as Job);
    },
    put(job) {
      const payload = encode(job);
      setLive(job.id, payload);
      return append(logRecord(payload));
    },
    forget(ids) {
      if (ids.length === 0) return Promise.resolve();
      const bufs = ids.map((id) => {
        setLive(id, undefined);
        return logRecord(encode({ id, gone: true }));
      });
      return append(Buffer.concat(bufs));
    },
    size: () => ({ logBytes, liveBytes }),
    async close() {
      closed = true;
      await flushing;
      await handle.close();
    },
  };
}
