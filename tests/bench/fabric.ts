// The fabric's benchmarks: scheduling decisions per second (in process, and through a relay with a
// thousand simulated nodes connected), what a call pays to cross the fabric, how fast context
// changes spread, and what a stateful stream pays to move between nodes.
import type { Browser } from 'playwright-core';
import { encode } from '../../core/codec';
import { type NodeView, place, type VariantInfo } from '../../core/placement';
import { decodeFrame, type ToNode } from '../../core/protocol';
import { FRAME, loadFixture } from '../../models/vad/vad';
import { joinRaw, type RawNode } from '../raw-node';

const variants: VariantInfo[] = [
  { rpc: 'small', accuracy: 0.9435, latencyMs: 0.1 },
  { rpc: 'large', accuracy: 0.969, latencyMs: 0.3 },
];

/** A fabric of `n` nodes like the relay would see: mixed roles, backends, load and figures. */
export function simulatedNodes(n: number): NodeView[] {
  const nodes: NodeView[] = [];
  for (let i = 0; i < n; i++) {
    const backend = (['wasm', 'webgpu', 'cpu'] as const)[i % 3]!;
    nodes.push({
      id: i.toString(16).padStart(32, '0'),
      role: i % 50 === 0 ? 'fog' : 'dew',
      publicKey: `key-${i}`,
      trusted: i % 50 === 0,
      online: true,
      paused: i % 17 === 0,
      rttMs: 1 + (i % 40),
      backends: [backend],
      queue: i % 4,
      maxConcurrency: 1 + (i % 3),
      apps: ['digits'],
      stats: { [`digits/model/small@${backend}`]: { count: 10, p50: 0.2 + (i % 7) / 10 } },
      models: { 'digits/model': i % 5 === 0 ? ['small'] : ['small', 'large'] },
      // As the relay's hub keeps them: its own timings (a third measured), one in 100 quarantined.
      measured:
        i % 3 === 0
          ? { [`digits/model/small@${backend}`]: { count: 5, p50: 0.4 + (i % 5) / 10 } }
          : {},
      quarantined: i % 100 === 7,
    });
  }
  return nodes;
}

// Every one satisfiable in these fabrics: the figure is the cost of a decision, not of a refusal.
const qosMix = [{}, { accuracy: 0.95 }, { latencyMs: 100 }, { accuracy: 0.95, latencyMs: 200 }];

/** place() alone over `n` nodes: decisions per second for `ms` of wall time. */
export function placementRate(n: number, ms = 1000): number {
  const nodes = simulatedNodes(n);
  let count = 0;
  const t0 = performance.now();
  while (performance.now() - t0 < ms) {
    for (let k = 0; k < 100; k++, count++) {
      place(nodes, {
        app: 'digits',
        service: 'model',
        variants,
        qos: qosMix[count % qosMix.length]!,
        caller: nodes[count % n]!.id,
      });
    }
  }
  return (count * 1000) / (performance.now() - t0);
}

/** `n` nodes joined over real sockets with signed joins, each having sent one heartbeat. */
export async function joinMany(wsUrl: string, n: number): Promise<RawNode[]> {
  const nodes: RawNode[] = [];
  for (let i = 0; i < n; i += 50) {
    const batch = await Promise.all(
      Array.from({ length: Math.min(50, n - i) }, () =>
        joinRaw(wsUrl, 'dew', { keep: (f) => f.t !== 'decision' && f.t !== 'error' }),
      ),
    );
    for (const { node } of batch) {
      node.send({
        t: 'heartbeat',
        load: { queue: 0, maxConcurrency: 1 },
        apps: ['digits'],
        models: { 'digits/model': ['small', 'large'] },
        stats: { 'digits/model/small@wasm': { count: 10, p50: 0.3 } },
        paused: false,
      });
      nodes.push(node);
    }
  }
  return nodes;
}

