/**
 * One copy of the context store: the relay holds one, every node holds one. Writes are operations
 * (put or delete, stamped by a hybrid logical clock, named by an id); applying them is idempotent
 * and order-free (the greater stamp wins), so every replica that has seen the same operations holds
 * the same state. The relay's replica also keeps an ordered log, from which a node that was away
 * catches up, or, when it was away longer than the log reaches back, gets a snapshot.
 * @example const r = new ContextReplica(); r.apply(op); r.get('vad', 'state', {}, Date.now());
 */
import { LimitError } from '../errors';
import { compareStamp, type Stamp } from './hlc';

/** The scopes a node reads and writes: its app's keys, and its own. */
export type Scope = 'app' | 'node';
/**
 * Every scope an operation may have: also a project's keys (shared by its apps) and a user's
 * keys in one app. Those two are held by the relay alone and reached over HTTP (PROTOCOL.md §5.5).
 */
export type OpScope = Scope | 'project' | 'user';

export interface ContextOp {
  /** Idempotency key: an operation with an id already seen changes nothing. */
  opId: string;
  app: string;
  key: string;
  scope: OpScope;
  /** The owning node of a node-scoped key; the user or project of a user- or project-scoped one. */
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
  /** Site-local: kept by the site that took it, never pushed to federated sites (relay/federation/). */
  local?: true;
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
  /** Value bytes the log keeps at most (it holds superseded values too). */
  logBytes: number;
  /** How long the ids of applied operations are remembered, by the newest stamp seen (ms). */
  seenMs: number;
  /** Ids remembered at most, whatever their age. */
  maxSeen: number;
}

export const defaultContextLimits: ContextLimits = {
  maxValueBytes: 64 * 1024,
  maxAppBytes: 4 * 1024 * 1024,
  logLength: 10_000,
  logBytes: 16 * 1024 * 1024,
  seenMs: 10 * 60_000,
  maxSeen: 100_000,
};

export type CatchUp =
  | { ops: { seq: number; op: ContextOp }[]; cursor: number }
  | { snapshot: ContextOp[]; cursor: number };

/** One `ctx-catchup` frame (PROTOCOL.md §5.5): part `part` of a catch-up, `more` but the last. */
export interface CatchUpPart {
  /** The sync this answers (its `id`). */
  id?: number;
  ops: ContextOp[];
  cursor: number;
  full?: string[];
  part?: number;
  more?: true;
}

/** Bytes of ops per catch-up frame: well under the 16 MiB frame limit a node decodes. */
export const defaultCatchUpBytes = 4 * 1024 * 1024;
/** Ops per catch-up frame: under the 100,000 array items a node decodes. */
const catchUpOps = 10_000;

/**
 * The key an operation writes: app, owner (node scope), key; a user's key within the app; a
 * project's key, whichever of its apps wrote it.
 */
export function entryId(op: Pick<ContextOp, 'app' | 'key' | 'owner' | 'scope'>): string {
  const owner = op.owner ?? '';
  if (op.scope === 'project') return `\u0000p:${owner}\u0000${op.key}`;
  if (op.scope === 'user') return `${op.app}\u0000u:${owner}\u0000${op.key}`;
  return `${op.app}\u0000${op.scope === 'node' ? owner : ''}\u0000${op.key}`;
}
/** Whose byte budget (maxAppBytes) an operation counts against: its project's, or its app's. */
export const budgetOf = (op: Pick<ContextOp, 'app' | 'owner' | 'scope'>) =>
  op.scope === 'project' ? `\u0000p:${op.owner ?? ''}` : op.app;
const idOf = entryId;
const sizeOf = (op: ContextOp) => (op.value?.byteLength ?? 0) + (op.sealed?.byteLength ?? 0);

/** An upper bound of an op's MessagePack size (strings at most 3 bytes per UTF-16 unit). */
export function encodedBound(op: ContextOp): number {
  let chars = op.opId.length + op.app.length + op.key.length + (op.owner?.length ?? 0);
  chars += op.stamp.node.length;
  for (const k of op.privacy ?? []) chars += k.length + 5;
  return sizeOf(op) + 3 * chars + 160;
}

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
  // Reached over HTTP with a principal's rights; a tab serving the app is not that principal.
  if (op.scope === 'project' || op.scope === 'user') return undefined;
  if (op.privacy && !op.privacy.includes(node.publicKey)) {
    const { sealed: _s, value: _v, ...meta } = op;
    return meta;
  }
  return op;
}

/**
 * The catch-up a node asked for with its `cursor`: what it missed of the apps it keeps, plus the
 * whole state of the apps in `full` (which it holds nothing of yet), each op as `view` lets it
 * see it (undefined: not for it). Of several ops on one key only the last goes (it wins anyway),
 * and the rest is cut into parts of at most `maxBytes` each, one frame per part: live state is
 * bounded per app, not per fabric, so one frame could exceed what a node decodes.
 */
