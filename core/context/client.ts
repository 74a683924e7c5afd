/**
 * A node's side of the context store: its replica (persisted through a KV: IndexedDB in a tab),
 * its outbox of writes the relay has not acknowledged, and the API apps use. Online, writes go to
 * the relay, which orders them and sends every node what it may hold of the apps it uses; offline,
 * reads serve the local copy while it is valid and writes wait in the outbox. Private values are
 * sealed here, before they leave, for the identity keys they are for (and this node); the KV and
 * everything sent hold only the envelope, the plaintext lives in memory (core/context/keyring.ts).
 * What storage holds and evicts is core/context/storage.ts; which catch-up parts are taken is
 * core/context/catchup.ts.
 * @example const ctx = new NodeContext(identity, kv); await ctx.load();
 *          await ctx.put('vad', 'state', { h: [...] }, { ttlMs: 2000 });
 */
import type { ContextReply, ContextRequest } from '../abi/invoke';
import { decode, encode } from '../codec';
import { type BrumeError, fromWire, InputError, TimeoutError, UnsupportedError } from '../errors';
import { Pending } from '../pending';
import type { ToNode, ToRelay } from '../protocol';
import { serial } from '../serial';
import { CatchUpParts } from './catchup';
import { Clock } from './hlc';
import { type ContextIdentity, Keyring } from './keyring';
import { type KV, Outbox } from './outbox';
import { type ContextOp, ContextReplica, type Scope } from './replica';
import { seal } from './seal';
import { type ContextStorage, isQuota, StoredEntries } from './storage';

export type { ContextIdentity } from './keyring';
export type { ContextStorage } from './storage';

export interface PutOptions {
  scope?: Scope;
  ttlMs?: number;
  /**
   * ['device']: this node only, never sent anywhere. Identity public keys (base64url SPKI): only
   * the nodes holding them (and this node) can read the value; everywhere else it is a sealed
   * envelope or nothing.
   */
  privacy?: string[];
  /** Keep the value at this site: never pushed to federated sites (PROTOCOL.md §6.3). */
  local?: boolean;
}

export type ContextRead = { value: unknown; expiresAt?: number } | { expired: true } | undefined;

/** Frames this side sends to the relay (the fabric carries them). */
export type ContextSend = (frame: Extract<ToRelay, { t: `ctx-${string}` }>) => void;
/** Frames from the relay this side takes. */
export type ContextFrame = Exclude<Extract<ToNode, { t: `ctx-${string}` }>, { t: 'ctx-fan' }>;

/** How long `fresh` and `settled` wait by default before going on without an answer. */
const WAIT_MS = 5000;

/** Waiters that went on without their answer: they resolve, the write stays in the outbox. */
const orOnTime = (answer: Promise<void>) =>
  answer.catch((e: unknown) => {
    if (!(e instanceof TimeoutError)) throw e;
  });

export class NodeContext {
  // A node serves no catch-ups: it keeps no log of superseded values in memory.
  readonly replica = new ContextReplica({ logLength: 0 });
  private readonly clock: Clock;
  private readonly outbox: Outbox;
  private readonly stored: StoredEntries;
  private readonly keyring: Keyring;
  private readonly kv: KV;
  private readonly nodeId: string;
  private cursor = 0;
  private send: ContextSend | undefined;
  /** Writes sent and not yet answered by the relay. */
  private readonly outboxed = new Map<string, ContextOp>();
  /** Writers waiting for the relay's answer to their write (`settled`), by operation id. */
  private readonly writers = new Pending<void, string>({
    timeoutMs: WAIT_MS,
    timeout: (opId) => new TimeoutError(`the relay did not answer write ${opId} in time`),
  });
  /** Readers waiting for a catch-up (`fresh`), by the number of the sync it must answer. */
  private readonly readers = new Pending<void, number>({
    timeoutMs: WAIT_MS,
    timeout: (after) => new TimeoutError(`the relay did not answer sync ${after} in time`),
  });
  /** How the reads of Logics (`serve` get) were made current: by version check, or catch-up. */
  readonly reads = { checked: 0, caughtUp: 0 };
  /** Reads waiting for a version check (`current`), by nothing: the check's id is their own. */
  private readonly checks = new Pending<void, undefined>({
    timeoutMs: WAIT_MS,
    timeout: () => new TimeoutError('the relay did not answer a context version check in time'),
  });
  private readonly parts = new CatchUpParts();
  /** Catch-ups and changes from the relay, applied in turn. */
  private readonly inbound = serial();
  /**
   * Changes from the relay applied (watchers told) and waiting to be stored, with the cursor
   * that covers them: stored in one batch behind the changes, so a slow storage write delays no
   * later change (`keepLater`).
   */
  private readonly unkept = { ops: [] as ContextOp[], cursor: 0, storedCursor: 0 };
  private keeping: Promise<void> | undefined;
  /** Why the last batch could not be stored: thrown by the next change, so the node logs it. */
  private keepFailure: unknown;
  /** Apps this node keeps context of; `held`: those whose state it has (persisted). */
  private readonly apps = new Set<string>();
  private held = new Set<string>();

