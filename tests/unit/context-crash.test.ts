// Group commit in the relay's context log: many writes share one fsync, and none is acknowledged,
// fanned out or served in a catch-up before its fsync. The crash case runs a real relay process,
// held between write and fsync by its test-only hook (BRUME_TEST_HOLD_CONTEXT_FSYNC), then killed
// with SIGKILL and started again on the same data directory.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { decode, encode } from '../../core/codec';
import type { ContextOp } from '../../core/context/replica';
import type { ToNode } from '../../core/protocol';
import { openContext } from '../../relay/context';
import { joinRaw, type RawNode } from '../raw-node';
import { startRelay } from '../relay-process';
import { until } from '../until';

const fresh = () => mkdtempSync(join(tmpdir(), 'brume-ctxcrash-'));
let n = 0;
const put = (app: string, key: string, value: unknown, node = 'w'): ContextOp => ({
  opId: `op-${++n}-${crypto.randomUUID()}`,
  app,
  key,
  scope: 'app',
  stamp: { wall: Date.now(), count: n, node },
  kind: 'put',
  value: encode(value),
});
const stored = (ctx: Awaited<ReturnType<typeof openContext>>, app: string, key: string) => {
  const r = ctx.replica.get(app, key, {}, Date.now());
  return r?.value ? decode(r.value) : undefined;
};

describe('group commit', () => {
  it('stores concurrent writes with fewer fsyncs than writes, each acknowledged once stored', async () => {
    const dir = fresh();
    const ctx = await openContext(dir);
    const ops = Array.from({ length: 200 }, (_, i) => put('app', `k${i}`, i));
    const seqs = await Promise.all(ops.map((op) => ctx.accept(op, '')));
    expect(seqs.every((s) => s > 0)).toBe(true);
    expect(new Set(seqs).size).toBe(200);
    const { syncs, records } = ctx.files();
    expect(records).toBe(200);
    expect(syncs).toBeLessThan(200);
    await ctx.close();
    const again = await openContext(dir);
    expect(ops.map((_, i) => stored(again, 'app', `k${i}`))).toEqual(ops.map((_, i) => i));
    await again.close();
  });

  it('answers a write sent twice while it is stored once: its position, then 0', async () => {
    const ctx = await openContext(fresh());
    const op = put('app', 'k', 1);
    const [a, b] = await Promise.all([ctx.accept(op, ''), ctx.accept(op, '')]);
    expect([a > 0, b]).toEqual([true, 0]);
    expect(ctx.files().records).toBe(1);
    await ctx.close();
  });

  it('checks the app limit against the writes still waiting for the disk', async () => {
    const ctx = await openContext(fresh(), { limits: { maxAppBytes: 1000 } });
    const big = new Uint8Array(400);
    const results = await Promise.allSettled(
      [0, 1, 2].map((i) => ctx.accept(put('app', `k${i}`, big), '')),
    );
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'fulfilled', 'rejected']);
    expect(String((results[2] as PromiseRejectedResult).reason)).toMatch(/over the limit of 1000/);
    await ctx.close();
  });

  it('refuses a write when the queue for the disk is full, naming the limit; stores the rest', async () => {
    const dir = fresh();
    const ctx = await openContext(dir, { maxQueuedWrites: 3 });
    const ops = Array.from({ length: 10 }, (_, i) => put('app', `k${i}`, i));
    const results = await Promise.allSettled(ops.map((op) => ctx.accept(op, '')));
    const refused = results.flatMap((r, i) =>
      r.status === 'rejected' ? [{ i, e: r.reason }] : [],
    );
    // The first is being stored, three wait: the other six are refused at once.
    expect(refused.map((r) => r.i)).toEqual([4, 5, 6, 7, 8, 9]);
    for (const { e } of refused) {
      expect(e.code).toBe('E_UNAVAILABLE');
      expect(e.message).toMatch(/write queue is full .*limits 3 writes/);
    }
    await ctx.close();
    const again = await openContext(dir);
    expect(ops.map((_, i) => stored(again, 'app', `k${i}`))).toEqual([
      0,
      1,
      2,
      3,
      ...Array(6).fill(undefined),
    ]);
    await again.close();
  });
});