export function catchUpFor(
  replica: ContextReplica,
  ask: { id?: number; cursor: number; full?: string[] },
  view: (op: ContextOp) => ContextOp | undefined,
  maxBytes = defaultCatchUpBytes,
): CatchUpPart[] {
  const c = replica.since(ask.cursor);
  const full = new Set(ask.full);
  const ops = ('ops' in c ? c.ops.map((e) => e.op) : c.snapshot).filter((op) => !full.has(op.app));
  for (const app of full) ops.push(...replica.state(app));
  const parts: ContextOp[][] = [[]];
  let bytes = 0;
  for (const op of lastPerKey(ops.flatMap((o) => view(o) ?? []))) {
    const size = encodedBound(op);
    const part = parts[parts.length - 1]!;
    if (part.length && (bytes + size > maxBytes || part.length >= catchUpOps)) {
      parts.push([op]);
      bytes = size;
    } else {
      part.push(op);
      bytes += size;
    }
  }
  return parts.map((part, i) => ({
    ...(ask.id !== undefined && { id: ask.id }),
    ops: part,
    cursor: c.cursor,
    ...(full.size && { full: [...full] }),
    ...(i > 0 && { part: i }),
    ...(i < parts.length - 1 && { more: true as const }),
  }));
}

/** `ops` less those a later op in the list overwrites, in their order. */
function lastPerKey(ops: ContextOp[]): ContextOp[] {
  const last = new Map<string, number>();
  for (const [i, op] of ops.entries()) last.set(entryId(op), i);
  return ops.filter((op, i) => last.get(entryId(op)) === i);
}

/** Writes checked against a replica and not applied to it yet (`ContextReplica.check`). */
export interface Staged {
  /** The newest staged write of each key. */
  entries: Map<string, ContextOp>;
  /** Per app, the bytes the staged writes add (negative when they shrink it). */
  bytes: Map<string, number>;
}

export class ContextReplica {
  private readonly entries = new Map<string, ContextOp>();
  /**
   * Ids of applied operations, each with the newest wall time seen when it came, oldest first.
   * Forgetting one is harmless: an op that comes back later meets its key holding its own stamp or
   * a greater one (it won and still holds, or it lost), and the greater stamp wins again, so it
   * changes nothing. The ids only spare that comparison for replays (outboxes, duplicate frames),
   * which come soon after the op itself. (A tombstone dropped by `gc` is the one thing a very
   * late replay could undo: `gc`'s horizon must be longer than any absence.)
   */
  private readonly seen = new Map<string, number>();
  private newestWall = 0;
  private readonly logged = { bytes: 0 };
  /** Keys whose refused write was taken back, waiting for the relay's state. */
  private readonly reverted = new Set<string>();
  private readonly appBytes = new Map<string, number>();
  private readonly log: { seq: number; op: ContextOp }[] = [];
  private seq = 0;
  /** The log holds every change after this position (what `restore` or trimming left out). */
  private floor = 0;
  private readonly watchers = new Set<{
    app: string;
    prefix: string;
    cb: (op: ContextOp) => void;
  }>();
  readonly limits: ContextLimits;

  constructor(limits: Partial<ContextLimits> = {}) {
    this.limits = { ...defaultContextLimits, ...limits };
  }

  /**
   * Throws E_LIMIT when `op` would break the per-value or per-app size limit. With `staged`
   * (writes checked and not applied yet, as a group commit holds them), those count as applied,
   * and `op` joins them when it passes.
   */
  check(op: ContextOp, staged?: Staged): void {
    const size = sizeOf(op);
    if (size > this.limits.maxValueBytes) {
      throw new LimitError(
        `${op.app}/${op.key}: a value of ${size} bytes is over the limit of ${this.limits.maxValueBytes}`,
      );
    }
    const { total } = this.footprint(op, staged);
    if (total > this.limits.maxAppBytes) {
      throw new LimitError(
        `${op.scope === 'project' ? `project ${op.owner}` : op.app}: its context would hold ${total} bytes, over the limit of ${this.limits.maxAppBytes}`,
      );
    }
    if (staged) this.stage(op, staged);
  }

  /**
   * Counts `op` among `staged` without checking it: as the newest write of its key (it may lose
   * to an older stamp when applied, so the count errs on the full side).
   */
  stage(op: ContextOp, staged: Staged): void {
    const { base, total } = this.footprint(op, staged);
    staged.entries.set(idOf(op), op);
    staged.bytes.set(budgetOf(op), (staged.bytes.get(budgetOf(op)) ?? 0) + total - base);
  }

  /** The app's bytes now (with `staged`) and once `op` replaces its key's value. */
  private footprint(op: ContextOp, staged?: Staged): { base: number; total: number } {
    const id = idOf(op);
    const old = staged?.entries.get(id) ?? this.entries.get(id);
    const b = budgetOf(op);
    const base = (this.appBytes.get(b) ?? 0) + (staged?.bytes.get(b) ?? 0);
    return { base, total: base - (old ? sizeOf(old) : 0) + sizeOf(op) };
  }

