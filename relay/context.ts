/**
 * The relay's copy of the context store, durable: every operation it acknowledges is appended to
 * `<data>/context.log` (with a checksum) and fsynced first, so a relay killed at any moment loses
 * nothing it acknowledged; writes that arrive while an fsync runs wait and share the next one
 * (group commit), so the rate of writes is not bounded by the rate of fsyncs. When the log outgrows the live state (twice its size plus a floor) the
 * live state is written to `context.snapshot` and the log starts again empty, so the files stay
 * O(live data) however often keys are rewritten. At start: the snapshot, then the log, up to its
 * last good record (byte format: `relay/context-log.ts`).
 * @example const ctx = await openContext('.brume'); if (await ctx.accept(op, nodeId)) fanOut(op);
 */
import { mkdir, open, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { decode, encode } from '../core/codec';
import { Clock, type Stamp } from '../core/context/hlc';
import type { ContextStore } from '../core/context/hub';
import {
  type ContextLimits,
  type ContextOp,
  ContextReplica,
  defaultCatchUpBytes,
  type Staged,
} from '../core/context/replica';
import {
  InputError,
  InternalError,
  PrivacyError,
  UnavailableError,
  UnsupportedError,
} from '../core/errors';
import { type AgreementBinding, contextOpSchema } from '../core/protocol';
import { openAgreements } from './agreements';
import {
  HEADER_BYTES,
  logHeader,
  logRecord,
  scanLog,
  snapshotBody,
  snapshotBytes,
} from './context-log';
import { moveAside, readDurable, removeTemporaries, writeDurable } from './durable';
import type { RelayMetrics } from './metrics';

export interface ContextOptions {
  /** Per value and per app bytes, the catch-up log kept in memory, seen-op ids. */
  limits?: Partial<ContextLimits>;
  /** The log is compacted once it is over twice the live state plus this. Default 1 MiB. */
  compactFloorBytes?: number;
  /** Bytes of ops per `ctx-catchup` frame. Default 4 MiB. */
  catchUpBytes?: number;
  /** Agreement keys kept in `agreements.json` (and recent joins in memory) at most. Default 10,000. */
  maxAgreements?: number;
  /** Whether an identity key is on the trust list (its agreement key is kept on disk). */
  trusted?: (publicKey: string) => boolean;
  /** Where damaged files and failed saves are reported. */
  warn?: (message: string) => void;
  /** The relay clock's time (ms): stamps further ahead of it are refused. Default Date.now. */
  now?: () => number;
  /**
   * Writes waiting for the disk at most (beyond the batch being stored), in count and in record
   * bytes; past either, a write is refused with E_UNAVAILABLE. Default 4,096 and 64 MiB.
   */
  maxQueuedWrites?: number;
  maxQueuedBytes?: number;
  /** Writes stored by one append and fsync at most. Default 1,024. */
  maxBatch?: number;
  /** Where each write's outcome is counted (relay/metrics.ts). */
  metrics?: Pick<RelayMetrics, 'contextOp'>;
}

/** A write checked and waiting for the disk. */
interface Queued {
  op: ContextOp;
  record: Buffer;
  resolve(seq: number): void;
  reject(e: unknown): void;
}

/**
 * The context store a relay serves nodes and HTTP from: `openContext` (one relay, files) or
 * `openClusterContext` (relay/cluster/context.ts: relays sharing a Redis) — server.ts picks one.
 */
export interface RelayContext extends ContextStore {
  readonly replica: ContextReplica;
  /** The log position restored at start. */
  readonly restored: number;
  /** Bytes of ops per `ctx-catchup` frame. */
  readonly catchUpBytes: number;
  /**
   * Takes an operation from node `from` ('' for the relay's own HTTP API): checks it, stores it
   * durably, applies it. Answers its log sequence number when it changed the store (to fan
   * out), 0 when not (a duplicate, or an older write); throws what refuses it, E_UNAVAILABLE
   * when its storage did (nothing is acknowledged then).
   */
  accept(op: ContextOp, from: string): Promise<number>;
  /** Remembers the agreement key a node's identity signed for (checked by the caller). */
  bind(b: AgreementBinding): void;
  /** The bindings known for these identity keys. */
  agreements(keys: string[]): AgreementBinding[];
  /** A stamp for a write the relay makes itself (HTTP PUT/DELETE). */
  tick(): Stamp;
  /**
   * Why writes are refused now, when they are: until a restart (files: a failed write not undone),
   * or until Redis answers again (cluster).
   */
  failed(): string | undefined;
  /** The size of the log (bytes) and counts, for tests, readiness and the console. */
  files(): { log: number; generation: number; syncs: number; records: number };
  close(): Promise<void>;
}

/**
 * Throws what refuses a write from node `from` ('' for HTTP) whatever the store holds: a node
 * writing another's node-scoped key or a project/user key, a device-private value, a private value
 * in plaintext.
 */
export function checkWriter(op: ContextOp, from: string): void {
  if (op.scope === 'node' && op.owner !== from) {
    throw new InputError(`a node writes only its own node-scoped keys`);
  }
  if ((op.scope === 'project' || op.scope === 'user') && from !== '') {
    // Whose they are is the relay's to decide, from the principal of an HTTP request.
    throw new UnsupportedError(
      `scope: ${op.scope}-scoped keys are written over HTTP (PUT /api/context/:app/:key?scope=${op.scope}), not by nodes`,
    );
  }
  if (op.privacy?.includes('device')) {
    throw new InputError('a device-private value never leaves its device');
  }
  if (op.privacy && op.value) {
    throw new PrivacyError('a private value must arrive sealed, not in plaintext');
  }
}

const MiB = 1024 * 1024;
/** What one key costs on disk besides its value bytes (names, stamp, framing), roughly. */
const KEY_OVERHEAD = 160;

const parseOp = (payload: Uint8Array) =>
  contextOpSchema.parse(
    decode(payload, { ...snapshotLimits, maxBytes: payload.byteLength }),
  ) as ContextOp;
// Live state is bounded per app (4 MiB by default), not per relay: a snapshot may be large.
const snapshotLimits = {
  maxBytes: 2 ** 31 - 1,
  maxStrLength: 1024 * 1024,
  maxBinLength: 64 * MiB,
  maxArrayLength: 10_000_000,
  maxMapLength: 100_000,
};
const snapshotSchema = z.strictObject({
  v: z.literal(1),
  generation: z.number().int().nonnegative(),
  seq: z.number().int().nonnegative(),
  ops: z.array(contextOpSchema),
});

/**
 * TEST ONLY (tests/unit/context-crash.test.ts): `BRUME_TEST_HOLD_CONTEXT_FSYNC=N`: once N records
 * of the context log are stored, the next fsync is held for good, after its records were written,
 * and stderr says so, so that a test can kill -9 the relay between write and fsync.
 * Never set it on a relay that serves anyone: that relay stops acknowledging writes.
 */
const holdFsyncAfter = process.env.BRUME_TEST_HOLD_CONTEXT_FSYNC;

export async function openContext(
  dataDir: string,
  options: ContextOptions = {},
): Promise<RelayContext> {
  const warn = options.warn ?? ((m: string) => process.emitWarning(m));
  const floor = options.compactFloorBytes ?? MiB;
  const maxQueued = options.maxQueuedWrites ?? 4096;
  const maxQueuedBytes = options.maxQueuedBytes ?? 64 * MiB;
  const maxBatch = options.maxBatch ?? 1024;
  await mkdir(dataDir, { recursive: true });
  const path = join(dataDir, 'context.log');
  const snapshotPath = join(dataDir, 'context.snapshot');
  const replica = new ContextReplica(options.limits);
  const clock = new Clock('relay', options.now);
  await removeTemporaries(dataDir, ['context.log', 'context.snapshot', 'agreements.json']);

  const snapshot = await readDurable(
    snapshotPath,
    (b) => snapshotSchema.parse(decode(snapshotBody(b), snapshotLimits)),
    warn,
  ).catch(unreadable(snapshotPath));
  const bytes = await readLog(path);
  const tail = scanLog(bytes, parseOp);
  // A log older than the snapshot was folded into it before a crash cut the compaction short.
  const stale = tail.generation !== undefined && tail.generation < (snapshot?.generation ?? 0);
  let generation = Math.max(snapshot?.generation ?? 0, tail.generation ?? 0);
  const ops = [...(snapshot?.ops ?? []), ...(stale ? [] : tail.records)];
  for (const op of ops) {
    // A stamp from a clock that has since gone back is kept as it is: the store, not the clock.
    try {
      clock.receive(op.stamp);
    } catch {}
  }
  replica.restore(snapshot?.ops ?? [], snapshot?.seq ?? 0);
  if (!stale) for (const op of tail.records) replica.apply(op);
  if (tail.stop) {
    const aside = await moveAside(path);
    warn(
      `${path}: stopped at byte ${tail.good} at ${tail.stop}; kept the ${tail.records.length} records before it, the ${bytes.length - tail.good} bytes from there on were not replayed; the damaged file is now ${aside}`,
    );
  }
  const restored = replica.cursor;

  // The log is appended to through `file`; `size` is where its last good record ends.
  let file: Awaited<ReturnType<typeof open>> | undefined;
  let size = 0;
  let tailGeneration: number | undefined = tail.stop || stale ? undefined : tail.generation;
  /** Set when a failed write could not be cut back: nothing more is appended until a restart. */
  let broken: string | undefined;

  /** Makes sure the log on disk is a log of `generation`, open for appending. */
  async function ensureLog(): Promise<void> {
    if (file && tailGeneration === generation) return;
    await file?.close();
    file = undefined;
    if (tailGeneration !== generation) {
      await writeDurable(path, logHeader(generation));
      tailGeneration = generation;
      size = HEADER_BYTES;
    } else size = tail.good;
    file = await open(path, 'a');
  }

  /** Writes the live state as the snapshot of a new generation and starts an empty log. */
  async function compact(): Promise<void> {
    const next = generation + 1;
    const body = encode({ v: 1, generation: next, seq: replica.cursor, ops: replica.state() });
    await writeDurable(snapshotPath, snapshotBytes(body));
    generation = next; // the snapshot holds it all: the old log is not appended to again
    await ensureLog();
  }

  const live = () => {
    const s = replica.size();
    return s.bytes + s.keys * KEY_OVERHEAD;
  };

  // An old-format log, a damaged one or a stale one is replaced at once by a snapshot.
  if (tail.generation === undefined && tail.records.length) await compact();
  else if (tail.stop || stale) await compact();
  else await ensureLog();
  if (size > 2 * live() + floor) await compact();

  /**
   * Appends records and fsyncs once for all of them; on failure cuts the log back to its last
   * good record, so none of them is on disk.
   */
  async function append(records: Buffer[], what: string): Promise<void> {
    if (broken) throw new UnavailableError(broken);
    const refused = (e: unknown) =>
      new UnavailableError(
        `the relay could not store ${what} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message} writing ${path}); nothing was changed: try again later`,
        { cause: e },
      );
    await ensureLog().catch((e: unknown) => {
      throw refused(e);
    });
    const f = file!;
    const bytes = records.length === 1 ? records[0]! : Buffer.concat(records);
    try {
      for (let at = 0; at < bytes.length; ) {
        at += (await f.write(bytes, at, bytes.length - at)).bytesWritten;
      }
      await testHold(records.length);
      await f.datasync();
      syncs++;
      storedRecords += records.length;
      size += bytes.length;
    } catch (e) {
      try {
        await f.truncate(size);
        await f.datasync();
      } catch (t) {
        broken = `${path} could not be cut back to byte ${size} after a failed write (${(t as NodeJS.ErrnoException).code ?? t}): context writes are refused until the relay restarts`;
        warn(broken);
      }
      throw refused(e);
    }
  }

  /** The test-only hold (holdFsyncAfter): once N records are stored, no fsync comes. */
  function testHold(records: number): Promise<void> {
    if (holdFsyncAfter === undefined || storedRecords < Number(holdFsyncAfter)) {
      return Promise.resolve();
    }
    process.stderr.write(
      `BRUME_TEST_HOLD_CONTEXT_FSYNC: holding the fsync of ${path} after ${storedRecords} records, ${records} more written\n`,
    );
    return new Promise(() => undefined);
  }

  /**
   * Group commit: writes are checked as they arrive (against the store plus the writes queued
   * before them) and wait here; one append and one fsync store every write that arrived while
   * the previous fsync ran, then they are applied in arrival order and acknowledged. Nothing is
   * applied (so nothing is fanned out, caught up or read) before it is on disk.
   */
  const queue: Queued[] = [];
  let queuedBytes = 0;
  /** Checked and not applied: the queued writes and the batch being stored. */
  const staged: Staged = { entries: new Map(), bytes: new Map() };
  /** The writes queued or being stored, by operation id (a duplicate waits on the first). */
  const pending = new Map<string, Promise<number>>();
  let flushing: Promise<void> | undefined;
  let syncs = 0;
  let storedRecords = 0;

  async function flush(): Promise<void> {
    while (queue.length) {
      const batch = queue.splice(0, maxBatch);
      for (const q of batch) queuedBytes -= q.record.length;
      const what =
        batch.length === 1
          ? `${batch[0]!.op.app}/${batch[0]!.op.key}`
          : `${batch.length} writes (${batch[0]!.op.app}/${batch[0]!.op.key}, …)`;
      let stored = true;
      try {
        await append(
          batch.map((q) => q.record),
          what,
        );
      } catch (e) {
        stored = false;
        for (const q of batch) q.reject(e);
      }
      if (stored) {
        for (const q of batch) {
          try {
            clock.receive(q.op.stamp);
            const changed = replica.apply(q.op);
            if (changed && q.op.sealed && q.op.privacy) agreements.sealedFor(q.op.privacy);
            q.resolve(changed ? replica.cursor : 0);
          } catch (e) {
            q.reject(e); // stored, and replayed the same way at the next start
          }
        }
      }
      for (const q of batch) pending.delete(q.op.opId);
      // What is still staged is what is still queued.
      staged.entries.clear();
      staged.bytes.clear();
      for (const q of queue) replica.stage(q.op, staged);
      if (stored && size > 2 * live() + floor) {
        await compact().catch((e: unknown) =>
          warn(`context not compacted (the log goes on): ${(e as Error).message}`),
        );
      }
    }
    flushing = undefined;
  }

  const agreements = await openAgreements(join(dataDir, 'agreements.json'), {
    max: options.maxAgreements ?? 10_000,
    trusted: options.trusted ?? (() => false),
    sealedFor: () =>
      new Set(replica.state().flatMap((op) => (op.sealed ? (op.privacy ?? []) : []))),
    warn,
  });

  const store = {
    replica,
    /** The log position restored from disk at start. */
    restored,
    /** Bytes of ops per `ctx-catchup` frame. */
    catchUpBytes: options.catchUpBytes ?? defaultCatchUpBytes,
    /**
     * Takes an operation from node `from` ('' for the relay's own HTTP API): checks it, stores it
     * durably, applies it. Answers its log sequence number when it changed the store (to fan
     * out), 0 when not (a duplicate, or an older write); throws what refuses it, E_UNAVAILABLE
     * when the disk did (nothing changes then, in memory or on disk).
     */
    accept(op: ContextOp, from: string): Promise<number> {
      try {
        checkWriter(op, from);
        const first = pending.get(op.opId);
        if (first) return first.then(() => 0); // the same write again, still being stored
        if (replica.has(op.opId)) return Promise.resolve(0);
        if (broken) throw new UnavailableError(broken);
        const record = logRecord(encode(op));
        if (queue.length >= maxQueued || queuedBytes + record.length > maxQueuedBytes) {
          throw new UnavailableError(
            `the relay's context write queue is full (${queue.length} writes, ${queuedBytes} bytes waiting for the disk; limits ${maxQueued} writes, ${maxQueuedBytes} bytes): ${op.app}/${op.key} was not stored, try again later`,
          );
        }
        clock.check(op.stamp); // E_CLOCK before anything is written
        replica.check(op, staged);
        const done = new Promise<number>((resolve, reject) => {
          queue.push({ op, record, resolve, reject });
        });
        queuedBytes += record.length;
        pending.set(op.opId, done);
        flushing ??= flush();
        return done;
      } catch (e) {
        return Promise.reject(e);
      }
    },
    /** Remembers the agreement key a node's identity signed for (checked by the caller). */
    bind(b: AgreementBinding): void {
      agreements.bind(b);
    },
    /** The bindings known for these identity keys. */
    agreements: (keys: string[]) => agreements.lookup(keys),
    /** A stamp for a write the relay makes itself (HTTP PUT/DELETE). */
    tick: () => clock.tick(),
    /** Why writes are refused until a restart (a failed write not undone), when they are. */
    failed: () => broken,
    /** Bytes of the log and the snapshot on disk now, for tests and the console. */
    files: () => ({ log: size, generation, syncs, records: storedRecords }),
    close: async () => {
      await flushing;
      await agreements.flush();
      await file?.close();
      file = undefined;
    },
  };
  const { metrics } = options;
  if (!metrics) return store;
  return {
    ...store,
    accept: (op: ContextOp, from: string) => metrics.contextOp(from, store.accept(op, from)),
  };
}

/** The log's bytes; missing is empty, any other failure stops the start (it would lose data). */
function readLog(path: string): Promise<Buffer> {
  return readFile(path).catch((e: unknown) => {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return Buffer.alloc(0);
    return unreadable(path)(e);
  });
}

/** A start-up read that failed for another reason than a missing file: say which, and stop. */
function unreadable(path: string) {
  return (e: unknown): never => {
    throw new InternalError(
      `cannot read ${path} (${(e as Error).message}): the relay does not start without its context files; repair or move the file and start again`,
      { cause: e },
    );
  };
}
