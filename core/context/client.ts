/**
 * A node's side of the context store: its replica (persisted through a KV: IndexedDB in a tab),
 * its outbox of writes the relay has not acknowledged, and the API apps use. Online, writes go to
 * the relay, which orders them and sends every node what it may hold of the apps it uses; offline,
 * reads serve the local copy while it is valid and writes wait in the outbox. Private values are
 * sealed here, before they leave, for the identity keys they are for (and this node); the KV and
 * everything sent hold only the envelope, the plaintext lives in memory.
 * @example const ctx = new NodeContext(identity, kv); await ctx.load();
 *          await ctx.put('vad', 'state', { h: [...] }, { ttlMs: 2000 });
 */
import type { ContextReply, ContextRequest } from '../abi/invoke';
import { decode, encode } from '../codec';
import { BrumeError, fromWire, InputError, QuotaError, UnavailableError } from '../errors';
import { nodeIdOf, verifyAgreement } from '../identity';
import type { AgreementBinding, ToNode, ToRelay } from '../protocol';
import { Clock } from './hlc';
import { type KV, Outbox } from './outbox';
import { type ContextOp, ContextReplica, type Scope } from './replica';
import { type AgreementKey, kidOf, type Recipient, seal, unseal } from './seal';

export interface PutOptions {
  scope?: Scope;
  ttlMs?: number;
  /**
   * ['device']: this node only, never sent anywhere. Identity public keys (base64url SPKI): only
   * the nodes holding them (and this node) can read the value; everywhere else it is a sealed
   * envelope or nothing.
   */
  privacy?: string[];
}

export type ContextRead = { value: unknown; expiresAt?: number } | { expired: true } | undefined;

/** Frames this side sends to the relay (the fabric carries them). */
export type ContextSend = (frame: Extract<ToRelay, { t: `ctx-${string}` }>) => void;
/** Frames from the relay this side takes. */
export type ContextFrame = Exclude<Extract<ToNode, { t: `ctx-${string}` }>, { t: 'ctx-fan' }>;

/** What a node's context store holds and what it had to evict (the console shows it). */
export interface ContextStorage {
  keys: number;
  bytes: number;
  /** Entries dropped from storage because it was full: expired ones first, then LRU node-scoped. */
  evicted: { expired: number; lru: number };
  /** The last time storage was full, and whether eviction made room. */
  lastFull?: { at: number; freed: boolean };
  /** Changes kept in memory only because storage stayed full (the relay holds them). */
  unstored: number;
}

/** Who this node is, for node-scoped keys and private values. */
export interface ContextIdentity {
  id: string;
  publicKey?: string;
  agreement?: AgreementKey;
}

const entryKey = (op: ContextOp) =>
  `entry/${op.app}\u0000${op.scope}\u0000${op.owner ?? ''}\u0000${op.key}`;
const bindingKey = (publicKey: string) => `agreement/${publicKey}`;

export class NodeContext {
  // A node serves no catch-ups: it keeps no log of superseded values in memory.
  readonly replica = new ContextReplica({ logLength: 0 });
  private readonly clock: Clock;
  private readonly outbox: Outbox;
  private readonly nodeId: string;
  private cursor = 0;
  private send: ContextSend | undefined;
  /** Writes sent and not yet answered by the relay, and those whose writer waits for it. */
  private readonly outboxed = new Map<string, ContextOp>();
  private readonly waiting = new Map<string, { done: () => void; fail: (e: Error) => void }>();
  /** Syncs are numbered (never reset): the relay echoes the number in its catch-up. */
  private syncId = 0;
  /** The catch-up in parts under way: its sync's number and the part expected next. */
  private partial: { id: number | undefined; next: number } | undefined;
  /** The newest sync a catch-up has come for. */
  private answered = 0;
  /** Catch-ups and changes from the relay, applied in turn. */
  private inbound: Promise<unknown> = Promise.resolve();
  private readonly syncWaiters: { after: number; done: () => void }[] = [];
  /** Apps this node keeps context of; `held`: those whose state it has (persisted). */
  private readonly apps = new Set<string>();
  private held = new Set<string>();
  /** Plaintext of the private values this node may read, by operation id: memory only. */
  private readonly opened = new Map<string, unknown>();
  /** Agreement keys of identity keys, checked against their signature. */
  private readonly bindings = new Map<string, Recipient>();
  private readonly keyQueries = new Map<number, (found: AgreementBinding[]) => void>();
  private nextQuery = 1;
  private readonly kv: KV;
  /** Each entry in storage, by when it was last read or written (for LRU eviction). */
  private readonly used = new Map<string, number>();
  readonly storage: ContextStorage = {
    keys: 0,
    bytes: 0,
    evicted: { expired: 0, lru: 0 },
    unstored: 0,
  };