  constructor(
    private readonly me: ContextIdentity,
    kv: KV,
    private readonly now: () => number = Date.now,
  ) {
    this.nodeId = me.id;
    this.clock = new Clock(me.id, now);
    this.stored = new StoredEntries(kv, this.replica, now);
    this.kv = this.stored.kv;
    this.outbox = new Outbox(this.kv);
    this.keyring = new Keyring(me, this.kv);
  }

  /** What storage holds and what it had to evict (`usage()` brings keys and bytes up to date). */
  get storage(): ContextStorage {
    return this.stored.stats;
  }

  /** Requests waiting for the relay: writers (`settled`), readers (`fresh`), key questions. */
  waiting(): { writers: number; readers: number; keys: number } {
    return {
      writers: this.writers.size,
      readers: this.readers.size + this.checks.size,
      keys: this.keyring.queries.size,
    };
  }

  /** Restores the replica, the cursor and the apps from the KV (a reload keeps its context). */
  async load(): Promise<void> {
    for (const k of await this.kv.keys()) {
      if (k.startsWith('entry/')) {
        const op = (await this.kv.get(k)) as ContextOp;
        this.clock.receive(op.stamp);
        await this.keyring.open(op);
        this.replica.apply(op);
        this.stored.loaded(k);
      } else if (Keyring.holds(k)) {
        this.keyring.load(k, await this.kv.get(k));
      }
    }
    this.cursor = ((await this.kv.get('cursor')) as number | undefined) ?? 0;
    this.held = new Set(((await this.kv.get('apps')) as string[] | undefined) ?? []);
    for (const app of this.held) this.apps.add(app);
  }

  /** This node runs `app`: keep its context here from now on (its whole state, then changes). */
  use(app: string): void {
    if (this.apps.has(app)) return;
    this.apps.add(app);
    this.sync();
  }

  /** The relay is reachable through `send`: replay the outbox, then catch up. */
  async online(send: ContextSend): Promise<void> {
    this.offline();
    this.send = send;
    for (const op of await this.outbox.due(this.now())) {
      this.outboxed.set(op.opId, op);
      send({ t: 'ctx-op', op });
    }
    this.sync();
  }

  offline(): void {
    this.send = undefined;
    this.parts.reset();
    for (const [id] of this.readers.entries()) this.readers.settle(id);
    for (const [id] of this.checks.entries()) this.checks.settle(id);
    for (const [id] of this.writers.entries()) this.writers.settle(id); // it waits in the outbox now
    this.keyring.offline();
  }

  private sync(): void {
    if (!this.send) return;
    const full = [...this.apps].filter((a) => !this.held.has(a));
    const id = this.parts.next();
    this.send({ t: 'ctx-sync', id, cursor: this.cursor, apps: [...this.apps], full });
  }

  /**
   * Resolves once this replica holds everything the relay had acknowledged when it was called
   * (one catch-up round trip), or at once offline, or after `timeoutMs`.
   */
  fresh(timeoutMs = WAIT_MS): Promise<void> {
    if (!this.send) return Promise.resolve();
    this.sync();
    return orOnTime(this.readers.open(this.parts.latest, timeoutMs).answer);
  }

