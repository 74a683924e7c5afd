/**
 * The shapes the cluster context (relay/cluster/context.ts) keeps in Redis, and their checks:
 * everything read back from Redis is hostile until it passes here. The log is a Stream
 * (`ctx:log`); each entry is one write, fields `seq` (the cluster-wide position, from the
 * counter `ctx:seq` a script increments with the XADD), `from` (the relay that added it), `op`
 * (the operation as MessagePack), or instead of `seq`/`op` a `bind` (an agreement binding a node
 * joined with). The snapshot is the hash `ctx:snapshot` (one field per key, the winning op as
 * MessagePack) with its position in `ctx:snapshot:at` ("<stream id> <seq>"); the agreement keys
 * are the hash `ctx:agreements` (identity key → binding as MessagePack).
 * @example const e = parseEntry(raw); if ('op' in e) replica.apply(e.op, e.seq);
 */
import { z } from 'zod';
import { type DecodeLimits, decode } from '../../core/codec';
import type { ContextOp } from '../../core/context/replica';
import { type AgreementBinding, agreementSchema, contextOpSchema } from '../../core/protocol';

/** Adds one write to the log with the next position; answers [stream id, seq]. */
export const APPEND_SCRIPT = `
local seq = redis.call('INCR', KEYS[2])
local id = redis.call('XADD', KEYS[1], '*', 'seq', seq, 'from', ARGV[2], 'op', ARGV[1])
return {id, seq}`;

/** Deletes the compaction lock only if it is still the holder's (`token`). */
export const UNLOCK_SCRIPT = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`;

/** One op in a log entry or the snapshot: live state is bounded per app, so one op is small. */
const opLimits: DecodeLimits = {
  maxBytes: 2 * 1024 * 1024,
  maxStrLength: 64 * 1024,
  maxBinLength: 2 * 1024 * 1024,
  maxArrayLength: 1000,
  maxMapLength: 64,
};

/** A stream entry id, `<ms>-<n>`. */
const STREAM_ID = /^(\d{1,16})-(\d{1,16})$/;

export type StreamId = readonly [number, number];

export function parseId(id: string): StreamId | undefined {
  const m = STREAM_ID.exec(id);
  if (!m) return undefined;
  const r = [Number(m[1]), Number(m[2])] as const;
  return Number.isSafeInteger(r[0]) && Number.isSafeInteger(r[1]) ? r : undefined;
}

/** Whether stream id `a` comes after `b`. */
export function after(a: StreamId, b: StreamId): boolean {
  return a[0] > b[0] || (a[0] === b[0] && a[1] > b[1]);
}

export const showId = (id: StreamId) => `${id[0]}-${id[1]}`;
/** The smallest id after `id` (XTRIM MINID keeps ids from it on). */
export const nextId = (id: StreamId) => `${id[0]}-${id[1] + 1}`;

/** The snapshot's position: after which stream entry, at which seq. */
export interface Position {
  id: StreamId;
  seq: number;
}

/** `ctx:snapshot:at`; undefined when absent; throws naming the key when it is not a position. */
export function parsePosition(raw: Buffer | null, key: string): Position | undefined {
  if (raw === null) return undefined;
  const m = /^(\d{1,16}-\d{1,16}) (\d{1,16})$/.exec(raw.toString('latin1'));
  const id = m && parseId(m[1]!);
  const seq = m ? Number(m[2]) : Number.NaN;
  if (!id || !Number.isSafeInteger(seq)) {
    throw new Error(`${key} holds ${raw.length} bytes that are not "<stream id> <seq>"`);
  }
  return { id, seq };
}

export const showPosition = (p: Position) => `${showId(p.id)} ${p.seq}`;

export function parseOp(bytes: Buffer): ContextOp {
  return contextOpSchema.parse(decode(bytes, opLimits)) as ContextOp;
}

export function parseBinding(bytes: Buffer): AgreementBinding {
  return agreementSchema.parse(decode(bytes, opLimits));
}

/** One stream entry, checked: a write, a binding, or garbage (`problem` says what is wrong). */
export type Entry = { id: StreamId; bytes: number } & (
  | { seq: number; from: string; op: ContextOp }
  | { from: string; bind: AgreementBinding }
  | { problem: string }
);

const fieldsSchema = z.array(z.instanceof(Buffer)).max(16);

/** An XREAD reply entry `[id, [field, value, ...]]` as Buffers; anything else is garbage. */
export function parseEntry(raw: unknown): Entry | undefined {
  if (!Array.isArray(raw) || raw.length !== 2 || !Buffer.isBuffer(raw[0])) return undefined;
  const id = parseId(raw[0].toString('latin1'));
  if (!id) return undefined;
  const fields = fieldsSchema.safeParse(raw[1]);
  if (!fields.success) return { id, bytes: 0, problem: 'its fields are not a list of strings' };
  const f = new Map<string, Buffer>();
  let bytes = 0;
  for (let i = 0; i + 1 < fields.data.length; i += 2) {
    f.set(fields.data[i]!.toString('latin1'), fields.data[i + 1]!);
    bytes += fields.data[i]!.length + fields.data[i + 1]!.length;
  }
  const from = f.get('from')?.toString('utf8').slice(0, 200) ?? '';
  try {
    const bind = f.get('bind');
    if (bind) return { id, bytes, from, bind: parseBinding(bind) };
    const seqText = f.get('seq')?.toString('latin1') ?? '';
    const seq = /^\d{1,16}$/.test(seqText) ? Number(seqText) : 0;
    if (!(Number.isSafeInteger(seq) && seq > 0)) {
      return { id, bytes, problem: 'it has no seq (a positive integer)' };
    }
    const op = f.get('op');
    if (!op) return { id, bytes, problem: 'it has no op' };
    return { id, bytes, seq, from, op: parseOp(op) };
  } catch (e) {
    return { id, bytes, problem: `it does not parse (${(e as Error).message.slice(0, 200)})` };
  }
}

/** The entries of an XREAD reply for one stream (`[[key, entries]]` or null). */
export function replyEntries(reply: unknown): unknown[] {
  if (!Array.isArray(reply) || reply.length === 0) return [];
  const first = reply[0];
  return Array.isArray(first) && Array.isArray(first[1]) ? first[1] : [];
}

/**
 * The agreement keys nodes joined with, known to every relay: a binding is added to the log, each
 * relay's reader takes it into this cache, and compaction writes the cache to `ctx:agreements`
 * (read at start). At most `max`, the least recently bound dropped first.
 */
export class AgreementCache {
  private readonly map = new Map<string, AgreementBinding>();
  constructor(private readonly max: number) {}

  /** Takes `b`; true when it is new or changed (worth telling the other relays). */
  set(b: AgreementBinding): boolean {
    const old = this.map.get(b.publicKey);
    const same = old && Buffer.from(old.agreementKey).equals(b.agreementKey);
    this.map.delete(b.publicKey);
    this.map.set(b.publicKey, b);
    if (this.map.size > this.max) this.map.delete(this.map.keys().next().value as string);
    return !same;
  }

  lookup(keys: string[]): AgreementBinding[] {
    return keys.flatMap((k) => this.map.get(k) ?? []);
  }

  all(): AgreementBinding[] {
    return [...this.map.values()];
  }
}
