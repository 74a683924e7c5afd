/**
 * One copy of the context store: the relay holds one, every node holds one. Writes are operations
 * (put or delete, stamped by a hybrid logical clock, named by an id); applying them is idempotent
 * and order-free (the greater stamp wins), so every replica that has seen the same operations holds
 * the same state. The relay's replica also keeps an ordered log, from which a node that was away
 * catches up, or, when it was away longer than the log reaches back, gets a snapshot.
 * @example const r = new ContextReplica(); r.apply(op); r.get('vad', 'state', {}, Date.now());
 */
import { BrumeError } from '../errors';
import { compareStamp, type Stamp } from './hlc';

export type Scope = 'app' | 'node';

export interface ContextOp {
  /** Idempotency key: an operation with an id already seen changes nothing. */
  opId: string;
  app: string;
  key: string;
  scope: Scope;
  /** The owning node of a node-scoped key. */
  owner?: string;
  stamp: Stamp;
  kind: 'put' | 'delete';
  /** MessagePack bytes of the value (not private). */
  value?: Uint8Array;
  /** A sealed envelope (private): only the keys in `privacy` can open it. */
  sealed?: Uint8Array;
  /** Key ids of the only nodes this value may reach, or ['device']. */
  privacy?: string[];
  /** Absolute wall-clock expiry (Laqista's Invalidate). */
  expiresAt?: number;
}

export type Read =
  | { value: Uint8Array; sealed?: undefined; op: ContextOp }
  | { sealed: Uint8Array; value?: undefined; op: ContextOp }
  | { expired: true; value?: undefined; sealed?: undefined };

export interface ContextLimits {
  maxValueBytes: number;
  maxAppBytes: number;
  /** Operations the log keeps for catching up; older absences get a snapshot. */
  logLength: number;
}

export const defaultContextLimits: ContextLimits = {
  maxValueBytes: 64 * 1024,
  maxAppBytes: 4 * 1024 * 1024,
  logLength: 10_000,
};

export type CatchUp =
  | { ops: { seq: number; op: ContextOp }[]; cursor: number }
  | { snapshot: ContextOp[]; cursor: number };

const idOf = (op: Pick<ContextOp, 'app' | 'key' | 'owner' | 'scope'>) =>
  `${op.app}\u0000${op.scope === 'node' ? (op.owner ?? '') : ''}\u0000${op.key}`;
const sizeOf = (op: ContextOp) => (op.value?.byteLength ?? 0) + (op.sealed?.byteLength ?? 0);

/**
 * What of `op` a node may hold: nothing of another node's node-scoped key; of a private value
 * sealed for other keys, only the fact of the write (its stamp, expiry and recipients), so every
 * replica still agrees which write won.
 */
export function viewFor(
  op: ContextOp,
  node: { id: string; publicKey: string },
): ContextOp | undefined {
  if (op.scope === 'node' && op.owner !== node.id) return undefined;
  if (op.privacy && !op.privacy.includes(node.publicKey)) {
    const { sealed: _s, value: _v, ...meta } = op;
    return meta;
  }
  return op;
}

/**
 * The catch-up a node asked for with its `cursor`: what it missed of the apps it keeps, plus the
 * whole state of the apps in `full` (which it holds nothing of yet), each op as `view` lets it
 * see it (undefined: not for it).
 */
export function catchUpFor(
  replica: ContextReplica,
  ask: { cursor: number; full?: string[] },
  view: (op: ContextOp) => ContextOp | undefined,
): { ops: ContextOp[]; cursor: number; full?: string[] } {
  const c = replica.since(ask.cursor);
  const full = new Set(ask.full);
  const ops = ('ops' in c ? c.ops.map((e) => e.op) : c.snapshot).filter((op) => !full.has(op.app));
  for (const app of full) ops.push(...replica.state(app));
  const out = { ops: ops.flatMap((op) => view(op) ?? []), cursor: c.cursor };
  return full.size ? { ...out, full: [...full] } : out;
}

export class ContextReplica {
  private readonly entries = new Map<string, ContextOp>();
  private readonly seen = new Set<string>();
  /** Keys whose refused write was taken back, waiting for the relay's state. */
  private readonly reverted = new Set<string>();
  private readonly appBytes = new Map<string, number>();
  private readonly log: { seq: number; op: ContextOp }[] = [];
  private seq = 0;
  private readonly watchers = new Set<{
    app: string;
    prefix: string;
    cb: (op: ContextOp) => void;
  }>();
  readonly limits: ContextLimits;

  constructor(limits: Partial<ContextLimits> = {}) {
    this.limits = { ...defaultContextLimits, ...limits };
  }

