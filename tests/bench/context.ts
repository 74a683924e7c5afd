// How fast context changes spread (to simulated nodes and to tabs), how many writes per second
// the relay acknowledges, and what a stateful stream pays to move between nodes.
import { mkdtempSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser } from 'playwright-core';
import { encode } from '../../core/codec';
import { decodeFrame } from '../../core/protocol';
import { FRAME, loadFixture } from '../../models/vad/vad';
import { openContext } from '../../relay/context';
import { ctxOp, writesAcked } from './context-writes';
import { joinMany } from './decisions';

const pct = (xs: number[], q: number) =>
  [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(q * xs.length))] ?? Number.NaN;

/**
 * Context propagation to `n` simulated nodes: one writes, every other one times the write's
 * arrival (same process, same clock). Also writes per second acknowledged by the relay (each one
 * fsynced before its acknowledgement; writes in flight together share an fsync), with 8 writes in
 * flight from each of 10 writers. Past 100 nodes this process, which decodes every frame each
 * simulated node receives, bounds the rate more than the relay does.
 */
export async function contextRates(wsUrl: string, n: number, writes = 50) {
  const nodes = await joinMany(wsUrl, n);
  const [writer, ...watchers] = nodes;
  const app = `bench-${n}`;
  const arrivals = new Map<string, number[]>();
  const sentAt = new Map<string, number>();
  for (const w of watchers) {
    // A fresh app per run: the catch-up each watcher gets holds nothing of earlier runs.
    w.send({ t: 'ctx-sync', cursor: 0, apps: [app] });
    w.ws.on('message', (data) => {
      const f = decodeFrame(new Uint8Array(data as Buffer), 'toNode');
      if (f.t !== 'ctx-op') return;
      const t0 = sentAt.get(f.op.opId);
      if (t0 !== undefined) arrivals.get(f.op.opId)!.push(performance.now() - t0);
    });
  }
  await Promise.all(watchers.map((w) => w.next('ctx-catchup', 30_000)));
  const all: number[] = [];
  const lastArrival: number[] = [];
  for (let i = 0; i < writes; i++) {
    const op = ctxOp(app, writer!, `k${i % 10}`, i, i);
    arrivals.set(op.opId, []);
    sentAt.set(op.opId, performance.now());
    writer!.send({ t: 'ctx-op', op });
    const deadline = performance.now() + 10_000;
    while (arrivals.get(op.opId)!.length < watchers.length && performance.now() < deadline) {
      await new Promise((r) => setTimeout(r, 1));
    }
    const got = arrivals.get(op.opId)!;
    all.push(...got);
    lastArrival.push(Math.max(...got));
  }
  // Throughput: 10 writers, 8 writes in flight each, for 3 s.
  const writesPerSecond = await writesAcked(app, nodes.slice(0, 10));
  for (const node of nodes) node.ws.close();
  return {
    nodes: n,
    p50Ms: pct(all, 0.5),
    p99Ms: pct(all, 0.99),
    allReachedP50Ms: pct(lastArrival, 0.5),
    allReachedP99Ms: pct(lastArrival, 0.99),
    writesPerSecond,
  };
}

/**
 * The relay's context store alone (no sockets, no fan-out): writes per second it acknowledges,
 * and the time from `accept` to acknowledgement, with `inFlight` writes outstanding for `ms`. With
 * one in flight each write pays a whole fsync; with many, one fsync stores all that arrived while
 * the previous one ran (group commit).
 */
export async function contextStoreRate(inFlight: number, ms = 2000) {
  const dir = mkdtempSync(join(tmpdir(), 'brume-bench-ctx-'));
  const ctx = await openContext(dir);
  let k = 0;
  const lat: number[] = [];
  const t0 = performance.now();
  try {
    await Promise.all(
      Array.from({ length: inFlight }, async (_, w) => {
        while (performance.now() - t0 < ms) {
          const s = performance.now();
          const count = k++;
          await ctx.accept(
            {
              opId: crypto.randomUUID(),
              app: 'bench',
              key: `w${w}-${count % 20}`,
              scope: 'app',
              stamp: { wall: Date.now(), count, node: 'bench' },
              kind: 'put',
              value: encode(count),
            },
            '',
          );
          lat.push(performance.now() - s);
        }
      }),
    );
  } finally {
    await ctx.close();
    await rm(dir, { recursive: true, force: true });
  }
  const secs = (performance.now() - t0) / 1000;
  return {
    inFlight,
    writesPerSecond: lat.length / secs,
    p50Ms: pct(lat, 0.5),
    p99Ms: pct(lat, 0.99),
  };
}

/**
 * Context propagation to `n` tabs: one writes, the others' watchers time the arrival. Also the
 * writer's side of each write: its own storage write, then the relay's acknowledgement.
 */