  constructor(
    private readonly me: ContextIdentity,
    kv: KV,
    private readonly now: () => number = Date.now,
  ) {
    this.nodeId = me.id;
    this.clock = new Clock(me.id, now);
    // One eviction at a time: writes that hit the quota together share it.
    let evicting: Promise<number> | undefined;
    this.kv = roomMaking(kv, () => {
      evicting ??= this.evict().finally(() => {
        evicting = undefined;
      });
      return evicting;
    });
    this.outbox = new Outbox(this.kv);
  }

  /** Restores the replica, the cursor and the apps from the KV (a reload keeps its context). */
  async load(): Promise<void> {
    for (const k of await this.kv.keys()) {
      if (k.startsWith('entry/')) {
        const op = (await this.kv.get(k)) as ContextOp;
        this.clock.receive(op.stamp);
        await this.open(op);
        this.replica.apply(op);
        this.used.set(k, 0);
      } else if (k.startsWith('agreement/')) {
        this.bindings.set(k.slice('agreement/'.length), (await this.kv.get(k)) as Recipient);
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
    this.partial = undefined;
    for (const w of this.syncWaiters.splice(0)) w.done();
    for (const w of this.waiting.values()) w.done(); // it waits in the outbox now
    this.waiting.clear();
    for (const q of this.keyQueries.values()) q([]);
    this.keyQueries.clear();
  }

  private sync(): void {
    if (!this.send) return;
    const full = [...this.apps].filter((a) => !this.held.has(a));
    this.syncId++;
    this.send({ t: 'ctx-sync', id: this.syncId, cursor: this.cursor, apps: [...this.apps], full });
  }

  /**
   * Resolves once this replica holds everything the relay had acknowledged when it was called
   * (one catch-up round trip), or at once offline, or after `timeoutMs`.
   */
  fresh(timeoutMs = 5000): Promise<void> {
    if (!this.send) return Promise.resolve();
    return waitFor<void>(timeoutMs, undefined, (done) => {
      this.sync();
      this.syncWaiters.push({ after: this.syncId, done });
    });
  }

  /**
   * Resolves when the relay acknowledges write `opId` (or at once offline, or after `timeoutMs`:
   * it stays in the outbox); rejects with the relay's error when it refuses it.
   */
  settled(opId: string, timeoutMs = 5000): Promise<void> {
    if (!this.send || !this.outboxed.has(opId)) return Promise.resolve();
    return waitFor<void>(
      timeoutMs,
      undefined,
      (done, fail) => this.waiting.set(opId, { done, fail }),
      () => this.waiting.delete(opId),
    );
  }

  /** A Logic's context operation on its app (PROTOCOL.md §3.4). */
  async serve(app: string, r: ContextRequest): Promise<ContextReply> {
    this.use(app);
    if (r.op === 'get') {
      await this.fresh();
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
          })
        : await this.delete(app, r.key, r.scope);
    await this.settled(opId);
    return {};
  }

  /** A frame from the relay. */
  async receive(frame: ContextFrame): Promise<void> {
    if (frame.t === 'ctx-keys') {
      const q = this.keyQueries.get(frame.id);
      this.keyQueries.delete(frame.id);
      return q?.(frame.found);
    }
    if (frame.t === 'ctx-ack' || frame.t === 'ctx-nack') {
      // A refusal is for good (a limit, a clock far off): replaying it would be refused again.
      await this.outbox.ack(frame.opId);
      const op = this.outboxed.get(frame.opId);
      this.outboxed.delete(frame.opId);
      const w = this.waiting.get(frame.opId);
      this.waiting.delete(frame.opId);
      if (frame.t === 'ctx-ack') return w?.done();
      w?.fail(fromWire(frame.error));
      // Nobody else has it: take it back here too, and fetch the app's state again so the key
      // shows what the relay holds.
      if (op && this.replica.revert(op)) {
        this.used.delete(entryKey(op));
        await this.kv.del(entryKey(op));
        this.held.delete(op.app);
        await this.kv.set('apps', [...this.held]);
        this.sync();
      }
      return;
    }
    // Catch-ups and changes apply one at a time, in arrival order: a catch-up in parts must not
    // have its cursor moved (by its last part) before its earlier parts are stored.
    const run = this.inbound.then(() =>
      frame.t === 'ctx-catchup' ? this.catchUp(frame) : this.change(frame),
    );
    this.inbound = run.catch(() => undefined);
    return run;
  }

  /**
   * One part of a catch-up (PROTOCOL.md §5.5). Each part's ops apply as they come; the cursor
   * moves, the `full` apps count as held and waiters wake only with the last part, and only if
   * every part before it came: otherwise this node asks again.
   */
  private async catchUp(frame: Extract<ContextFrame, { t: 'ctx-catchup' }>): Promise<void> {
    const part = frame.part ?? 0;
    if (frame.id !== undefined && frame.id < this.answered) {
      // The answer to an older sync, after a newer one's: its cursor may pass changes of apps
      // this node has started since (and a relay that took the syncs out of order keeps an old
      // list of them): ask again rather than trust it.
      if (!frame.more) this.sync();
      return;
    }
    if (frame.id !== undefined) this.answered = frame.id;
    const p = this.partial;
    if (part > 0 && !(p && p.id === frame.id && p.next === part)) {
      const mine = p !== undefined && p.id === frame.id;
      if (mine && part < p.next) return; // a duplicate
      // One went missing: this catch-up is incomplete (-1: take no more of it); its last part
      // asks again.
      if (mine) p.next = -1;
      if (!frame.more) {
        this.partial = undefined;
        this.sync();
      }
      return;
    }
    this.partial = frame.more ? { id: frame.id, next: part + 1 } : undefined;
    const changed: [string, unknown][] = [];
    for (const op of frame.ops) {
      this.clock.receive(op.stamp);
      await this.open(op);
      if (!this.replica.apply(op)) continue;
      changed.push([entryKey(op), op]);
    }
    try {
      if (this.kv.setMany) await this.kv.setMany(changed);
      else for (const [k, v] of changed) await this.kv.set(k, v);
      for (const [k] of changed) this.used.set(k, this.now());
    } catch (e) {
      if (!isQuota(e)) throw e;
      this.unstored(changed.length);
    }
    if (frame.more) return;
    // A relay that does not echo sync numbers answers each sync in turn: this is the latest.
    const n = frame.id ?? this.syncId;
    if (frame.full?.length) {
      for (const app of frame.full) this.held.add(app);
      await this.kv.set('apps', [...this.held]);
    }
    await this.moveCursor(frame.cursor);
    for (let i = this.syncWaiters.length - 1; i >= 0; i--) {
      const w = this.syncWaiters[i]!;
      if (w.after <= n) {
        this.syncWaiters.splice(i, 1);
        w.done();
      }
    }
  }

  /** A change the relay (or the parent fog) sends as it happens. */
  private async change(frame: Extract<ContextFrame, { t: 'ctx-op' }>): Promise<void> {
    if (frame.prev !== this.cursor && frame.seq > this.cursor) {
      this.sync(); // a gap: ask for what is missing
      return;
    }
    if (frame.seq <= this.cursor) return;
    await this.take(frame.op);
    await this.moveCursor(frame.seq);
  }

  get(app: string, key: string, scope: Scope = 'app'): ContextRead {
    const r = this.replica.get(app, key, { scope, owner: this.nodeId }, this.now());
    if (!r) return undefined;
    if ('expired' in r) return { expired: true };
    // Stored entries only (`used` lists what storage holds, by when it was last used).
    if (this.used.has(entryKey(r.op))) this.used.set(entryKey(r.op), this.now());
    const expiresAt = r.op.expiresAt;
    const at = expiresAt !== undefined && { expiresAt };
    if (r.sealed) {
      // Sealed for other keys: nothing here to read.
      return this.opened.has(r.op.opId) ? { value: this.opened.get(r.op.opId), ...at } : undefined;
    }
    return { value: decode(r.value), ...at };
  }

  /** Writes `value`; answers the write's operation id. */
  async put(app: string, key: string, value: unknown, o: PutOptions = {}): Promise<string> {
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
    const sealed = keys ? await seal(plain, await this.recipients(keys)) : undefined;
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
    };
    if (sealed) this.opened.set(op.opId, decode(plain));
    return this.write(op);
  }