  /** Throws E_LIMIT when `op` would break the per-value or per-app size limit. */
  check(op: ContextOp): void {
    const size = sizeOf(op);
    if (size > this.limits.maxValueBytes) {
      throw new BrumeError(
        'E_LIMIT',
        `${op.app}/${op.key}: a value of ${size} bytes is over the limit of ${this.limits.maxValueBytes}`,
      );
    }
    const old = this.entries.get(idOf(op));
    const total = (this.appBytes.get(op.app) ?? 0) - (old ? sizeOf(old) : 0) + size;
    if (total > this.limits.maxAppBytes) {
      throw new BrumeError(
        'E_LIMIT',
        `${op.app}: its context would hold ${total} bytes, over the limit of ${this.limits.maxAppBytes}`,
      );
    }
  }

  /** Applies an operation; true when it changed this replica (it was new and it won). */
  apply(op: ContextOp): boolean {
    const id = idOf(op);
    const old = this.entries.get(id);
    // Seen before: nothing to do, unless its key was taken back (revert) and it returns.
    if (this.seen.has(op.opId) && (old || !this.reverted.has(id))) return false;
    this.seen.add(op.opId);
    this.reverted.delete(id);
    if (old && compareStamp(op.stamp, old.stamp) <= 0) return false;
    this.entries.set(id, op);
    this.appBytes.set(
      op.app,
      (this.appBytes.get(op.app) ?? 0) - (old ? sizeOf(old) : 0) + sizeOf(op),
    );
    this.log.push({ seq: ++this.seq, op });
    if (this.log.length > this.limits.logLength * 1.1)
      this.log.splice(0, this.log.length - this.limits.logLength);
    for (const w of this.watchers) {
      if (w.app === op.app && op.key.startsWith(w.prefix)) w.cb(op);
    }
    return true;
  }

  /** The current value of a key, unless it was deleted or has expired (by `now`). */
  get(
    app: string,
    key: string,
    where: { scope?: Scope; owner?: string },
    now: number,
  ): Read | undefined {
    const op = this.entries.get(
      idOf({ app, key, scope: where.scope ?? 'app', owner: where.owner }),
    );
    if (!op || op.kind === 'delete') return undefined;
    if (op.expiresAt !== undefined && op.expiresAt <= now) return { expired: true };
    // Metadata only (a private value this node may not hold): nothing to read.
    if (!op.value && !op.sealed) return undefined;
    return op.sealed ? { sealed: op.sealed, op } : { value: op.value ?? new Uint8Array(), op };
  }

  /** Calls `cb` for each change that wins here, under `prefix` of `app`; answers an unsubscribe. */
  watch(app: string, prefix: string, cb: (op: ContextOp) => void): () => void {
    const w = { app, prefix, cb };
    this.watchers.add(w);
    return () => this.watchers.delete(w);
  }

  /**
   * Takes back a write of this replica's own that the relay refused, if it is still the key's
   * current one: the key is empty until the relay's state for it arrives again (`apply` then
   * takes that operation even if it saw it before). True when it took it back.
   */
  revert(op: ContextOp): boolean {
    const id = idOf(op);
    if (this.entries.get(id)?.opId !== op.opId) return false;
    this.entries.delete(id);
    this.appBytes.set(op.app, (this.appBytes.get(op.app) ?? 0) - sizeOf(op));
    this.reverted.add(id);
    return true;
  }

  /** Current operations (tombstones included), optionally of one app. */
  state(app?: string): ContextOp[] {
    return [...this.entries.values()].filter((op) => app === undefined || op.app === app);
  }

  /** Whether the operation `opId` has been applied here (whatever its outcome). */
  has(opId: string): boolean {
    return this.seen.has(opId);
  }

  /** The operation logged at `seq`, while the log still holds it. */
  at(seq: number): ContextOp | undefined {
    const first = this.log[0]?.seq;
    if (first === undefined || seq < first) return undefined;
    return this.log[seq - first]?.op;
  }

  get cursor(): number {
    return this.seq;
  }

  /** What a replica at `cursor` lacks: the log after it, or a snapshot if the log has moved on. */
  since(cursor: number): CatchUp {
    const first = this.log[0]?.seq ?? this.seq + 1;
    if (cursor >= first - 1) {
      return { ops: this.log.filter((e) => e.seq > cursor), cursor: this.seq };
    }
    return { snapshot: this.state(), cursor: this.seq };
  }

  /** Drops tombstones and expired entries older than `horizonMs`. */
  gc(now: number, horizonMs: number): number {
    let dropped = 0;
    for (const [id, op] of this.entries) {
      const dead = op.kind === 'delete' ? op.stamp.wall : op.expiresAt;
      if (dead !== undefined && dead + horizonMs < now) {
        this.entries.delete(id);
        this.appBytes.set(op.app, (this.appBytes.get(op.app) ?? 0) - sizeOf(op));
        dropped++;
      }
    }
    return dropped;
  }
}
