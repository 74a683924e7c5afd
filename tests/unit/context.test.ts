import { describe, expect, it } from 'vitest';
import { decode, encode } from '../../core/codec';
import { CatchUpParts } from '../../core/context/catchup';
import { NodeContext, type PutOptions } from '../../core/context/client';
import { Clock, compareStamp } from '../../core/context/hlc';
import { memoryKV, Outbox } from '../../core/context/outbox';
import { type ContextOp, ContextReplica, catchUpFor } from '../../core/context/replica';
import { generateAgreementKey, seal, unseal } from '../../core/context/seal';

const now = 1_000_000;
const op = (over: Partial<ContextOp> & { opId: string }): ContextOp => ({
  app: 'a',
  key: 'k',
  scope: 'app',
  stamp: { wall: now, count: 0, node: 'n1' },
  kind: 'put',
  value: encode(over.opId),
  ...over,
});

describe('hybrid logical clock', () => {
  it('orders by wall, then counter, then node, and never goes back', () => {
    let t = 100;
    const c = new Clock('b', () => t);
    const a = c.tick();
    const b = c.tick(); // same millisecond: the counter moves
    expect(compareStamp(a, b)).toBeLessThan(0);
    c.receive({ wall: 500, count: 3, node: 'z' }); // a clock ahead of ours
    t = 200;
    expect(compareStamp(c.tick(), { wall: 500, count: 3, node: 'z' })).toBeGreaterThan(0);
    expect(
      compareStamp({ wall: 1, count: 0, node: 'a' }, { wall: 1, count: 0, node: 'b' }),
    ).toBeLessThan(0);
  });

  it('refuses a stamp too far in the future', () => {
    const c = new Clock('a', () => 0, 1000);
    expect(() => c.receive({ wall: 5000, count: 0, node: 'x' })).toThrow(/ahead of this clock/);
  });
});

