/**
 * Writes a node made while cut off from the relay, kept until the relay acknowledges them. They are
 * replayed on reconnect with their operation ids, which the relay applies once however often they
 * arrive; a write whose value expired while it waited is replayed without its value.
 * @example const box = new Outbox(memoryKV()); await box.add(op); for (const op of await box.due(now)) send(op);
 */
import type { ContextOp } from './replica';

/** Where the outbox persists: IndexedDB (idb-keyval) in a tab, a Map in tests. */
export interface KV {
  get(key: string): Promise<unknown>;
  set(key: string, value: unknown): Promise<void>;
  del(key: string): Promise<void>;
  keys(): Promise<string[]>;
  /** Many writes in one transaction (a catch-up of thousands of keys), where the store can. */
  setMany?(entries: [string, unknown][]): Promise<void>;
}

export function memoryKV(): KV & { map: Map<string, unknown> } {
  const map = new Map<string, unknown>();
  return {
    map,
    get: async (k) => map.get(k),
    set: async (k, v) => void map.set(k, v),
    del: async (k) => void map.delete(k),
    keys: async () => [...map.keys()],
  };
}

const prefix = 'outbox/';

export class Outbox {
  constructor(private readonly kv: KV) {}

  async add(op: ContextOp): Promise<void> {
    await this.kv.set(...this.entry(op));
  }

  /** The KV entry `add` writes, to write it in one transaction with others. */
  entry(op: ContextOp): [string, ContextOp] {
    return [prefix + op.opId, op];
  }

  /** What to send now, oldest first; expired writes are dropped from the outbox here. */
  async due(now: number): Promise<ContextOp[]> {
    const ops: ContextOp[] = [];
    for (const k of await this.kv.keys()) {
      if (!k.startsWith(prefix)) continue;
      const op = (await this.kv.get(k)) as ContextOp | undefined;
      if (!op) continue;
      const stale = op.kind === 'put' && op.expiresAt !== undefined && op.expiresAt <= now;
      if (stale && (op.value || op.sealed)) {
        // Its value expired while it waited: the value is dropped, the write keeps its place in
        // the order, so every replica agrees the key expired rather than showing an older value.
        const { value: _v, sealed: _s, ...expired } = op;
        await this.kv.set(k, expired);
        ops.push(expired);
      } else ops.push(op);
    }
    return ops.sort((a, b) => a.stamp.wall - b.stamp.wall || a.stamp.count - b.stamp.count);
  }

  /** The relay has it: never send it again. */
  async ack(opId: string): Promise<void> {
    await this.kv.del(prefix + opId);
  }
}
