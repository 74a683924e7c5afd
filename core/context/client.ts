/**
 * A node's side of the context store: its replica (persisted through a KV: IndexedDB in a tab),
 * its outbox of writes the relay has not acknowledged, and the API apps use. Online, writes go to
 * the relay, which orders them and sends every node what it may hold; offline, reads serve the
 * local copy while it is valid and writes wait in the outbox.
 * @example const ctx = new NodeContext(nodeId, kv); await ctx.load();
 *          await ctx.put('vad', 'state', { h: [...] }, { ttlMs: 2000 });
 */
import { decode, encode } from '../codec';
import { BrumeError, InputError } from '../errors';
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
    this.send = send;
    for (const op of await this.outbox.due(this.now())) send({ t: 'ctx-op', op });
    send({ t: 'ctx-sync', cursor: this.cursor });
  }

  offline(): void {
    this.send = undefined;
  }

  /** A frame from the relay. */
  async receive(
    frame:
      | { t: 'ctx-ack'; opId: string }
      | { t: 'ctx-op'; prev: number; seq: number; op: ContextOp }
      | { t: 'ctx-catchup'; ops: ContextOp[]; cursor: number },
  ): Promise<void> {
    if (frame.t === 'ctx-ack') return this.outbox.ack(frame.opId);
    if (frame.t === 'ctx-catchup') {
      const changed: [string, unknown][] = [];
      for (const op of frame.ops) {
        this.clock.receive(op.stamp);
        if (this.replica.apply(op)) changed.push([entryKey(op), op]);
      }
      if (this.kv.setMany) await this.kv.setMany(changed);
      else for (const [k, v] of changed) await this.kv.set(k, v);
      return this.moveCursor(frame.cursor);
    }
    if (frame.prev !== this.cursor && frame.seq > this.cursor) {
      this.send?.({ t: 'ctx-sync', cursor: this.cursor }); // a gap: ask for what is missing
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

  async put(app: string, key: string, value: unknown, o: PutOptions = {}): Promise<void> {
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
    await this.write(op);
  }

  async delete(app: string, key: string, scope: Scope = 'app'): Promise<void> {
    const stamp = this.clock.tick();
    await this.write({
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

  private async write(op: ContextOp): Promise<void> {
    this.replica.check(op);
    await this.take(op);
    // Device-private values stay here: not in the outbox, never sent.
    if (op.privacy?.[0] === 'device') return;
    await this.outbox.add(op);
    this.send?.({ t: 'ctx-op', op });
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