  /** Deletes `key`; answers the operation id. */
  async delete(app: string, key: string, scope: Scope = 'app'): Promise<string> {
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
    let queued = false;
    try {
      if (!device) {
        await this.outbox.add(op);
        queued = true;
      }
      await this.kv.set(entryKey(op), op);
      this.used.set(entryKey(op), this.now());
    } catch (e) {
      if (!isQuota(e) || device || !this.send) {
        if (queued) await this.outbox.ack(op.opId); // refused: it must not replay later
        throw e;
      }
      this.unstored(1);
    }
    this.clock.receive(op.stamp);
    this.replica.apply(op);
    if (device) return op.opId;
    this.outboxed.set(op.opId, op);
    this.send?.({ t: 'ctx-op', op });
    return op.opId;
  }

  /** Applies a change from the relay and stores it (in memory only while storage stays full). */
  private async take(op: ContextOp): Promise<void> {
    this.clock.receive(op.stamp);
    await this.open(op);
    if (!this.replica.apply(op)) return;
    try {
      await this.kv.set(entryKey(op), op);
      this.used.set(entryKey(op), this.now());
    } catch (e) {
      if (!isQuota(e)) throw e;
      this.unstored(1);
    }
  }

  /**
   * `n` changes live in memory only: from now on the stored cursor stays where storage is
   * complete, so after a reload the relay sends them again.
   */
  private unstored(n: number): void {
    this.storage.unstored += n;
  }

