/**
 * A node's side of the context store: its replica (persisted through a KV: IndexedDB in a tab),
 * its outbox of writes the relay has not acknowledged, and the API apps use. Online, writes go to
 * the relay, which orders them and sends every node what it may hold; offline, reads serve the
 * local copy while it is valid and writes wait in the outbox.
 * @example const ctx = new NodeContext(nodeId, kv); await ctx.load();
 *          await ctx.put('vad', 'state', { h: [...] }, { ttlMs: 2000 });
 */
import type { ContextReply, ContextRequest } from '../abi/invoke';
import { decode, encode } from '../codec';
import { BrumeError, InputError } from '../errors';
import { fromWireError, type WireError } from '../protocol';
import { Clock } from './hlc';
import { type KV, Outbox } from './outbox';
import { type ContextOp, ContextReplica, type Scope } from './replica';

export interface PutOptions {
  scope?: Scope;
  ttlMs?: number;
  /** ['device']: this node only, never sent anywhere. (Sealing for trusted keys: not yet.) */
  privacy?: string[];
}

export type ContextRead = { value: unknown; expiresAt?: number } | { expired: true } | undefined;

/** Frames this side sends to the relay (the fabric carries them). */
export type ContextSend = (
  frame: { t: 'ctx-op'; op: ContextOp } | { t: 'ctx-sync'; cursor: number },
) => void;

const entryKey = (op: ContextOp) =>
  `entry/${op.app}\u0000${op.scope}\u0000${op.owner ?? ''}\u0000${op.key}`;

export class NodeContext {
  readonly replica = new ContextReplica();
  private readonly clock: Clock;
  private readonly outbox: Outbox;
  private cursor = 0;
  private send: ContextSend | undefined;
  /** Writes whose sender waits for the relay's answer. */
  private readonly waiting = new Map<string, { done: () => void; fail: (e: Error) => void }>();
  /** Catch-ups asked for and received on this connection: the relay answers each sync in turn. */
  private syncsSent = 0;
  private catchUps = 0;
  private readonly syncWaiters: { after: number; done: () => void }[] = [];
  /** Writes sent and not yet answered by the relay. */
  private readonly outboxed = new Set<string>();

  constructor(
    private readonly nodeId: string,
    private readonly kv: KV,
    private readonly now: () => number = Date.now,
  ) {
    this.clock = new Clock(nodeId, now);
    this.outbox = new Outbox(kv);
  }

  /** Restores the replica and the cursor from the KV (a reload keeps its context). */
  async load(): Promise<void> {
    for (const k of await this.kv.keys()) {
      if (!k.startsWith('entry/')) continue;
      const op = (await this.kv.get(k)) as ContextOp;
      this.clock.receive(op.stamp);
      this.replica.apply(op);
    }
    this.cursor = ((await this.kv.get('cursor')) as number | undefined) ?? 0;
  }

  /** The relay is reachable through `send`: replay the outbox, then catch up. */
  async online(send: ContextSend): Promise<void> {
    this.offline();
    this.send = send;
    for (const op of await this.outbox.due(this.now())) send({ t: 'ctx-op', op });
    this.sync();
  }

  offline(): void {
    this.send = undefined;
    this.syncsSent = this.catchUps = 0;
    for (const w of this.syncWaiters.splice(0)) w.done();
    for (const w of this.waiting.values()) w.done(); // it waits in the outbox now
    this.waiting.clear();
  }

  private sync(): void {
    if (!this.send) return;
    this.syncsSent++;
    this.send({ t: 'ctx-sync', cursor: this.cursor });
  }

  /**
   * Resolves once this replica holds everything the relay had acknowledged when it was called
   * (one catch-up round trip), or at once offline, or after `timeoutMs`.
   */
  fresh(timeoutMs = 5000): Promise<void> {
    if (!this.send) return Promise.resolve();
    return new Promise((resolve) => {
      const t = setTimeout(resolve, timeoutMs);
      this.syncWaiters.push({ after: this.syncsSent + 1, done: () => (clearTimeout(t), resolve()) });
      this.sync();
    });
  }