  /**
   * Like `fresh`, for a read of `app`: when this node holds the app's state already, a version
   * check instead of a catch-up — the relay answers how far it has sent changes to this node, and
   * if this replica has applied that far (the usual case: nothing changed, or the change came
   * before the answer) nothing more is asked; else a catch-up.
   */
  current(app: string, timeoutMs = WAIT_MS): Promise<void> {
    if (!this.send) return Promise.resolve();
    if (!this.held.has(app)) {
      this.reads.caughtUp++;
      return this.fresh(timeoutMs);
    }
    const { id, answer } = this.checks.open(undefined, timeoutMs);
    this.send({ t: 'ctx-check', id });
    return orOnTime(answer);
  }

  /** The relay's answer to a version check: settle it, or catch up first if this node is behind. */
  private async checked(frame: Extract<ContextFrame, { t: 'ctx-at' }>): Promise<void> {
    if (!this.checks.has(frame.id)) return;
    if (this.cursor >= frame.seq) {
      this.reads.checked++;
      this.checks.settle(frame.id);
      return;
    }
    this.reads.caughtUp++;
    // Behind (a change still on its way through a fog, or a gap): the catch-up answers the read.
    this.fresh().then(
      () => this.checks.settle(frame.id),
      (e: unknown) => this.checks.fail(frame.id, e as BrumeError),
    );
  }

  /**
   * Resolves when the relay acknowledges write `opId` (or at once offline, or after `timeoutMs`:
   * it stays in the outbox); rejects with the relay's error when it refuses it.
   */
  settled(opId: string, timeoutMs = WAIT_MS): Promise<void> {
    if (!this.send || !this.outboxed.has(opId)) return Promise.resolve();
    return orOnTime(this.writers.open(opId, timeoutMs).answer);
  }

  /** A Logic's context operation on its app (PROTOCOL.md §3.4). */
  async serve(app: string, r: ContextRequest): Promise<ContextReply> {
    this.use(app);
    if (r.op === 'get') {
      await this.current(app);
      const read = this.get(app, r.key, r.scope);
      if (!read) return { found: false };
      if ('expired' in read) return { found: false, expired: true };
      return { found: true, value: read.value };
    }
    const opId =
      r.op === 'put'
        ? await this.put(app, r.key, r.value, {
            scope: r.scope,
            ttlMs: r.ttlMs,
            privacy: r.privacy,
            local: r.local === true,
          })
        : await this.delete(app, r.key, r.scope);
    await this.settled(opId);
    return {};
  }

  /** A frame from the relay. */
  async receive(frame: ContextFrame): Promise<void> {
    if (frame.t === 'ctx-keys') return this.keyring.answer(frame.id, frame.found);
    if (frame.t === 'ctx-ack' || frame.t === 'ctx-nack') return this.answered(frame);
    // Catch-ups and changes apply one at a time, in arrival order: a catch-up in parts must not
    // have its cursor moved (by its last part) before its earlier parts are stored; a version
    // check's answer is looked at once every change sent before it has been applied.
    return this.inbound(() =>
      frame.t === 'ctx-catchup'
        ? this.catchUp(frame)
        : frame.t === 'ctx-at'
          ? this.checked(frame)
          : this.change(frame),
    );
  }

  /** The relay took write `opId`, or refused it. */
  private async answered(
    frame: Extract<ContextFrame, { t: 'ctx-ack' } | { t: 'ctx-nack' }>,
  ): Promise<void> {
    // A refusal is for good (a limit, a clock far off): replaying it would be refused again.
    await this.outbox.ack(frame.opId);
    const op = this.outboxed.get(frame.opId);
    this.outboxed.delete(frame.opId);
    const error = frame.t === 'ctx-nack' ? fromWire(frame.error) : undefined;
    for (const [id, opId] of this.writers.entries()) {
      if (opId !== frame.opId) continue;
      if (error) this.writers.fail(id, error);
      else this.writers.settle(id);
    }
    // Refused, nobody else has it: take it back here too, and fetch the app's state again so the
    // key shows what the relay holds.
    if (error && op && this.replica.revert(op)) {
      await this.stored.remove(op);
      this.held.delete(op.app);
      await this.kv.set('apps', [...this.held]);
      this.sync();
    }
  }

