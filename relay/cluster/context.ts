/**
 * The context store of relays sharing a Redis (issue 17), in place of relay/context.ts's files:
 * the log is a Redis Stream every relay appends to and every relay reads (formats:
 * relay/cluster/context-stream.ts). A write is checked against this relay's replica, added to the
 * stream by a script that also takes the next cluster-wide position (`ctx:seq`), and acknowledged
 * only once Redis answered (with `appendfsync always`: on disk) and this relay's reader applied it
 * in stream order. Every relay applies every entry in the same order at the same position, so a
 * node's cursor means the same on every relay: one that moves to another relay catches up from
 * it, nothing lost, nothing twice. Changes other relays added go to `onRemote` listeners (the
 * hub fans them out to this relay's nodes).
 *
 * Start: the snapshot (`ctx:snapshot`, at a stream position), then the stream after it. Once the
 * stream holds more than `compactEntries` entries, one relay at a time (a lock) writes its state
 * as the snapshot and trims the stream up to it. Redis unreachable: writes are refused with
 * E_UNAVAILABLE naming Redis, reads are served from the replica, and the reader resumes from its
 * position once Redis is back. Garbage in the stream is skipped with a warning.
 * @example const ctx = await openClusterContext(link, { relayId });
 *          ctx.onRemote((op, seq) => hub.publish(op, seq));
 */
import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import { encode } from '../../core/codec';
import { Clock } from '../../core/context/hlc';
import { type ContextOp, ContextReplica, entryId, type Staged } from '../../core/context/replica';
import { InputError, InternalError, UnavailableError } from '../../core/errors';
import { type AgreementBinding, contextOpSchema } from '../../core/protocol';
import { type ContextOptions, checkWriter, type RelayContext } from '../context';
import {
  AgreementCache,
  APPEND_SCRIPT,
  after,
  type Entry,
  nextId,
  type Position,
  parseBinding,
  parseEntry,
  parseOp,
  parsePosition,
  replyEntries,
  showId,
  showPosition,
  UNLOCK_SCRIPT,
} from './context-stream';
import type { RedisLink } from './redis';

export interface ClusterContextOptions extends ContextOptions {
  /** This relay's id: its entries say so, and its reader knows its own writes. */
  relayId: string;
  /** Stream entries past which a relay compacts (snapshot, then trim). Default 10,000. */
  compactEntries?: number;
  /** Entries per XREAD. Default 1,000. */
  readBatch?: number;
  /** How long one XREAD waits for new entries (under the link's command timeout). Default 2 s. */
  blockMs?: number;
  /** A write stored in Redis but not applied here this long is answered E_UNAVAILABLE. Default 30 s. */
  applyTimeoutMs?: number;
}

export interface ClusterContext extends RelayContext {
  /** Calls `listener` with each change another relay added, once applied here, in log order. */
  onRemote(listener: (op: ContextOp, seq: number) => void): () => void;
  /** The stream position this relay has applied up to. */
  position(): Position;
  /** Writes the snapshot and trims the stream if this relay holds the lock; true if it did. */
  compact(): Promise<boolean>;
}

/** How long the compaction lock holds when its holder dies mid-compaction. */
const LOCK_MS = 60_000;
/** Ops per HSET when writing the snapshot. */
const SNAPSHOT_CHUNK = 500;
/** The longest wait between two reads while Redis is unreachable. */
const MAX_RETRY_MS = 2000;

type Appender = Redis & {
  brumeContextAppend(log: string, seq: string, op: Buffer, from: string): Promise<[string, number]>;
};

interface Waiter {
  resolve(seq: number): void;
  reject(e: unknown): void;
  timer?: NodeJS.Timeout;
}

