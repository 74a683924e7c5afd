/**
 * The hub's logs (decisions, calls, events) shared by the relays of a cluster: one Redis Stream
 * per log, capped near the number of entries the admin API shows (`XADD … MAXLEN ~ SHOWN`), each
 * entry tagged with the relay that wrote it; GET /api/decisions (calls, events) at any relay reads
 * the newest of the whole cluster.
 *
 * A log must never slow or fail a call: `add` keeps the entry in this relay's memory (its
 * `recent` view) and queues it; a timer sends what waits in one pipeline. Redis keeps only the
 * newest SHOWN of a log, so of what waits only each log's newest SHOWN are sent: an older entry is
 * superseded (Redis would trim it at once), neither sent nor counted as dropped. A relay deciding
 * 10,000 times a second thus writes at most SHOWN entries a log per FLUSH_MS, not one per
 * decision. While Redis is away the entries wait, at most `maxPending` of them (all logs
 * together): beyond that the oldest are dropped, and so are those of a write that failed; each
 * drop is counted (`onDropped`, the relay's brume_log_entries_dropped_total). What is read back from Redis is hostile until checked:
 * an entry that is not valid JSON of its log's shape, or too large, is skipped (warned, counted).
 * @example const logs = redisLogs(redis, { relayId, warn });
 *          createHub({ …, logs });
 */
import { z } from 'zod';
import { InternalError } from '../../core/errors';
import {
  type LogEntries,
  type LogKind,
  type LogStore,
  logKinds,
  memoryLogs,
  SHOWN,
} from '../hub/log-store';
import type { RedisLink } from './redis';

/**
 * Entries waiting to be sent at most, all logs together (default): beyond, the oldest drop. Each
 * log waits with at most its newest SHOWN (older ones are superseded), so by default nothing is
 * dropped while Redis answers, however fast entries come.
 */
export const MAX_PENDING = SHOWN * logKinds.length;
/**
 * How often waiting entries are sent to Redis (one pipeline for all): the delay before another
 * relay lists an entry, and with SHOWN the bound on this relay's log writes to Redis.
 */
export const FLUSH_MS = 1000;
/** An entry's JSON at most, in bytes: a larger one is neither written nor read. */
export const MAX_ENTRY_BYTES = 16 * 1024;
/** Warnings of one kind (skipped entries, writes failing) at most once in this long. */
const WARN_EVERY_MS = 60_000;
/** The stream entry's one field: the entry's JSON. */
const FIELD = 'e';

const text = z.string().max(MAX_ENTRY_BYTES);
const id = z.string().max(256);
const at = z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER);
const ms = z.number().nonnegative().max(Number.MAX_SAFE_INTEGER);
const relay = z.string().min(1).max(64);

/**
 * Each log's entries as read back: the shapes of core/api.ts, with the relay that wrote them
 * (fields unknown here, written by a newer relay, are left out rather than the entry skipped).
 */
const schemas: { [K in LogKind]: z.ZodType<LogEntries[K]> } = {
  decisions: z.object({
    at,
    app: id,
    service: id,
    qos: z.object({
      latencyMs: ms.optional(),
      accuracy: z.number().min(0).max(1).optional(),
      privacy: id.optional(),
      verify: z.boolean().optional(),
      version: id.optional(),
    }),
    caller: id,
    node: id.optional(),
    rpc: id.optional(),
    estimateMs: ms.optional(),
    reason: text,
    ok: z.boolean(),
    relay,
  }),
  calls: z.object({
    at,
    app: id,
    service: id,
    variant: id,
    node: id,
    ms,
    ok: z.boolean(),
    quality: z.number().int().nonnegative().max(1000).optional(),
    stages: z
      .array(z.object({ stage: id, nodes: z.array(id).max(1000) }))
      .max(1000)
      .optional(),
    relay,
  }),
  events: z.object({
    at,
    kind: z.enum([
      'joined',
      'left',
      'evicted',
      'refused',
      'closed',
      'quarantined',
      'released',
      'disagreed',
    ]),
    node: id.optional(),
    detail: text,
    relay,
  }),
};

export interface RedisLogsOptions {
  /** This relay's id in the cluster: the `relay` of every entry it writes. */
  relayId: string;
  warn: (message: string) => void;
  /** Entries waiting for Redis at most (default MAX_PENDING). */
  maxPending?: number;
}