  /**
   * Resolves when the relay acknowledges write `opId` (or at once offline, or after `timeoutMs`:
   * it stays in the outbox); rejects with the relay's error when it refuses it.
   */
  settled(opId: string, timeoutMs = 5000): Promise<void> {
    if (!this.send || !this.outboxed.has(opId)) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => (this.waiting.delete(opId), resolve()), timeoutMs);
      this.waiting.set(opId, {
        done: () => (clearTimeout(t), resolve()),
        fail: (e) => (clearTimeout(t), reject(e)),
      });
    });
  }

  /** A Logic's context operation on its app (PROTOCOL.md §3.4). */
  async serve(app: string, r: ContextRequest): Promise<ContextReply> {
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
  async receive(
    frame:
      | { t: 'ctx-ack'; opId: string }
      | { t: 'ctx-nack'; opId: string; error: WireError }
      | { t: 'ctx-op'; prev: number; seq: number; op: ContextOp }
      | { t: 'ctx-catchup'; ops: ContextOp[]; cursor: number },
  ): Promise<void> {
    if (frame.t === 'ctx-ack' || frame.t === 'ctx-nack') {
      // A refusal is for good (a limit, a clock far off): replaying it would be refused again.
      await this.outbox.ack(frame.opId);
      this.outboxed.delete(frame.opId);
      const w = this.waiting.get(frame.opId);
      this.waiting.delete(frame.opId);
      if (frame.t === 'ctx-ack') w?.done();
      else w?.fail(fromWireError(frame.error));
      return;
    }
    if (frame.t === 'ctx-catchup') {
      const n = ++this.catchUps;
      const changed: [string, unknown][] = [];
      for (const op of frame.ops) {
        this.clock.receive(op.stamp);
        if (this.replica.apply(op)) changed.push([entryKey(op), op]);
      }
      if (this.kv.setMany) await this.kv.setMany(changed);
      else for (const [k, v] of changed) await this.kv.set(k, v);
      await this.moveCursor(frame.cursor);
      for (let i = this.syncWaiters.length - 1; i >= 0; i--) {
        const w = this.syncWaiters[i]!;
        if (w.after <= n) {
          this.syncWaiters.splice(i, 1);
          w.done();
        }
      }
      return;
    }
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
    if (!r.value) return undefined;
    const expiresAt = r.op.expiresAt;
    return { value: decode(r.value), ...(expiresAt !== undefined && { expiresAt }) };
  }

  /** Writes `value`; answers the write's operation id. */
  async put(app: string, key: string, value: unknown, o: PutOptions = {}): Promise<string> {
    if (o.ttlMs !== undefined && !(o.ttlMs > 0))
      throw new InputError('ttlMs must be a positive number');
    if (o.privacy && !(o.privacy.length === 1 && o.privacy[0] === 'device')) {
      throw new BrumeError(
        'E_UNSUPPORTED',
        'context privacy for trusted keys is not available yet; use privacy ["device"] to keep a value on this node',
      );
    }
    const stamp = this.clock.tick();
    const op: ContextOp = {
      opId: crypto.randomUUID(),
      app,
      key,
      scope: o.scope ?? 'app',
      ...(o.scope === 'node' ? { owner: this.nodeId } : {}),
      stamp,
      kind: 'put',
      value: encode(value),
      ...(o.ttlMs !== undefined && { expiresAt: stamp.wall + o.ttlMs }),
      ...(o.privacy && { privacy: o.privacy }),
    };
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
    return this.replica.watch(app, prefix, (op) => {
      if (op.scope === 'node' && op.owner !== this.nodeId) return;
      cb(op.key, this.get(app, op.key, op.scope));
    });
  }

  private async write(op: ContextOp): Promise<string> {
    this.replica.check(op);
    await this.take(op);
    // Device-private values stay here: not in the outbox, never sent.
    if (op.privacy?.[0] === 'device') return op.opId;
    await this.outbox.add(op);
    this.outboxed.add(op.opId);
    this.send?.({ t: 'ctx-op', op });
    return op.opId;
  }

  private async take(op: ContextOp): Promise<void> {
    this.clock.receive(op.stamp);
    if (this.replica.apply(op)) await this.kv.set(entryKey(op), op);
  }

  private async moveCursor(to: number): Promise<void> {
    if (to <= this.cursor) return;
    this.cursor = to;
    await this.kv.set('cursor', to);
  }
}