export async function openClusterContext(
  link: RedisLink,
  options: ClusterContextOptions,
): Promise<ClusterContext> {
  const warn = options.warn ?? ((m: string) => process.emitWarning(m));
  const relayId = options.relayId;
  const compactEntries = options.compactEntries ?? 10_000;
  const readBatch = options.readBatch ?? 1000;
  const blockMs = options.blockMs ?? 2000;
  const applyTimeoutMs = options.applyTimeoutMs ?? 30_000;
  const maxQueued = options.maxQueuedWrites ?? 4096;
  const maxQueuedBytes = options.maxQueuedBytes ?? 64 * 1024 * 1024;
  const keys = {
    log: link.key('ctx', 'log'),
    seq: link.key('ctx', 'seq'),
    snapshot: link.key('ctx', 'snapshot'),
    at: link.key('ctx', 'snapshot', 'at'),
    agreements: link.key('ctx', 'agreements'),
    lock: link.key('ctx', 'compact-lock'),
  };
  link.client.defineCommand('brumeContextAppend', { numberOfKeys: 2, lua: APPEND_SCRIPT });
  const clock = new Clock('relay', options.now);
  const agreements = new AgreementCache(options.maxAgreements ?? 10_000);
  const listeners = new Set<(op: ContextOp, seq: number) => void>();

  let replica: ContextReplica;
  /** The last stream entry applied (read) here. */
  let lastId: Position['id'] = [0, 0];
  let restored = 0;
  /** Entries and bytes read since the snapshot this relay started or compacted from. */
  let sinceSnapshot = { entries: 0, bytes: 0 };
  let generation = 0;
  let stored = 0;
  /** This relay's writes sent or waiting for its reader, by operation id. */
  const waiters = new Map<string, Waiter>();
  let compacting: Promise<boolean> | undefined;
  let readSinceCheck = 0;
  let closed = false;
  /** Why the reader cannot read now, while it cannot. */
  let down: string | undefined;

  /** Loads the snapshot into a new replica (start, or a reader that fell behind a trim). */
  async function load(): Promise<void> {
    const [at, snap, agreed] = await link.run('context snapshot read', async (c) => {
      const r = await c
        .multi()
        .getBuffer(keys.at)
        .hgetallBuffer(keys.snapshot)
        .hgetallBuffer(keys.agreements)
        .exec();
      for (const [e] of r ?? []) if (e) throw e;
      return (r ?? []).map(([, v]) => v) as [
        Buffer | null,
        Record<string, Buffer>,
        Record<string, Buffer>,
      ];
    });
    let position: Position | undefined;
    try {
      position = parsePosition(at, keys.at);
    } catch (e) {
      throw new InternalError(
        `${(e as Error).message}: the cluster context cannot start from it; repair or delete it (with ${keys.snapshot}) and start again`,
      );
    }
    const ops: ContextOp[] = [];
    let bad = 0;
    for (const bytes of Object.values(snap ?? {})) {
      try {
        ops.push(parseOp(bytes));
      } catch {
        bad++;
      }
    }
    if (bad) warn(`${keys.snapshot}: ${bad} fields that are not context ops were skipped`);
    for (const bytes of Object.values(agreed ?? {})) {
      try {
        agreements.set(parseBinding(bytes));
      } catch {}
    }
    for (const op of ops) {
      try {
        clock.receive(op.stamp);
      } catch {}
    }
    replica = new ContextReplica(options.limits);
    replica.restore(ops, position?.seq ?? 0);
    lastId = position?.id ?? [0, 0];
    sinceSnapshot = { entries: 0, bytes: 0 };
  }

  /**
   * Applies one entry in stream order. Answers true when it answered one of this relay's writes
   * (its caller fans it out: the reader lets it do so before the next entry).
   */
  function applyEntry(e: Entry): boolean {
    lastId = e.id;
    sinceSnapshot.entries++;
    sinceSnapshot.bytes += e.bytes;
    if ('problem' in e) {
      warn(`${keys.log}: entry ${showId(e.id)} skipped: ${e.problem}`);
      return false;
    }
    if ('bind' in e) {
      agreements.set(e.bind);
      return false;
    }
    if (e.seq <= replica.cursor) return false; // applied already (a seq never comes twice)
    try {
      clock.receive(e.op.stamp);
    } catch {}
    const changed = replica.apply(e.op, e.seq);
    const w = e.from === relayId ? waiters.get(e.op.opId) : undefined;
    if (w) {
      waiters.delete(e.op.opId);
      clearTimeout(w.timer);
      w.resolve(changed ? e.seq : 0);
      return true;
    }
    if (changed) {
      for (const l of listeners) {
        try {
          l(e.op, e.seq);
        } catch (err) {
          warn(`a context listener failed: ${(err as Error).message}`);
        }
      }
    }
    return false;
  }

  /** Reads and applies what the stream holds after `lastId`; how many entries it read. */
  async function readOnce(c: Redis, block: boolean): Promise<number> {
    const args = ['COUNT', readBatch, ...(block ? ['BLOCK', blockMs] : []), 'STREAMS'];
    const reply = await c.callBuffer('XREAD', ...args, keys.log, showId(lastId));
    const raw = replyEntries(reply);
    for (const r of raw) {
      const e = parseEntry(r);
      if (!e) {
        warn(`${keys.log}: an XREAD reply entry that is not [id, fields] was skipped`);
        continue;
      }
      if (!after(e.id, lastId)) continue;
      if ('seq' in e && e.seq > replica.cursor + 1 && (await trimmedPast())) return raw.length;
      // Let the writer this entry answers fan it out before any later entry goes out.
      if (applyEntry(e)) await new Promise((r) => setImmediate(r));
    }
    maybeCompact(raw.length);
    return raw.length;
  }

  /**
   * Positions skipped: if the snapshot is past what this relay applied, the entries between were
   * trimmed before it read them: it starts again from the snapshot (true). Else a write whose
   * position was taken but not added (a failed script): nothing is missing.
   */
  async function trimmedPast(): Promise<boolean> {
    const at = await link.run('context snapshot position', (c) => c.getBuffer(keys.at));
    const p = parsePosition(at, keys.at);
    if (!p || p.seq <= replica.cursor) return false;
    warn(
      `context: this relay read up to ${replica.cursor}, and the stream was compacted up to ${p.seq} meanwhile: it starts again from the snapshot`,
    );
    await load();
    generation++;
    return true;
  }

  // Start: the snapshot, then the stream up to its end, before anything is served.
  await load();
  for (let more = true; more; ) {
    more = (await link.run('context log read', (c) => readOnce(c, false))) === readBatch;
  }
  restored = replica!.cursor;

  /** The reader: its own connection, blocked on the stream, resuming from `lastId` after outages. */
  const reader = link.duplicate();
  async function readLoop(): Promise<void> {
    for (let failures = 0; !closed; ) {
      try {
        if (reader.status === 'wait') await reader.connect();
        await readOnce(reader, true);
        if (down) warn(`context: reading ${keys.log} again after: ${down}`);
        down = undefined;
        failures = 0;
      } catch (e) {
        if (closed) return;
        const message = (e as Error).message;
        if (!down) warn(`context: cannot read ${keys.log} at ${link.location}: ${message}`);
        down = `Redis at ${link.location} is unreachable: ${message}`;
        // A retry backoff while Redis is away, not a barrier.
        const wait = Math.min(100 * 2 ** failures++, MAX_RETRY_MS);
        await new Promise((r) => setTimeout(r, wait).unref());
      }
    }
  }
  const reading = readLoop();

  function maybeCompact(read: number): void {
    readSinceCheck += read;
    if (readSinceCheck < compactEntries || compacting) return;
    readSinceCheck = 0;
    compacting = link
      .run('context log length', (c) => c.xlen(keys.log))
      .then((n) => (n > compactEntries ? compact() : false))
      .catch((e: unknown) => {
        warn(`context not compacted (the stream goes on): ${(e as Error).message}`);
        return false;
      })
      .finally(() => {
        compacting = undefined;
      });
  }

  async function compact(): Promise<boolean> {
    const token = `${relayId}:${randomUUID()}`;
    const got = await link.run('context compaction lock', (c) =>
      c.set(keys.lock, token, 'PX', LOCK_MS, 'NX'),
    );
    if (got !== 'OK') return false;
    try {
      // State and position taken together, between two entries.
      const at: Position = { id: lastId, seq: replica.cursor };
      const fields = replica.state().map((op) => [entryId(op), Buffer.from(encode(op))] as const);
      const bound = agreements.all().map((b) => [b.publicKey, Buffer.from(encode(b))] as const);
      const current = parsePosition(
        await link.run('context snapshot position', (c) => c.getBuffer(keys.at)),
        keys.at,
      );
      if (current && !after(at.id, current.id)) return false; // never go back
      await link.run('context compaction', async (c) => {
        const m = c.multi().del(keys.snapshot).del(keys.agreements);
        for (let i = 0; i < fields.length; i += SNAPSHOT_CHUNK) {
          m.hset(keys.snapshot, ...fields.slice(i, i + SNAPSHOT_CHUNK).flat());
        }
        for (let i = 0; i < bound.length; i += SNAPSHOT_CHUNK) {
          m.hset(keys.agreements, ...bound.slice(i, i + SNAPSHOT_CHUNK).flat());
        }
        m.set(keys.at, showPosition(at)).xtrim(keys.log, 'MINID', nextId(at.id));
        const r = await m.exec();
        for (const [e] of r ?? []) if (e) throw e;
      });
      if (!after(lastId, at.id)) sinceSnapshot = { entries: 0, bytes: 0 };
      generation++;
      return true;
    } finally {
      await link
        .run('context compaction unlock', (c) => c.eval(UNLOCK_SCRIPT, 1, keys.lock, token))
        .catch(() => undefined); // it expires by itself
    }
  }

  const inflight = new Map<string, { op: ContextOp; bytes: number }>();
  let inflightBytes = 0;
  const staged: Staged = { entries: new Map(), bytes: new Map() };
  const pending = new Map<string, Promise<number>>();

  async function write(op: ContextOp, payload: Buffer): Promise<number> {
    const applied = new Promise<number>((resolve, reject) => {
      waiters.set(op.opId, { resolve, reject });
    });
    try {
      await link.run(`context write ${op.app}/${op.key}`, (c) =>
        (c as Appender).brumeContextAppend(keys.log, keys.seq, payload, relayId),
      );
    } catch (e) {
      waiters.delete(op.opId);
      throw e;
    }
    stored++;
    const w = waiters.get(op.opId);
    if (w) {
      w.timer = setTimeout(() => {
        waiters.delete(op.opId);
        w.reject(
          new UnavailableError(
            `${op.app}/${op.key} is stored in Redis at ${link.location} but this relay has not read it back within ${applyTimeoutMs} ms; sending it again is safe`,
          ),
        );
      }, applyTimeoutMs);
      w.timer.unref();
    }
    return applied;
  }

  /** Forgets a finished write; what is still staged is what is still in flight. */
  function settle(op: ContextOp): void {
    const f = inflight.get(op.opId);
    if (f) inflightBytes -= f.bytes;
    inflight.delete(op.opId);
    pending.delete(op.opId);
    staged.entries.clear();
    staged.bytes.clear();
    for (const q of inflight.values()) replica.stage(q.op, staged);
  }

  function accept(op: ContextOp, from: string): Promise<number> {
    try {
      checkWriter(op, from);
      // What goes into the stream must read back: every relay parses it there.
      const shape = contextOpSchema.safeParse(op);
      if (!shape.success) {
        throw new InputError(
          `op: not a context operation (${shape.error.issues[0]?.path.join('.')}: ${shape.error.issues[0]?.message})`,
        );
      }
      const first = pending.get(op.opId);
      if (first) return first.then(() => 0); // the same write again, still being stored
      if (replica.has(op.opId)) return Promise.resolve(0);
      if (closed) throw new UnavailableError('the relay is closing: context writes are refused');
      const payload = Buffer.from(encode(op));
      if (inflight.size >= maxQueued || inflightBytes + payload.length > maxQueuedBytes) {
        throw new UnavailableError(
          `the relay's context writes to Redis are full (${inflight.size} writes, ${inflightBytes} bytes in flight; limits ${maxQueued} writes, ${maxQueuedBytes} bytes): ${op.app}/${op.key} was not stored, try again later`,
        );
      }
      clock.check(op.stamp); // E_CLOCK before anything is written
      replica.check(op, staged);
      inflight.set(op.opId, { op, bytes: payload.length });
      inflightBytes += payload.length;
      const done = write(op, payload);
      pending.set(op.opId, done);
      done.then(
        () => settle(op),
        () => settle(op),
      );
      return done;
    } catch (e) {
      return Promise.reject(e);
    }
  }

  const store: ClusterContext = {
    get replica() {
      return replica;
    },
    restored,
    catchUpBytes: options.catchUpBytes ?? 4 * 1024 * 1024,
    accept: options.metrics
      ? (op, from) => options.metrics!.contextOp(from, accept(op, from))
      : accept,
    bind(b: AgreementBinding): void {
      if (!agreements.set(b)) return;
      const payload = Buffer.from(encode(b));
      link
        .run('context agreement key', (c) =>
          c.xadd(keys.log, '*', 'from', relayId, 'bind', payload),
        )
        .catch((e: unknown) =>
          warn(
            `the agreement key of ${b.publicKey.slice(0, 24)}… is known to this relay only: ${(e as Error).message}`,
          ),
        );
    },
    agreements: (k: string[]) => agreements.lookup(k),
    tick: () => clock.tick(),
    failed: () => down,
    files: () => ({
      log: sinceSnapshot.bytes,
      generation,
      syncs: stored,
      records: sinceSnapshot.entries,
    }),
    onRemote(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    position: () => ({ id: lastId, seq: replica.cursor }),
    compact,
    async close() {
      if (closed) return;
      closed = true;
      reader.disconnect();
      await reading;
      await compacting;
      for (const [id, w] of waiters) {
        clearTimeout(w.timer);
        w.reject(new UnavailableError('the relay closed before its context write was read back'));
        waiters.delete(id);
      }
    },
  };
  return store;
}