/**
 * Joins `n` simulated nodes to a relay (real sockets, real signed joins, one heartbeat each), then
 * has `senders` of them ask for decisions on digits, keeping `window` requests in flight each.
 */
export async function relayRate(
  wsUrl: string,
  n: number,
  options: { senders?: number; window?: number; ms?: number; log?: (l: string) => void } = {},
) {
  const { senders = 50, window = 8, ms = 3000 } = options;
  const t0 = performance.now();
  const nodes = await joinMany(wsUrl, n);
  const joinS = (performance.now() - t0) / 1000;
  options.log?.(`  ${n} simulated nodes joined in ${joinS.toFixed(1)} s`);
  let answered = 0;
  let failed = 0;
  let stop = false;
  const start = performance.now();
  await Promise.all(
    nodes.slice(0, senders).map(
      (node, s) =>
        new Promise<void>((resolve) => {
          let next = 1;
          let inFlight = 0;
          const ask = () => {
            const qos = qosMix[(next + s) % qosMix.length]!;
            node.send({ t: 'schedule', id: next++, app: 'digits', service: 'classify', qos });
            inFlight++;
          };
          node.ws.on('message', (data) => {
            const f = decodeFrame(new Uint8Array(data as Buffer), 'toNode') as ToNode;
            if (f.t !== 'decision' && f.t !== 'error') return;
            if (f.t === 'decision') answered++;
            else failed++;
            inFlight--;
            if (!stop) ask();
            else if (inFlight === 0) resolve();
          });
          for (let w = 0; w < window; w++) ask();
          setTimeout(() => {
            stop = true;
          }, ms);
        }),
    ),
  );
  const seconds = (performance.now() - start) / 1000;
  for (const node of nodes) node.ws.close();
  return { perSecond: answered / seconds, failed, joinS };
}

/**
 * One round trip through the fabric, measured in tab `from`: the runtime alone, the fabric's
 * local-first path, and a call pinned (privacy = node id) to another tab.
 */
export async function hopCosts(browser: Browser, url: string, runs: number, rtc: boolean) {
  const noRtc = `for (const n of ['RTCPeerConnection', 'webkitRTCPeerConnection'])
    Object.defineProperty(globalThis, n, { value: class { constructor() { throw new Error('off'); } }, configurable: true });`;
  const open = async () => {
    const context = await browser.newContext();
    await context.grantPermissions(['microphone', 'camera'], { origin: url });
    const page = await context.newPage();
    // tsx (esbuild keepNames) wraps functions in __name(); the page needs it to run them.
    await page.addInitScript('globalThis.__name = (f) => f');
    if (!rtc) await page.addInitScript(noRtc);
    await page.goto(url);
    const id = await page.evaluate(async () => {
      await window.brume.ready;
      const f = await window.brumeDebug.fabric;
      await f.whenJoined(20_000);
      await window.brumeDebug.runtime.warm('digits');
      return f.nodeId;
    });
    return { page, id, context };
  };
  const from = await open();
  const to = await open();
  try {
    return await from.page.evaluate(
      async ({ to, runs }) => {
        const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
        const pixels = new Uint8Array(28 * 28).fill(0);
        for (let i = 300; i < 500; i += 3) pixels[i] = 255;
        const digit = { width: 28, height: 28, pixels };
        const echo = 'x'.repeat(64);
        const time = async (f: () => Promise<unknown>) => {
          for (let i = 0; i < 20; i++) await f();
          const xs: number[] = [];
          for (let i = 0; i < runs; i++) {
            const t0 = performance.now();
            await f();
            xs.push(performance.now() - t0);
          }
          return med(xs);
        };
        const b = window.brume;
        const out: Record<string, Record<string, number | string>> = {};
        for (const [name, app, service, input] of [
          ['echo (64 B)', 'hostile', 'echo', echo],
          ['digits classify', 'digits', 'classify', digit],
        ] as const) {
          let via = '';
          out[name] = {
            runtimeMs: await time(() => window.brumeDebug.runtime.call(app, service, input)),
            fabricLocalMs: await time(() => b.invoke(app, service, input)),
            hopMs: await time(async () => {
              via = (await b.invoke(app, service, input, { privacy: to })).via;
            }),
            via,
          };
        }
        return out;
      },
      { to: to.id, runs },
    );
  } finally {
    await from.context.close();
    await to.context.close();
  }
}