describe('replica', () => {
  it('is idempotent and order-free: the greater stamp wins', () => {
    const older = op({ opId: 'o1', stamp: { wall: 1, count: 0, node: 'x' } });
    const newer = op({ opId: 'o2', stamp: { wall: 2, count: 0, node: 'x' } });
    const a = new ContextReplica();
    const b = new ContextReplica();
    expect([a.apply(older), a.apply(newer), a.apply(newer)]).toEqual([true, true, false]);
    expect([b.apply(newer), b.apply(older)]).toEqual([true, false]);
    expect(decode(a.get('a', 'k', {}, 0)!.value!)).toBe('o2');
    expect(b.state()).toEqual(a.state());
  });

  it('says a key expired, also offline, and forgets it after the horizon', () => {
    const r = new ContextReplica();
    r.apply(op({ opId: 'ttl', expiresAt: now + 100 }));
    expect(r.get('a', 'k', {}, now + 99)).toHaveProperty('value');
    expect(r.get('a', 'k', {}, now + 100)).toEqual({ expired: true });
    expect(r.gc(now + 1101, 1000)).toBe(1);
    expect(r.get('a', 'k', {}, now + 1100)).toBeUndefined();
  });

  it('keeps apps and node scopes apart', () => {
    const r = new ContextReplica();
    r.apply(op({ opId: 'app' }));
    r.apply(op({ opId: 'mine', scope: 'node', owner: 'n1' }));
    r.apply(op({ opId: 'other-app', app: 'b' }));
    expect(decode(r.get('a', 'k', {}, 0)!.value!)).toBe('app');
    expect(decode(r.get('a', 'k', { scope: 'node', owner: 'n1' }, 0)!.value!)).toBe('mine');
    expect(r.get('a', 'k', { scope: 'node', owner: 'n2' }, 0)).toBeUndefined();
    expect(decode(r.get('b', 'k', {}, 0)!.value!)).toBe('other-app');
  });

  it('refuses values and apps over their limits with a clear error', () => {
    const r = new ContextReplica({ maxValueBytes: 10, maxAppBytes: 25 });
    expect(() => r.check(op({ opId: 'x', value: new Uint8Array(11) }))).toThrow(
      /11 bytes is over the limit of 10/,
    );
    r.apply(op({ opId: 'y', key: 'y', value: new Uint8Array(10) }));
    r.apply(op({ opId: 'z', key: 'z', value: new Uint8Array(10) }));
    expect(() => r.check(op({ opId: 'w', key: 'w', value: new Uint8Array(10) }))).toThrow(
      /30 bytes, over the limit of 25/,
    );
    expect(() => r.check(op({ opId: 'w2', key: 'y', value: new Uint8Array(5) }))).not.toThrow();
  });

  it('catches up from its log, or with a snapshot after a long absence', () => {
    const r = new ContextReplica({ logLength: 3 });
    for (let i = 0; i < 10; i++)
      r.apply(op({ opId: `o${i}`, key: `k${i}`, stamp: { wall: i, count: 0, node: 'x' } }));
    const short = r.since(9);
    expect('ops' in short && short.ops.map((e) => e.op.opId)).toEqual(['o9']);
    const long = r.since(1);
    expect('snapshot' in long && long.snapshot).toHaveLength(10);
  });

  it('forgets op ids past the horizon, and a replay of a forgotten op changes nothing', () => {
    const r = new ContextReplica({ seenMs: 1000, maxSeen: 50 });
    const seen: string[] = [];
    r.watch('a', '', (o) => seen.push(o.opId));
    const first = op({ opId: 'first', stamp: { wall: 0, count: 0, node: 'x' } });
    const second = op({ opId: 'second', stamp: { wall: 10, count: 0, node: 'x' } });
    r.apply(first);
    r.apply(second);
    for (let i = 0; i < 1000; i++) {
      r.apply(
        op({ opId: `o${i}`, key: `k${i}`, stamp: { wall: 20 + i * 10, count: 0, node: 'x' } }),
      );
    }
    // Bounded by count and by age, whatever has been applied.
    expect(r.seenCount).toBeLessThanOrEqual(50);
    expect([r.has('first'), r.has('second'), r.has('o999')]).toEqual([false, false, true]);
    // Replays of forgotten ops: the greater stamp holds the key, nothing changes, nobody is told.
    expect([r.apply(first), r.apply(second)]).toEqual([false, false]);
    expect(decode(r.get('a', 'k', {}, 0)!.value!)).toBe('second');
    expect(seen.filter((id) => id === 'first' || id === 'second')).toEqual(['first', 'second']);
  });

  it('cuts a catch-up into parts under the byte budget, the last write of a key only', () => {
    const r = new ContextReplica();
    for (let i = 0; i < 300; i++) {
      // 300 rewrites of one key, and 40 keys of 1 KB.
      r.apply(op({ opId: `big${i}`, stamp: { wall: i, count: 0, node: 'x' } }));
      if (i < 40) {
        r.apply(
          op({
            opId: `s${i}`,
            key: `s${i}`,
            value: new Uint8Array(1000),
            stamp: { wall: i, count: 1, node: 'x' },
          }),
        );
      }
    }
    const parts = catchUpFor(r, { cursor: 0 }, (o) => o, 8_000);
    expect(parts.length).toBeGreaterThan(4);
    for (const p of parts)
      expect(encode({ t: 'ctx-catchup', ...p }).byteLength).toBeLessThan(8_000);
    expect(parts.map((p) => [p.part, p.more])).toEqual(
      parts.map((_, i) => [i || undefined, i < parts.length - 1 || undefined]),
    );
    const ops = parts.flatMap((p) => p.ops.map((o) => o.opId));
    expect(ops.filter((id) => id.startsWith('big'))).toEqual(['big299']);
    expect(ops).toHaveLength(41);
    expect(new Set(parts.map((p) => p.cursor))).toEqual(new Set([r.cursor]));
  });
});

describe('outbox', () => {
  it('replays until acknowledged, and an expired write without its value', async () => {
    const box = new Outbox(memoryKV());
    await box.add(op({ opId: 'keep' }));
    await box.add(op({ opId: 'short', key: 's', expiresAt: now + 10 }));
    expect((await box.due(now)).map((o) => o.opId)).toEqual(['keep', 'short']);
    const later = await box.due(now + 10);
    expect(later.find((o) => o.opId === 'short')).not.toHaveProperty('value');
    await box.ack('keep');
    await box.ack('short');
    expect(await box.due(now + 20)).toEqual([]);
  });
});