/** The logs in Redis Streams `<prefix>logs:<kind>`, read by every relay sharing that Redis. */
export function redisLogs(redis: RedisLink, o: RedisLogsOptions): LogStore {
  const own = memoryLogs();
  const maxPending = o.maxPending ?? MAX_PENDING;
  const key = (kind: LogKind) => redis.key('logs', kind);
  /** What waits to be sent, per log, oldest first; `seq` orders entries across the logs. */
  const pending = Object.fromEntries(logKinds.map((k) => [k, []])) as unknown as {
    [K in LogKind]: { seq: number; entry: LogEntries[K] }[];
  };
  let waiting = 0;
  let seq = 0;
  const droppedFns = new Set<(kind: LogKind, n: number) => void>();
  const lastWarned = new Map<string, number>();
  let sending: Promise<void> | undefined;
  let closed = false;
  /** Warns `message` unless a warning about `about` was given less than WARN_EVERY_MS ago. */
  const warnNow = (about: string, message: string) => {
    const now = Date.now();
    if (now - (lastWarned.get(about) ?? -Infinity) < WARN_EVERY_MS) return;
    lastWarned.set(about, now);
    o.warn(message);
  };
  const dropped = (kind: LogKind, n = 1) => {
    for (const fn of droppedFns) fn(kind, n);
  };

  /** Takes what waits: each log's entries as JSON (too large ones dropped, counted). */
  const take = (): { kind: LogKind; json: string }[] => {
    const batch: { kind: LogKind; json: string }[] = [];
    for (const kind of logKinds) {
      for (const { entry } of pending[kind].splice(0)) {
        const json = JSON.stringify({ ...entry, relay: o.relayId });
        if (Buffer.byteLength(json) <= MAX_ENTRY_BYTES) batch.push({ kind, json });
        else {
          warnNow(
            'large',
            `cluster: a ${kind} log entry over ${MAX_ENTRY_BYTES} bytes was dropped`,
          );
          dropped(kind);
        }
      }
    }
    waiting = 0;
    return batch;
  };

  /** Sends what waits, in one pipeline; nothing while a send is in flight or Redis is away. */
  const flush = (): Promise<void> => {
    if (sending || waiting === 0 || redis.client.status !== 'ready') {
      return sending ?? Promise.resolve();
    }
    const batch = take();
    const sent = redis
      .run('write the logs', (c) => {
        const p = c.pipeline();
        for (const e of batch) p.xadd(key(e.kind), 'MAXLEN', '~', SHOWN, '*', FIELD, e.json);
        return p.exec();
      })
      .then(
        (replies) => {
          // A pipeline answers each command: one that failed (refused: not a stream there; or
          // the link dropped) is one entry dropped.
          (replies ?? []).forEach(([error], i) => {
            const kind = batch[i]?.kind;
            if (!error || !kind) return;
            dropped(kind);
            warnNow(
              'refused',
              `cluster: a ${kind} log entry was not kept in Redis: ${error.message}`,
            );
          });
        },
        (e: Error) => {
          for (const kind of logKinds) {
            const n = batch.filter((b) => b.kind === kind).length;
            if (n > 0) dropped(kind, n);
          }
          warnNow('write', `cluster: ${batch.length} log entries were dropped: ${e.message}`);
        },
      )
      .finally(() => {
        sending = undefined;
      });
    sending = sent;
    return sent;
  };
  const timer = setInterval(() => void flush(), FLUSH_MS);
  timer.unref();

  return {
    add(kind, entry) {
      own.add(kind, entry);
      if (closed) return;
      const list = pending[kind] as { seq: number; entry: typeof entry }[];
      list.push({ seq: seq++, entry });
      waiting++;
      // Superseded: Redis keeps a log's newest SHOWN, so an older entry would be trimmed at once.
      if (list.length > SHOWN) {
        list.shift();
        waiting--;
      }
      if (waiting > maxPending) {
        // The oldest waiting entry of all the logs is dropped.
        let oldest: LogKind | undefined;
        for (const k of logKinds) {
          const head = pending[k][0];
          if (head && (oldest === undefined || head.seq < pending[oldest][0]!.seq)) oldest = k;
        }
        if (oldest) {
          pending[oldest].shift();
          waiting--;
          dropped(oldest);
        }
      }
    },
    recent: own.recent,
    async list<K extends LogKind>(kind: K): Promise<LogEntries[K][]> {
      const raw = await redis.run(`read the ${kind} log`, (c) =>
        c.xrevrange(key(kind), '+', '-', 'COUNT', SHOWN),
      );
      const { entries, skipped } = parseEntries(raw, schemas[kind]);
      if (skipped > 0) {
        warnNow(
          `skipped:${kind}`,
          `cluster: ${skipped} entries of the ${kind} log in Redis are not valid and were skipped`,
        );
      }
      // Newest first from Redis; shown oldest first, in the order they happened at their relays.
      return entries.reverse().sort((x, y) => x.at - y.at);
    },
    onDropped(fn) {
      droppedFns.add(fn);
    },
    async close() {
      if (closed) return;
      closed = true;
      clearInterval(timer);
      // Best effort: what waits is sent once more (after a send in flight); then it is dropped.
      await sending;
      await flush();
      for (const kind of logKinds) {
        const n = pending[kind].splice(0).length;
        if (n > 0) dropped(kind, n);
      }
      waiting = 0;
    },
  };
}

/** Stream entries (XRANGE's reply) checked one by one: those not of `schema`'s shape skipped. */
export function parseEntries<T>(
  raw: unknown,
  schema: z.ZodType<T>,
): { entries: T[]; skipped: number } {
  if (!Array.isArray(raw)) {
    throw new InternalError('Redis answered a log read with something that is not a list');
  }
  const entries: T[] = [];
  let skipped = 0;
  for (const item of raw.slice(0, SHOWN)) {
    const entry = parseEntry(item, schema);
    if (entry === undefined) skipped++;
    else entries.push(entry);
  }
  return { entries, skipped };
}

function parseEntry<T>(item: unknown, schema: z.ZodType<T>): T | undefined {
  if (!Array.isArray(item) || !Array.isArray(item[1])) return undefined;
  const fields = item[1] as unknown[];
  const at = fields.findIndex((f, i) => i % 2 === 0 && f === FIELD);
  const json = at >= 0 ? fields[at + 1] : undefined;
  if (typeof json !== 'string' || Buffer.byteLength(json) > MAX_ENTRY_BYTES) return undefined;
  try {
    const r = schema.safeParse(JSON.parse(json));
    return r.success ? r.data : undefined;
  } catch {
    return undefined;
  }
}