/**
 * The admin console with `n` nodes connected: time to the first full node table, and how much of
 * each second the page's main thread then spends (it polls and redraws once a second).
 */
export async function consoleCost(
  browser: Browser,
  url: string,
  token: string,
  wsUrl: string,
  n: number,
) {
  const nodes = await joinMany(wsUrl, n);
  const context = await browser.newContext();
  try {
    const page = await context.newPage();
    await page.addInitScript((t) => sessionStorage.setItem('brume-admin-token', t), token);
    const t0 = performance.now();
    await page.goto(`${url}/admin`);
    await page.waitForFunction((n) => document.querySelectorAll('#nodes tbody tr').length >= n, n, {
      timeout: 60_000,
    });
    const firstMs = performance.now() - t0;
    const busy = await page.evaluate(
      () =>
        new Promise<number>((resolve) => {
          // Long tasks (over 50 ms) are what a person feels; count their share of 5 s.
          let total = 0;
          new PerformanceObserver((list) => {
            for (const e of list.getEntries()) total += e.duration;
          }).observe({ type: 'longtask' });
          setTimeout(() => resolve(total / 5000), 5000);
        }),
    );
    return { nodes: n, firstTableMs: firstMs, longTaskShare: busy };
  } finally {
    await context.close();
    for (const node of nodes) node.ws.close();
  }
}

/** A context write as a node sends it. */
function ctxOp(app: string, node: RawNode, key: string, value: unknown, count: number) {
  return {
    opId: crypto.randomUUID(),
    app,
    key,
    scope: 'app' as const,
    stamp: { wall: Date.now(), count, node: node.identity.id },
    kind: 'put' as const,
    value: encode(value),
  };
}

const pct = (xs: number[], q: number) =>
  [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(q * xs.length))] ?? Number.NaN;

/**
 * Context propagation to `n` simulated nodes: one writes, every other one times the write's
 * arrival (same process, same clock). Also writes per second acknowledged by the relay (each one
 * fsynced before its acknowledgement), with `window` writes in flight from each of 10 writers.
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
  let acked = 0;
  let stop = false;
  const writers = nodes.slice(0, 10);
  const t0 = performance.now();
  await Promise.all(
    writers.map(
      (w, s) =>
        new Promise<void>((resolve) => {
          let inFlight = 0;
          let k = 0;
          const write = () => {
            inFlight++;
            w.send({ t: 'ctx-op', op: ctxOp(app, w, `w${s}-${k % 20}`, k, k++) });
          };
          w.ws.on('message', (data) => {
            const f = decodeFrame(new Uint8Array(data as Buffer), 'toNode');
            if (f.t !== 'ctx-ack' && f.t !== 'ctx-nack') return;
            inFlight--;
            if (f.t === 'ctx-ack') acked++;
            if (!stop) write();
            else if (inFlight === 0) resolve();
          });
          for (let i = 0; i < 8; i++) write();
          setTimeout(() => {
            stop = true;
          }, 3000);
        }),
    ),
  );
  const writesPerSecond = (acked * 1000) / (performance.now() - t0);
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

/** Context propagation to `n` tabs: one writes, the others' watchers time the arrival. */
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
    for (let i = 0; i < writes; i++) {
      await writer!.evaluate(
        ([i, run]) =>
          window.brume
            .context('bench-tabs')
            .put(`k${Number(i) % 5}`, { run, i, at: performance.timeOrigin + performance.now() }),
        [i, run] as const,
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
    return { tabs: n, samples: lat.length, p50Ms: pct(lat, 0.5), p99Ms: pct(lat, 0.99) };
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