describe('sealing', () => {
  it('opens for its recipients only, and not once altered', async () => {
    const [a, b, c] = await Promise.all([
      generateAgreementKey(),
      generateAgreementKey(),
      generateAgreementKey(),
    ]);
    const box = await seal(encode({ secret: 42 }), [a, b]);
    expect(decode(await unseal(box, a))).toEqual({ secret: 42 });
    expect(decode(await unseal(box, b))).toEqual({ secret: 42 });
    await expect(unseal(box, c)).rejects.toThrow(/not sealed for this node/);
    const env = decode(box) as { ct: Uint8Array };
    env.ct[0]! ^= 1;
    await expect(unseal(encode(env), a)).rejects.toThrow(/does not open/);
  });
});

describe('storage full', () => {
  /** A KV with a byte budget that frees space at once (as some browsers do; Chromium frees later). */
  function budgetKV(budget: number) {
    const kv = memoryKV();
    const size = (v: unknown) => encode(v).byteLength;
    const used = () => [...kv.map.values()].reduce<number>((n, v) => n + size(v), 0);
    return {
      ...kv,
      set: async (k: string, v: unknown) => {
        const old = kv.map.has(k) ? size(kv.map.get(k)) : 0;
        if (used() - old + size(v) > budget) {
          throw Object.assign(new Error('quota'), { name: 'QuotaExceededError' });
        }
        kv.map.set(k, v);
      },
    };
  }

  it('evicts expired entries first, then the least recently used of its own, and says so', async () => {
    let t = now;
    const kv = budgetKV(5_000);
    const ctx = new NodeContext({ id: 'n1' }, kv, () => t);
    // A relay that acknowledges at once, so the outbox holds a write only while it is sent.
    await ctx.online((f) => {
      if (f.t === 'ctx-op') void ctx.receive({ t: 'ctx-ack', opId: f.op.opId });
    });
    const put = async (key: string, o: PutOptions) => {
      await ctx.put('a', key, new Uint8Array(1000), o);
      await new Promise((r) => setTimeout(r, 0));
    };
    await put('short', { ttlMs: 10 });
    await put('old', { scope: 'node' });
    t += 5;
    await put('recent', { scope: 'node' });
    t += 1;
    ctx.get('a', 'old', 'node'); // read: now "recent" is the least recently used
    t += 20; // "short" has expired
    const stored = () =>
      [...kv.map.keys()].filter((k) => k.startsWith('entry/')).map((k) => k.split('\u0000')[3]);
    await put('next', { scope: 'node' });
    expect(ctx.storage.evicted).toEqual({ expired: 1, lru: 0 });
    expect(stored()).toEqual(['old', 'recent', 'next']);
    await put('more', { scope: 'node' });
    expect(ctx.storage.evicted).toEqual({ expired: 1, lru: 1 });
    expect(stored()).toEqual(['old', 'next', 'more']);
    // This session still reads what was evicted from storage; nothing had to stay in memory only.
    expect(ctx.get('a', 'recent', 'node')).toMatchObject({ value: new Uint8Array(1000) });
    expect(ctx.usage()).toMatchObject({ keys: 3, unstored: 0, lastFull: { at: t, freed: true } });
  });

  it('offline, a write that cannot be stored is refused and changes nothing', async () => {
    const kv = budgetKV(2_500);
    const ctx = new NodeContext({ id: 'n1' }, kv);
    await ctx.put('a', 'k', new Uint8Array(1000));
    await expect(ctx.put('a', 'k2', new Uint8Array(1000))).rejects.toMatchObject({
      code: 'E_QUOTA',
    });
    expect(ctx.get('a', 'k2')).toBeUndefined();
    await expect(
      ctx.put('a', 'k3', new Uint8Array(1000), { privacy: ['device'] }),
    ).rejects.toMatchObject({ code: 'E_QUOTA' });
    // Online, the same write goes on from memory: the relay keeps it.
    const sent: unknown[] = [];
    await ctx.online((f) => sent.push(f));
    await ctx.put('a', 'k4', new Uint8Array(1000));
    expect(ctx.get('a', 'k4')).toMatchObject({ value: new Uint8Array(1000) });
    expect(sent.some((f) => (f as { t: string }).t === 'ctx-op')).toBe(true);
    expect(ctx.storage.unstored).toBe(1);
  });
});

