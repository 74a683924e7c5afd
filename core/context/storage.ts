/**
 * The entries a node's context store keeps in its KV (IndexedDB in a tab), and what it does when
 * that storage is full: drop expired entries, then the least recently used node-scoped ones of its
 * own, and count what it had to keep in memory only. The replica (core/context/replica.ts) holds
 * every entry; this side says which of them storage holds too.
 * @example const stored = new StoredEntries(kv, replica);  await stored.keep([op]);  stored.usage();
 */
import { BrumeError, QuotaError } from '../errors';
import type { KV } from './outbox';
import type { ContextOp, ContextReplica } from './replica';

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

export const entryKey = (op: ContextOp) =>
  `entry/${op.app}\u0000${op.scope}\u0000${op.owner ?? ''}\u0000${op.key}`;

export const isQuota = (e: unknown) => e instanceof BrumeError && e.code === 'E_QUOTA';

export class StoredEntries {
  /** The KV, wrapped so a write that finds storage full makes room and tries again. */
  readonly kv: KV;
  readonly stats: ContextStorage = {
    keys: 0,
    bytes: 0,
    evicted: { expired: 0, lru: 0 },
    unstored: 0,
  };
  /** Each entry in storage, by when it was last read or written (for LRU eviction). */
  private readonly used = new Map<string, number>();

  constructor(
    kv: KV,
    private readonly replica: ContextReplica,
    private readonly now: () => number = Date.now,
  ) {
    // One eviction at a time: writes that hit the quota together share it.
    let evicting: Promise<number> | undefined;
    this.kv = roomMaking(kv, () => {
      evicting ??= this.evict().finally(() => {
        evicting = undefined;
      });
      return evicting;
    });
  }

  /** `key` was found in storage at load. */
  loaded(key: string): void {
    this.used.set(key, 0);
  }

  /** `op` was read: it moves to the back of the eviction line (if storage holds it). */
  touch(op: ContextOp): void {
    const k = entryKey(op);
    if (this.used.has(k)) this.used.set(k, this.now());
  }

  /**
   * Stores `op`, and the entries `also` in the same transaction where the KV can; throws E_QUOTA
   * when storage stays full.
   */
  async set(op: ContextOp, also: [string, unknown][] = []): Promise<void> {
    const entries: [string, unknown][] = [[entryKey(op), op], ...also];
    if (this.kv.setMany) await this.kv.setMany(entries);
    else for (const [k, v] of entries) await this.kv.set(k, v);
    this.used.set(entryKey(op), this.now());
  }

  /** Stores `ops`, or counts them as kept in memory only when storage stays full. */
  async keep(ops: ContextOp[]): Promise<void> {
    const entries: [string, unknown][] = ops.map((op) => [entryKey(op), op]);
    try {
      if (this.kv.setMany) await this.kv.setMany(entries);
      else for (const [k, v] of entries) await this.kv.set(k, v);
      for (const [k] of entries) this.used.set(k, this.now());
    } catch (e) {
      if (!isQuota(e)) throw e;
      this.unstored(entries.length);
    }
  }

  /** Removes `op`'s entry from storage. */
  async remove(op: ContextOp): Promise<void> {
    this.used.delete(entryKey(op));
    await this.kv.del(entryKey(op));
  }

  /**
   * `n` changes live in memory only: from now on the stored cursor stays where storage is
   * complete, so after a reload the relay sends them again.
   */
  unstored(n: number): void {
    this.stats.unstored += n;
  }

  /** Whether storage holds every change this node has taken (the cursor may be stored). */
  get complete(): boolean {
    return this.stats.unstored === 0;
  }

  /** What is stored now (keys, bytes) and what was evicted. */
  usage(): ContextStorage {
    let bytes = 0;
    for (const op of this.replica.state()) {
      if (this.used.has(entryKey(op)))
        bytes += (op.value?.byteLength ?? 0) + (op.sealed?.byteLength ?? 0);
    }
    this.stats.keys = this.used.size;
    this.stats.bytes = bytes;
    return this.stats;
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
    if (expired.length) this.stats.evicted.expired += victims.length;
    else this.stats.evicted.lru += victims.length;
    this.stats.lastFull = { at: now, freed: victims.length > 0 };
    return victims.length;
  }
}

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
