/**
 * The relay's copy of the context store, durable: every operation it acknowledges is appended to
 * `<data>/context.log` (with a checksum) and fsynced first, so a relay killed at any moment loses
 * nothing it acknowledged. When the log outgrows the live state (twice its size plus a floor) the
 * live state is written to `context.snapshot` and the log starts again empty, so the files stay
 * O(live data) however often keys are rewritten. At start: the snapshot, then the log, up to its
 * last good record (byte format: `relay/context-log.ts`).
 * @example const ctx = await openContext('.brume'); if (await ctx.accept(op, nodeId)) fanOut(op);
 */
import { mkdir, open, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { decode, encode } from '../core/codec';
import { Clock } from '../core/context/hlc';
import {
  type ContextLimits,
  type ContextOp,
  ContextReplica,
  defaultCatchUpBytes,
} from '../core/context/replica';
import { InputError, InternalError, PrivacyError, UnavailableError } from '../core/errors';
import { type AgreementBinding, contextOpSchema } from '../core/protocol';
import { serial } from '../core/serial';
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
}

export type RelayContext = Awaited<ReturnType<typeof openContext>>;

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

export async function openContext(dataDir: string, options: ContextOptions = {}) {
  const warn = options.warn ?? ((m: string) => process.emitWarning(m));
  const floor = options.compactFloorBytes ?? MiB;
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

  /** Appends one record and fsyncs; on failure cuts the log back to its last good record. */
  async function append(record: Buffer, what: string): Promise<void> {
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
    try {
      for (let at = 0; at < record.length; ) {
        at += (await f.write(record, at, record.length - at)).bytesWritten;
      }
      await f.datasync();
      size += record.length;
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

  // Writes one at a time, in arrival order: each is checked against the store as it is then.
  const oneAtATime = serial();
  const agreements = await openAgreements(join(dataDir, 'agreements.json'), {
    max: options.maxAgreements ?? 10_000,
    trusted: options.trusted ?? (() => false),
    sealedFor: () =>
      new Set(replica.state().flatMap((op) => (op.sealed ? (op.privacy ?? []) : []))),
    warn,
  });

  return {
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
      return oneAtATime(async () => {
        if (op.scope === 'node' && op.owner !== from) {
          throw new InputError(`a node writes only its own node-scoped keys`);
        }
        if (op.privacy?.includes('device')) {
          throw new InputError('a device-private value never leaves its device');
        }
        if (op.privacy && op.value) {
          throw new PrivacyError('a private value must arrive sealed, not in plaintext');
        }
        if (replica.has(op.opId)) return 0;
        replica.check(op);
        clock.check(op.stamp); // E_CLOCK before anything is written
        await append(logRecord(encode(op)), `${op.app}/${op.key}`);
        clock.receive(op.stamp);
        const changed = replica.apply(op);
        if (changed && op.sealed && op.privacy) agreements.sealedFor(op.privacy);
        if (size > 2 * live() + floor) {
          await compact().catch((e: unknown) =>
            warn(`context not compacted (the log goes on): ${(e as Error).message}`),
          );
        }
        return changed ? replica.cursor : 0;
      });
    },
    /** Remembers the agreement key a node's identity signed for (checked by the caller). */
    bind(b: AgreementBinding): void {
      agreements.bind(b);
    },
    /** The bindings known for these identity keys. */
    agreements: (keys: string[]) => agreements.lookup(keys),
    /** A stamp for a write the relay makes itself (HTTP PUT/DELETE). */
    tick: () => clock.tick(),
    /** Bytes of the log and the snapshot on disk now, for tests and the console. */
    files: () => ({ log: size, generation }),
    close: async () => {
      await oneAtATime(async () => undefined);
      await agreements.flush();
      await file?.close();
      file = undefined;
    },
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