describe('changes from the relay', () => {
  it('reach watchers while storage is slow; the stored cursor never passes what is stored', async () => {
    const kv = memoryKV();
    let open!: () => void;
    const gate = new Promise<void>((r) => {
      open = r;
    });
    const writes: string[][] = [];
    // Storage that takes no write until the gate opens, and records each transaction's keys.
    const slow = {
      ...kv,
      set: async (k: string, v: unknown) => {
        await gate;
        writes.push([k]);
        await kv.set(k, v);
      },
      setMany: async (entries: [string, unknown][]) => {
        await gate;
        writes.push(entries.map(([k]) => k.split('\u0000').at(-1)!));
        for (const [k, v] of entries) await kv.set(k, v);
      },
    };
    const ctx = new NodeContext({ id: 'n1' }, slow);
    const seen: string[] = [];
    ctx.watch('a', '', (key) => seen.push(key));
    for (let i = 1; i <= 3; i++) {
      await ctx.receive({
        t: 'ctx-op',
        prev: i - 1,
        seq: i,
        op: op({ opId: `o${i}`, key: `k${i}` }),
      });
    }
    // Every change was applied and told while storage had not finished one write.
    expect(seen).toEqual(['k1', 'k2', 'k3']);
    expect(writes).toEqual([]);
    open();
    await ctx.kept();
    // The first change was stored alone, the two that came meanwhile in one batch; each cursor
    // after the entries it covers.
    expect(writes).toEqual([['k1'], ['cursor'], ['k2', 'k3'], ['cursor']]);
    expect(kv.map.get('cursor')).toBe(3);
    // A write of its own is queued and stored in one transaction before it is sent.
    const sent: string[] = [];
    await ctx.online((f) => sent.push(f.t));
    writes.length = 0;
    await ctx.put('a', 'mine', 1);
    expect(writes).toEqual([['mine', expect.stringMatching(/^outbox\//)]]);
    expect(sent).toContain('ctx-op');
  });
});

describe('waiters', () => {
  it('a reader or writer whose wait timed out is gone; one answered in time is too', async () => {
    const ctx = new NodeContext({ id: 'n1' }, memoryKV());
    const sent: { t: string; id?: number }[] = [];
    await ctx.online((f) => sent.push(f)); // a relay that does not answer
    await ctx.fresh(5);
    await ctx.settled(await ctx.put('a', 'k', 1), 5);
    expect(ctx.waiting()).toEqual({ writers: 0, readers: 0, keys: 0 });
    // Answered in time: the reader wakes with the catch-up of its sync and leaves the table.
    const read = ctx.fresh(60_000);
    expect(ctx.waiting().readers).toBe(1);
    const sync = sent.filter((f) => f.t === 'ctx-sync').at(-1)!;
    await ctx.receive({ t: 'ctx-catchup', id: sync.id, ops: [], cursor: 0 });
    await read;
    expect(ctx.waiting()).toEqual({ writers: 0, readers: 0, keys: 0 });
  });

  it('going offline answers every waiter at once', async () => {
    const ctx = new NodeContext({ id: 'n1' }, memoryKV());
    await ctx.online(() => {});
    const waits = [ctx.fresh(60_000), ctx.settled(await ctx.put('a', 'k', 1), 60_000)];
    expect(ctx.waiting()).toMatchObject({ writers: 1, readers: 1 });
    ctx.offline();
    await Promise.all(waits);
    expect(ctx.waiting()).toEqual({ writers: 0, readers: 0, keys: 0 });
  });
});

describe('catch-up parts', () => {
  it('applies parts in order, skips a duplicate, and asks again when one went missing', () => {
    const parts = new CatchUpParts();
    const id = parts.next();
    expect(parts.accept({ id, more: true })).toBe('apply');
    expect(parts.accept({ id, part: 1, more: true })).toBe('apply');
    expect(parts.accept({ id, part: 1, more: true })).toBe('skip'); // a duplicate
    expect(parts.accept({ id, part: 3, more: true })).toBe('skip'); // part 2 went missing
    expect(parts.accept({ id, part: 4 })).toBe('resync');
  });

  it('does not trust the answer to an older sync after a newer one', () => {
    const parts = new CatchUpParts();
    const older = parts.next();
    const newer = parts.next();
    expect(parts.accept({ id: newer })).toBe('apply');
    expect(parts.accept({ id: older, more: true })).toBe('skip');
    expect(parts.accept({ id: older })).toBe('resync');
    expect(parts.answers({})).toBe(newer); // a relay that echoes no number answers the latest
  });
});