describe('a relay killed between write and fsync', () => {
  it('loses no acknowledged write and reports no unacknowledged one as written', async () => {
    const dataDir = fresh();
    const app = 'crash';
    const acked = 20;
    process.env.BRUME_TEST_HOLD_CONTEXT_FSYNC = String(acked);
    const relay = await startRelay({ dataDir, args: ['--no-cloud'] }).finally(() => {
      delete process.env.BRUME_TEST_HOLD_CONTEXT_FSYNC;
    });
    const ws = `${relay.url.replace('http', 'ws')}/ws`;
    try {
      const { node: writer } = await joinRaw(ws);
      const { node: watcher } = await joinRaw(ws);
      watcher.send({ t: 'ctx-sync', cursor: 0, apps: [app] });
      await watcher.next('ctx-catchup');

      // 20 writes in flight at once: every one acknowledged (they share fsyncs).
      const first = Array.from({ length: acked }, (_, i) =>
        put(app, `k${i}`, i, writer.identity.id),
      );
      for (const op of first) writer.send({ t: 'ctx-op', op });
      const acks = (node: RawNode) =>
        new Set(node.frames.flatMap((f) => (f.t === 'ctx-ack' ? [f.opId] : [])));
      await until(() => acks(writer).size === acked, `${acked} acknowledgements`);
      expect(writer.frames.some((f) => f.t === 'ctx-nack')).toBe(false);

      // Five more: the relay writes the first of them to its log and holds the fsync.
      const late = Array.from({ length: 5 }, (_, i) =>
        put(app, `k${i}`, `late ${i}`, writer.identity.id),
      );
      for (const op of late) writer.send({ t: 'ctx-op', op });
      await until(
        () => /BRUME_TEST_HOLD_CONTEXT_FSYNC: holding/.test(relay.output()),
        'the relay to hold its fsync',
      );
      // Frames on one socket are taken in order: this catch-up comes after all five were taken.
      writer.send({ t: 'ctx-sync', id: 1, cursor: 0, apps: [app] });
      const catchUp = await writer.next('ctx-catchup');
      const lateIds = new Set(late.map((op) => op.opId));
      const shown = (frames: ToNode[]) =>
        frames.flatMap((f) => (f.t === 'ctx-catchup' ? f.ops : f.t === 'ctx-op' ? [f.op] : []));
      expect(catchUp.ops.map((op) => decode(op.value!))).toEqual(first.map((_, i) => i));
      expect(shown(watcher.frames).filter((op) => lateIds.has(op.opId))).toEqual([]);
      expect([...acks(writer)].filter((id) => lateIds.has(id))).toEqual([]);

      const exited = new Promise((r) => relay.child.once('exit', r));
      relay.child.kill('SIGKILL');
      await exited;
    } finally {
      // Killed: its exit code stays null (a signal ended it), and stop() would wait for an exit.
      if (relay.child.signalCode === null) await relay.stop();
    }

    const again = await startRelay({ dataDir, args: ['--no-cloud'] });
    try {
      expect(again.output()).not.toMatch(/stopped at byte|corrupt/);
      const ws2 = `${again.url.replace('http', 'ws')}/ws`;
      const { node } = await joinRaw(ws2);
      node.send({ t: 'ctx-sync', cursor: 0, apps: [app] });
      const restored = await node.next('ctx-catchup');
      const byKey = new Map(restored.ops.map((op) => [op.key, decode(op.value!)]));
      // Each key holds its acknowledged value, or (a write that reached the page cache before the
      // kill) the unacknowledged one whole: never anything torn, never an acknowledged one lost.
      for (let i = 0; i < acked; i++) {
        expect([i, ...(i < 5 ? [`late ${i}`] : [])]).toContain(byKey.get(`k${i}`));
      }
    } finally {
      await again.stop();
    }
  }, 120_000);
});