  /**
   * Storage is full: drops stored entries that have expired, else the least recently used
   * node-scoped entry of this node's own (the relay keeps a copy of all but device-private ones),
   * from storage only: this session still reads them. Answers how many it dropped.
   */
  private async evict(): Promise<number> {
    const now = this.now();
    const stored = this.replica.state().filter((op) => this.used.has(entryKey(op)));
    const expired = stored.filter((op) => op.expiresAt !== undefined && op.expiresAt <= now);
    let victims = expired;
    if (!victims.length) {
      const mine = stored.filter((op) => op.scope === 'node' && op.kind === 'put');
      mine.sort((a, b) => (this.used.get(entryKey(a)) ?? 0) - (this.used.get(entryKey(b)) ?? 0));
      victims = mine.slice(0, 1);
    }
    for (const op of victims) {
      await this.kv.del(entryKey(op));
      this.used.delete(entryKey(op));
    }
    if (expired.length) this.storage.evicted.expired += victims.length;
    else this.storage.evicted.lru += victims.length;
    this.storage.lastFull = { at: now, freed: victims.length > 0 };
    return victims.length;
  }

  /** What is stored now (keys, bytes) and what was evicted. */
  usage(): ContextStorage {
    let bytes = 0;
    for (const op of this.replica.state()) {
      if (this.used.has(entryKey(op)))
        bytes += (op.value?.byteLength ?? 0) + (op.sealed?.byteLength ?? 0);
    }
    this.storage.keys = this.used.size;
    this.storage.bytes = bytes;
    return this.storage;
  }