  /**
   * One part of a catch-up (PROTOCOL.md §5.5). Each part's ops apply as they come; the cursor
   * moves, the `full` apps count as held and waiters wake only with the last part, and only if
   * every part before it came: otherwise this node asks again.
   */
  private async catchUp(frame: Extract<ContextFrame, { t: 'ctx-catchup' }>): Promise<void> {
    const verdict = this.parts.accept(frame);
    if (verdict === 'resync') this.sync();
    if (verdict !== 'apply') return;
    await this.kept(); // changes before it are stored first: the stored cursor only moves on
    const changed: ContextOp[] = [];
    for (const op of frame.ops) {
      this.clock.receive(op.stamp);
      await this.keyring.open(op);
      if (this.replica.apply(op)) changed.push(op);
    }
    await this.stored.keep(changed);
    if (frame.more) return;
    const n = this.parts.answers(frame);
    if (frame.full?.length) {
      for (const app of frame.full) this.held.add(app);
      await this.kv.set('apps', [...this.held]);
    }
    await this.moveCursor(frame.cursor);
    for (const [id, after] of this.readers.entries()) {
      if (after <= n) this.readers.settle(id);
    }
  }

  /** A change the relay (or the parent fog) sends as it happens. */
  private async change(frame: Extract<ContextFrame, { t: 'ctx-op' }>): Promise<void> {
    if (frame.prev !== this.cursor && frame.seq > this.cursor) {
      this.sync(); // a gap: ask for what is missing
      return;
    }
    if (frame.seq <= this.cursor) return;
    this.clock.receive(frame.op.stamp);
    await this.keyring.open(frame.op);
    const changed = this.replica.apply(frame.op);
    this.cursor = frame.seq;
    this.keepLater(changed ? frame.op : undefined, frame.seq);
    if (this.keepFailure !== undefined) {
      const e = this.keepFailure;
      this.keepFailure = undefined;
      throw e;
    }
  }

  /**
   * Stores `op` (a change already applied) and moves the stored cursor to `seq`, batched with
   * the changes that arrive while a batch is being written. The cursor is stored after the
   * entries it covers, and only while storage holds every change (`stored.complete`): a node
   * stopped before a batch is stored is sent those changes again.
   */
  private keepLater(op: ContextOp | undefined, seq: number): void {
    if (op) this.unkept.ops.push(op);
    this.unkept.cursor = Math.max(this.unkept.cursor, seq);
    this.keeping ??= this.keepBatches().finally(() => {
      this.keeping = undefined;
    });
  }

  private async keepBatches(): Promise<void> {
    const u = this.unkept;
    while (u.ops.length || u.cursor > u.storedCursor) {
      const ops = u.ops.splice(0);
      const to = u.cursor;
      try {
        await this.stored.keep(ops);
        if (this.stored.complete && to > u.storedCursor) await this.kv.set('cursor', to);
        u.storedCursor = Math.max(u.storedCursor, to);
      } catch (e) {
        this.keepFailure = e;
        u.storedCursor = Math.max(u.storedCursor, to); // not retried: a reload catches up
      }
    }
  }

  /** Resolves once every change taken so far is stored (or could not be). */
  async kept(): Promise<void> {
    while (this.keeping) await this.keeping;
  }

  get(app: string, key: string, scope: Scope = 'app'): ContextRead {
    nodeScope(scope);
    const r = this.replica.get(app, key, { scope, owner: this.nodeId }, this.now());
    if (!r) return undefined;
    if ('expired' in r) return { expired: true };
    this.stored.touch(r.op);
    const expiresAt = r.op.expiresAt;
    const at = expiresAt !== undefined && { expiresAt };
    if (r.sealed) {
      // Sealed for other keys: nothing here to read.
      const opened = this.keyring.opened(r.op.opId);
      return opened && { ...opened, ...at };
    }
    return { value: decode(r.value), ...at };
  }