export async function contextToTabs(browser: Browser, url: string, n: number, writes = 50) {
  const run = crypto.randomUUID();
  const contexts = await Promise.all(Array.from({ length: n + 1 }, () => browser.newContext()));
  try {
    const pages = await Promise.all(
      contexts.map(async (c) => {
        const page = await c.newPage();
        await page.addInitScript('globalThis.__name = (f) => f');
        await page.goto(url);
        await page.evaluate(async (run) => {
          await window.brume.ready;
          await (await window.brumeDebug.fabric).whenJoined(20_000);
          const g = globalThis as unknown as { arrivals: number[][] };
          g.arrivals = [];
          window.brume.context('bench-tabs').watch('', (_k, read) => {
            const v = (read as { value?: { run: string; i: number; at: number } } | undefined)
              ?.value;
            if (v?.run !== run) return; // older values arriving with the catch-up
            // Absolute time from the same machine clock as the writer's.
            g.arrivals.push([v.i, performance.timeOrigin + performance.now() - v.at]);
          });
        }, run);
        return page;
      }),
    );
    const [writer, ...watchers] = pages;
    // What `put` is made of on the writer: its own storage write (outbox and entry, IndexedDB)
    // until it is sent, then the relay's answer (its fsync and the round trip).
    const stages: { storedMs: number; ackMs: number }[] = [];
    for (let i = 0; i < writes; i++) {
      stages.push(
        await writer!.evaluate(
          async ([i, run]) => {
            const ctx = (await window.brumeDebug.fabric).context!;
            const t0 = performance.now();
            const at = performance.timeOrigin + t0;
            const opId = await ctx.put('bench-tabs', `k${Number(i) % 5}`, { run, i, at });
            const t1 = performance.now();
            await ctx.settled(opId);
            return { storedMs: t1 - t0, ackMs: performance.now() - t1 };
          },
          [i, run] as const,
        ),
      );
      await writer!.waitForTimeout(20);
    }
    // Every watcher sees every write (50, across 5 keys: each a change), or 10 s pass.
    for (const w of watchers) {
      await w
        .waitForFunction(
          (n) => (globalThis as unknown as { arrivals: unknown[] }).arrivals.length >= n,
          writes,
          { timeout: 10_000 },
        )
        .catch(() => undefined);
    }
    const lat: number[] = [];
    for (const w of watchers) {
      const got = await w.evaluate(
        () => (globalThis as unknown as { arrivals: number[][] }).arrivals,
      );
      lat.push(...got.map(([, ms]) => ms!));
    }
    const stored = stages.map((x) => x.storedMs);
    const acked = stages.map((x) => x.ackMs);
    return {
      tabs: n,
      samples: lat.length,
      p50Ms: pct(lat, 0.5),
      p99Ms: pct(lat, 0.99),
      writerStore: { p50Ms: pct(stored, 0.5), p99Ms: pct(stored, 0.99) },
      relayAck: { p50Ms: pct(acked, 0.5), p99Ms: pct(acked, 0.99) },
    };
  } finally {
    for (const c of contexts) await c.close();
  }
}

/**
 * The vad app streaming the fixture in chunks of 4 frames from one tab, the Silero state kept in
 * the context store: every chunk on the calling tab, every chunk on one other tab, and chunks
 * rotating over three tabs. Per chunk: the whole call, the model's own run() time inside it
 * (4 runs), and the rest (Logic, context read and acknowledged write, the hop).
 */
export async function vadStream(browser: Browser, url: string, rtc: boolean, chunks = 60) {
  const { samples } = loadFixture();
  const bytes = new Uint8Array(samples.buffer, samples.byteOffset, samples.byteLength);
  const step = 4 * FRAME * 4;
  const parts = Array.from({ length: Math.min(chunks, Math.floor(bytes.length / step)) }, (_, i) =>
    Buffer.from(bytes.subarray(i * step, (i + 1) * step)).toString('base64'),
  );
  const contexts = await Promise.all([0, 1, 2].map(() => browser.newContext()));
  try {
    const tabs = await Promise.all(
      contexts.map(async (c) => {
        if (rtc) await c.grantPermissions(['microphone', 'camera'], { origin: url });
        const page = await c.newPage();
        await page.addInitScript('globalThis.__name = (f) => f');
        await page.goto(url);
        const id = await page.evaluate(async () => {
          await window.brume.ready;
          const f = await window.brumeDebug.fabric;
          await f.whenJoined(20_000);
          return f.nodeId;
        });
        return { page, id };
      }),
    );
    const caller = tabs[0]!.page;
    const run = async (label: string, pins: string[]) =>
      caller.evaluate(
        async ({ parts, pins, stream }) => {
          const rows: { ms: number; modelMs: number; via: string }[] = [];
          for (let i = 0; i < parts.length; i++) {
            const samples = Uint8Array.from(atob(parts[i]!), (c) => c.charCodeAt(0));
            const t0 = performance.now();
            const r = await window.brume.invoke(
              'vad',
              'detect',
              { stream, samples },
              { privacy: pins[i % pins.length]! },
            );
            const ms = performance.now() - t0;
            const modelMs = r.trace
              .filter((t) => t.kind === 'model')
              .reduce((n, t) => n + (t.engineMs ?? t.ms), 0);
            rows.push({ ms, modelMs, via: r.via });
          }
          return rows;
        },
        { parts, pins, stream: `${label}-${crypto.randomUUID()}` },
      );
    const ids = tabs.map((t) => t.id);
    const out = [];
    for (const [label, pins] of [
      ['the calling tab', [ids[0]!]],
      ['one other tab', [ids[1]!]],
      ['rotating over 3 tabs', ids],
    ] as const) {
      await run(`warm-${label}`, [...pins]); // models loaded, channels open
      const rows = await run(label, [...pins]);
      const call = rows.map((r) => r.ms);
      const model = rows.map((r) => r.modelMs);
      const rest = rows.map((r) => r.ms - r.modelMs);
      out.push({
        where: label,
        via: [...new Set(rows.map((r) => r.via))].join('+'),
        chunks: rows.length,
        p50Ms: pct(call, 0.5),
        p90Ms: pct(call, 0.9),
        modelP50Ms: pct(model, 0.5),
        restP50Ms: pct(rest, 0.5),
      });
    }
    return out;
  } finally {
    for (const c of contexts) await c.close();
  }
}