  /** Opens a sealed value this node is a recipient of, into memory. */
  private async open(op: ContextOp): Promise<void> {
    const me = this.me.agreement;
    if (!op.sealed || !me || this.opened.has(op.opId)) return;
    try {
      this.opened.set(op.opId, decode(await unseal(op.sealed, me)));
    } catch (e) {
      if (!(e instanceof BrumeError && e.code === 'E_PRIVACY')) throw e;
    }
  }

  /** The agreement keys to seal for: this node's own, then each key's, checked by signature. */
  private async recipients(keys: string[]): Promise<Recipient[]> {
    for (const k of keys) await nodeIdOf(k); // InputError for what is not a public key
    const missing = keys.filter((k) => k !== this.me.publicKey && !this.bindings.has(k));
    if (missing.length && this.send) {
      const id = this.nextQuery++;
      const found = await waitFor<AgreementBinding[]>(
        5000,
        [],
        (done) => {
          this.keyQueries.set(id, done);
          this.send?.({ t: 'ctx-keys', id, keys: missing });
        },
        () => this.keyQueries.delete(id), // unanswered: not kept for ever
      );
      for (const b of found) {
        if (!missing.includes(b.publicKey)) continue;
        if (!(await verifyAgreement(b.publicKey, b.agreementKey, b.signature))) continue;
        const r = { kid: await kidOf(b.agreementKey), publicKey: b.agreementKey };
        this.bindings.set(b.publicKey, r);
        await this.kv.set(bindingKey(b.publicKey), r);
      }
    }
    return keys.map((k) => {
      if (k === this.me.publicKey && this.me.agreement) return this.me.agreement;
      const r = this.bindings.get(k);
      if (!r) {
        throw new UnavailableError(
          `cannot seal a value for key ${k.slice(0, 16)}…: ${this.send ? 'no node with that key has joined this relay' : 'it was never seen here and the relay is out of reach'}`,
        );
      }
      return r;
    });
  }

  private async moveCursor(to: number): Promise<void> {
    if (to <= this.cursor) return;
    this.cursor = to;
    if (this.storage.unstored === 0) await this.kv.set('cursor', to);
  }
}

const isQuota = (e: unknown) => e instanceof BrumeError && e.code === 'E_QUOTA';

/** A KV whose writes, when storage is full, make room with `evict` and try again. */
function roomMaking(kv: KV, evict: () => Promise<number>): KV {
  // A few rounds at most: a browser may free the space of deleted records only later (Chromium
  // does), and one write must not empty the store.
  const retry = async (write: () => Promise<void>): Promise<void> => {
    for (let round = 0; ; round++) {
      try {
        return await write();
      } catch (e) {
        if ((e as Error)?.name !== 'QuotaExceededError') throw e;
        if (round === 3 || (await evict()) === 0) {
          throw new QuotaError(
            "this device's storage is full, and evicting expired entries and this node's least recently used keys did not make room",
          );
        }
      }
    }
  };
  return {
    get: (k) => kv.get(k),
    del: (k) => kv.del(k),
    keys: () => kv.keys(),
    set: (k, v) => retry(() => kv.set(k, v)),
    ...(kv.setMany && {
      setMany: (entries: [string, unknown][]) => retry(() => kv.setMany!(entries)),
    }),
  };
}

/** Settled by `start`'s callbacks, or resolved with `fallback` after `ms` (then `onTimeout`). */
function waitFor<T>(
  ms: number,
  fallback: T,
  start: (done: (v: T) => void, fail: (e: Error) => void) => void,
  onTimeout?: () => void,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const t = setTimeout(() => {
      onTimeout?.();
      resolve(fallback);
    }, ms);
    start(
      (v) => {
        clearTimeout(t);
        resolve(v);
      },
      (e) => {
        clearTimeout(t);
        reject(e);
      },
    );
  });
}