  /** Writes `value`; answers the write's operation id. */
  async put(app: string, key: string, value: unknown, o: PutOptions = {}): Promise<string> {
    nodeScope(o.scope);
    if (o.ttlMs !== undefined && !(o.ttlMs > 0))
      throw new InputError('ttlMs must be a positive number');
    const device = o.privacy?.length === 1 && o.privacy[0] === 'device';
    if (o.privacy && !device && (o.privacy.length === 0 || o.privacy.includes('device'))) {
      throw new InputError(
        'privacy is ["device"] or a list of identity public keys (base64url SPKI), not both or none',
      );
    }
    const plain = encode(value);
    const keys = o.privacy && !device ? [...new Set(o.privacy)] : undefined;
    if (keys && this.me.publicKey && !keys.includes(this.me.publicKey))
      keys.push(this.me.publicKey);
    const sealed = keys
      ? await seal(plain, await this.keyring.recipients(keys, this.send))
      : undefined;
    const stamp = this.clock.tick();
    const op: ContextOp = {
      opId: crypto.randomUUID(),
      app,
      key,
      scope: o.scope ?? 'app',
      ...(o.scope === 'node' ? { owner: this.nodeId } : {}),
      stamp,
      kind: 'put',
      ...(sealed ? { sealed } : { value: plain }),
      ...(o.ttlMs !== undefined && { expiresAt: stamp.wall + o.ttlMs }),
      ...(o.privacy && { privacy: keys ?? o.privacy }),
      ...(o.local === true && { local: true as const }),
    };
    if (sealed) this.keyring.remember(op.opId, decode(plain));
    return this.write(op);
  }

  /** Deletes `key`; answers the operation id. */
  async delete(app: string, key: string, scope: Scope = 'app'): Promise<string> {
    nodeScope(scope);
    const stamp = this.clock.tick();
    return this.write({
      opId: crypto.randomUUID(),
      app,
      key,
      scope,
      ...(scope === 'node' ? { owner: this.nodeId } : {}),
      stamp,
      kind: 'delete',
    });
  }

  /** Calls `cb(key, read)` for each change under `prefix` of `app`, once, in order per key. */
  watch(app: string, prefix: string, cb: (key: string, read: ContextRead) => void): () => void {
    this.use(app);
    return this.replica.watch(app, prefix, (op) => {
      // A node holds no project or user keys (viewFor); of node keys, only its own.
      if (op.scope === 'project' || op.scope === 'user') return;
      if (op.scope === 'node' && op.owner !== this.nodeId) return;
      cb(op.key, this.get(app, op.key, op.scope));
    });
  }

  /**
   * Stores a write of this node's own (and queues it for the relay), then applies it. When storage
   * stays full: online it goes on from memory (the relay keeps it); offline, or device-private,
   * it is refused with E_QUOTA and nothing changes.
   */
  private async write(op: ContextOp): Promise<string> {
    this.use(op.app);
    this.replica.check(op);
    // Device-private values stay here: not in the outbox, never sent.
    const device = op.privacy?.[0] === 'device';
    try {
      // Queued and stored in one transaction: one storage write before the relay hears of it.
      await this.stored.set(op, device ? [] : [this.outbox.entry(op)]);
    } catch (e) {
      if (!isQuota(e) || device || !this.send) throw e;
      // Storage stays full and this node is online: the write goes on from memory, queued if
      // the outbox alone still fits (the relay keeps it once it has it).
      this.stored.unstored(1);
      await this.outbox.add(op).catch((e2: unknown) => {
        if (!isQuota(e2)) throw e2;
      });
    }
    this.clock.receive(op.stamp);
    this.replica.apply(op);
    if (device) return op.opId;
    this.outboxed.set(op.opId, op);
    this.send?.({ t: 'ctx-op', op });
    return op.opId;
  }

  /** What is stored now (keys, bytes) and what was evicted. */
  usage(): ContextStorage {
    return this.stored.usage();
  }

  private async moveCursor(to: number): Promise<void> {
    if (to <= this.cursor) return;
    this.cursor = to;
    if (this.stored.complete) await this.kv.set('cursor', to);
    this.unkept.storedCursor = Math.max(this.unkept.storedCursor, to);
    this.unkept.cursor = Math.max(this.unkept.cursor, to);
  }
}

/**
 * Refuses a scope a node does not hold (a Logic or a page may name any string): project and
 * user keys are the relay's, reached over HTTP with a principal (PROTOCOL.md §5.5).
 */
function nodeScope(scope: unknown): void {
  if (scope === undefined || scope === 'app' || scope === 'node') return;
  if (scope === 'project' || scope === 'user') {
    throw new UnsupportedError(
      `scope "${scope}": project and user keys are read and written over HTTP (GET/PUT /api/context/:app/:key?scope=${scope}), not from a node`,
    );
  }
  throw new InputError(`scope: "app" or "node" on a node, not "${String(scope).slice(0, 32)}"`);
}