  /**
   * Applies an operation; true when it changed this replica (it was new and it won). With `at`
   * (a relay of a cluster: the position its shared log gave the op) the cursor moves to `at`
   * whether or not the op changed anything, and a change is logged at `at`: positions may then
   * skip numbers, and every relay gives the same one to the same op.
   */
  apply(op: ContextOp, at?: number): boolean {
    if (at !== undefined) {
      if (!(Number.isSafeInteger(at) && at > this.seq)) return false;
      this.seq = at - 1;
      const changed = this.apply(op);
      this.seq = at;
      return changed;
    }
    const id = idOf(op);
    const old = this.entries.get(id);
    // Seen before: nothing to do, unless its key was taken back (revert) and it returns.
    if (this.seen.has(op.opId) && (old || !this.reverted.has(id))) return false;
    this.remember(op);
    this.reverted.delete(id);
    if (old && compareStamp(op.stamp, old.stamp) <= 0) return false;
    this.entries.set(id, op);
    this.appBytes.set(
      budgetOf(op),
      (this.appBytes.get(budgetOf(op)) ?? 0) - (old ? sizeOf(old) : 0) + sizeOf(op),
    );
    this.log.push({ seq: ++this.seq, op });
    this.logged.bytes += sizeOf(op);
    this.trimLog();
    for (const w of this.watchers) {
      if (w.app === op.app && op.key.startsWith(w.prefix)) w.cb(op);
    }
    return true;
  }

  /** Notes `op` as seen, and forgets ids past the horizon or over the count. */
  private remember(op: ContextOp): void {
    this.newestWall = Math.max(this.newestWall, op.stamp.wall);
    this.seen.delete(op.opId); // re-inserted last: the map stays in arrival order
    this.seen.set(op.opId, this.newestWall);
    const horizon = this.newestWall - this.limits.seenMs;
    for (const [id, at] of this.seen) {
      if (at >= horizon && this.seen.size <= this.limits.maxSeen) break;
      this.seen.delete(id);
    }
  }

  /** Keeps the log within its length and bytes; a node further behind gets a snapshot. */
  private trimLog(): void {
    const { logLength, logBytes } = this.limits;
    if (this.log.length <= logLength * 1.1 && this.logged.bytes <= logBytes) return;
    let drop = Math.max(0, this.log.length - logLength);
    let bytes = this.logged.bytes;
    for (let i = 0; i < drop; i++) bytes -= sizeOf(this.log[i]!.op);
    while (drop < this.log.length - 1 && bytes > logBytes) bytes -= sizeOf(this.log[drop++]!.op);
    if (drop > 0) this.floor = this.log[drop - 1]!.seq;
    this.log.splice(0, drop);
    this.logged.bytes = bytes;
  }

  /**
   * Starts this replica from a snapshot (before any other op): its `ops` and the log position
   * `seq` it was taken at. Nothing is logged: a node behind `seq` gets a snapshot.
   */
  restore(ops: ContextOp[], seq: number): void {
    for (const op of ops) {
      this.remember(op);
      this.entries.set(idOf(op), op);
      this.appBytes.set(budgetOf(op), (this.appBytes.get(budgetOf(op)) ?? 0) + sizeOf(op));
    }
    this.seq = seq;
    this.floor = seq;
  }

  /** How many keys it holds (tombstones included) and their value bytes. */
  size(): { keys: number; bytes: number } {
    let bytes = 0;
    for (const b of this.appBytes.values()) bytes += b;
    return { keys: this.entries.size, bytes };
  }

  /** How many operation ids it remembers (bounded by `seenMs` and `maxSeen`). */
  get seenCount(): number {
    return this.seen.size;
  }

  /** The current value of a key, unless it was deleted or has expired (by `now`). */
  get(
    app: string,
    key: string,
    where: { scope?: OpScope; owner?: string },
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
    this.appBytes.set(budgetOf(op), (this.appBytes.get(budgetOf(op)) ?? 0) - sizeOf(op));
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
    const guess = this.log[seq - first];
    if (guess?.seq === seq) return guess.op;
    // Positions skip numbers (`apply` with `at`): search.
    let lo = 0;
    let hi = this.log.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const e = this.log[mid]!;
      if (e.seq === seq) return e.op;
      if (e.seq < seq) lo = mid + 1;
      else hi = mid - 1;
    }
    return undefined;
  }

  get cursor(): number {
    return this.seq;
  }

  /** What a replica at `cursor` lacks: the log after it, or a snapshot if the log has moved on. */
  since(cursor: number): CatchUp {
    if (cursor >= this.floor) {
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
        this.appBytes.set(budgetOf(op), (this.appBytes.get(budgetOf(op)) ?? 0) - sizeOf(op));
        dropped++;
      }
    }
    return dropped;
  }
}
