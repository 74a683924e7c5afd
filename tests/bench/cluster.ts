// Issue 17's figures: one relay without Redis (the baseline) against 1, 2 and 3 relay processes
// sharing a Redis behind HAProxy (tests/cluster-process.ts), with simulated nodes spread evenly
// over the relays: scheduling decisions per second through the relays, an HTTP call served by a
// node on the same relay and on another (the cross-relay hop), a context write reaching watchers
// on every relay, and a relay killed during a run (how long until its nodes are listed again and
// calls succeed again, and how many failed). Every setup runs on this one machine: the relays,
// Redis, HAProxy and the simulated nodes share its cores, so ratios say more than absolutes.
import { rmSync } from 'node:fs';
import { testBundles } from '../apps';
import { startCluster } from '../cluster-process';
import type { RawNode } from '../raw-node';
import { deploy, startRelay } from '../relay-process';
import { until } from '../until';
import { clusterContext } from './cluster-context';
import { type KillRun, killRun, serve } from './cluster-kill';
import {
  CAPS,
  type ClusterBenchOptions,
  type ContextFigures,
  callOnce,
  listed,
  type Setup,
  wsOf,
} from './cluster-kit';
import { askMany, joinMany, median, quantile } from './decisions';
import type { Section } from './report';

/** Sizes from the environment: BENCH_CLUSTER_NODES="1000,3000", BENCH_CLUSTER_RELAYS="1,2,3"... */
export function clusterOptions(env = process.env): ClusterBenchOptions {
  const list = (v: string | undefined, d: string) => (v ?? d).split(',').map(Number);
  return {
    relays: list(env.BENCH_CLUSTER_RELAYS, '1,2,3'),
    sizes: list(env.BENCH_CLUSTER_NODES, '1000,3000'),
    rounds: Number(env.BENCH_CLUSTER_ROUNDS ?? 3),
    ms: Number(env.BENCH_CLUSTER_MS ?? 2000),
    calls: Number(env.BENCH_CLUSTER_CALLS ?? 200),
    watchers: Number(env.BENCH_CLUSTER_WATCHERS ?? 99),
    writes: Number(env.BENCH_CLUSTER_WRITES ?? 50),
    lanes: Number(env.BENCH_CLUSTER_LANES ?? 8),
    log: console.log,
  };
}

export interface ClusterRow {
  /** 'baseline: 1 relay, no Redis' or 'N relays + Redis'. */
  setup: string;
  relays: number;
  redis: boolean;
  nodes: number;
  joinS: number;
  /** From the last join until every relay lists every node. */
  listedS: number;
  decisionsPerSecond: number;
  decisionP99Ms: number;
  /** CPU of all the relays per decision (µs). */
  relayCpuUs: number;
  failed: number;
  lost: number;
  /** An HTTP call to relay 0 served by a node on relay 0. */
  sameP50Ms: number;
  sameP99Ms: number;
  /** The same call sent to relay 1 (forwarded to relay 0 over Redis); absent with one relay. */
  crossP50Ms?: number;
  crossP99Ms?: number;
  callsFailed: number;
  context?: ContextFigures;
}

export interface ClusterBench {
  rows: ClusterRow[];
  kills: KillRun[];
  options: Omit<ClusterBenchOptions, 'log'>;
}

async function baseline(): Promise<Setup> {
  const r = await startRelay({ args: ['--no-cloud', ...CAPS] });
  return {
    label: 'baseline: 1 relay, no Redis',
    redis: false,
    relays: [{ url: r.url, pid: r.child.pid! }],
    token: r.token,
    url: r.url,
    async stop() {
      await r.stop();
      rmSync(r.dataDir, { recursive: true, force: true });
    },
  };
}

async function cluster(relays: number): Promise<Setup> {
  const c = await startCluster({ relays, args: ['--no-cloud', ...CAPS] });
  return {
    label: `${relays} relay${relays > 1 ? 's' : ''} + Redis`,
    redis: true,
    // Read at each use: restart() would replace them (the bench never restarts one).
    relays: c.relays.map((r) => ({ url: r.url, pid: r.child.pid! })),
    token: c.token,
    url: c.url,
    kill: (i) => c.kill(i),
    stop: () => c.stop(),
  };
}

/** `nodes[i]` of each relay in turn: the senders of a round come from every relay. */
function interleave(byRelay: RawNode[][]): RawNode[] {
  const out: RawNode[] = [];
  const longest = Math.max(...byRelay.map((x) => x.length));
  for (let i = 0; i < longest; i++)
    for (const list of byRelay) {
      const node = list[i];
      if (node) out.push(node);
    }
  return out;
}

/** Same-relay and cross-relay calls to one serving node, alternated; p50 and p99 of each. */
async function callFigures(s: Setup, server: RawNode, calls: number) {
  const same: number[] = [];
  const cross: number[] = [];
  let failed = 0;
  const paths = [
    { url: s.relays[0]!.url, into: same },
    ...(s.relays.length > 1 ? [{ url: s.relays[1]!.url, into: cross }] : []),
  ];
  for (let i = -20; i < calls; i++) {
    // Alternated, so neither path gets the machine's quiet moments; the first 20 warm up.
    for (const p of i % 2 ? paths : [...paths].reverse()) {
      const { ms } = await callOnce(p.url, i, { pin: server.identity.id, token: s.token });
      if (ms === undefined) failed++;
      else if (i >= 0) p.into.push(ms);
    }
  }
  return {
    sameP50Ms: quantile(same, 0.5),
    sameP99Ms: quantile(same, 0.99),
    ...(cross.length > 0 && {
      crossP50Ms: quantile(cross, 0.5),
      crossP99Ms: quantile(cross, 0.99),
    }),
    callsFailed: failed,
  };
}

/** Every figure for one setup; the kill run last (it takes a relay down). */
async function benchSetup(s: Setup, o: ClusterBenchOptions, bench: ClusterBench) {
  // hostile (its echo service: the calls) and hops, as the single-relay fabric bench deploys.
  for (const b of await testBundles()) {
    const res = await deploy({ url: s.url, token: s.token }, b);
    if (res.status !== 201 && res.status !== 200) throw new Error(`deploy: ${res.status}`);
  }
  const r = s.relays.length;
  const byRelay: RawNode[][] = s.relays.map(() => []);
  let server: RawNode | undefined;
  try {
    for (const n of o.sizes) {
      const t0 = performance.now();
      await Promise.all(
        s.relays.map(async (relay, i) => {
          const want = Math.floor(n / r) + (i < n % r ? 1 : 0);
          byRelay[i]!.push(...(await joinMany(wsOf(relay.url), want - byRelay[i]!.length)));
        }),
      );
      const joinS = (performance.now() - t0) / 1000;
      const t1 = performance.now();
      for (const relay of s.relays) {
        await until(
          async () => (await listed(relay.url, s.token)).length >= n,
          `${n} nodes listed at ${relay.url}`,
          120_000,
          250,
        );
      }
      const listedS = (performance.now() - t1) / 1000;
      o.log(
        `  ${s.label}: ${n} nodes joined in ${joinS.toFixed(1)} s, listed everywhere after ${listedS.toFixed(1)} s more`,
      );
      const nodes = interleave(byRelay);
      const senders = Math.min(n, 200);
      const pids = s.relays.map((x) => x.pid);
      const runs = [];
      for (let k = 0; k < o.rounds; k++)
        runs.push(await askMany(nodes, { senders, window: 2, ms: o.ms, pid: pids }));
      if (!server) {
        server = byRelay[0]![0]!;
        serve(server);
      }
      const calls = await callFigures(s, server, o.calls);
      const context =
        o.watchers > 0
          ? await clusterContext(byRelay, Math.min(o.watchers, n - 1), o.writes)
          : undefined;
      bench.rows.push({
        setup: s.label,
        relays: r,
        redis: s.redis,
        nodes: n,
        joinS,
        listedS,
        decisionsPerSecond: median(runs.map((x) => x.perSecond)),
        decisionP99Ms: median(runs.map((x) => x.p99Ms)),
        relayCpuUs: median(runs.map((x) => x.relayCpuUs ?? Number.NaN)),
        failed: runs.reduce((a, x) => a + x.failed, 0),
        lost: runs.reduce((a, x) => a + x.lost, 0),
        ...calls,
        ...(context && { context }),
      });
    }
    if (r > 1 && s.kill) bench.kills.push(await killRun(s, byRelay, o));
  } finally {
    for (const list of byRelay) for (const node of list) node.ws.close();
  }
}

/** The whole cluster bench: the baseline, then each relay count, one setup at a time. */
export async function clusterBench(o: ClusterBenchOptions): Promise<ClusterBench> {
  const { log, ...options } = o;
  const bench: ClusterBench = { rows: [], kills: [], options };
  const setups: (() => Promise<Setup>)[] = [baseline, ...o.relays.map((r) => () => cluster(r))];
  for (const make of setups) {
    const s = await make();
    try {
      await benchSetup(s, o, bench);
    } finally {
      await s.stop();
    }
  }
  return bench;
}

const f = (x: number | undefined, d = 2) =>
  x === undefined || Number.isNaN(x) ? '' : x.toFixed(d);
const ratio = (x: number | undefined, base: number | undefined) =>
  x === undefined || base === undefined || !base ? '' : `${(x / base).toFixed(2)}×`;

/** The baseline row of the same size: one relay, no Redis. */
const baseOf = (b: ClusterBench, r: ClusterRow) =>
  b.rows.find((x) => !x.redis && x.nodes === r.nodes);

/** Prints the tables: figures side by side with the baseline's, ratios against it. */
export function printCluster(b: ClusterBench): void {
  console.log('Relays sharing a Redis (issue 17); baseline: 1 relay, no Redis, same node count');
  console.table(
    b.rows.map((r) => {
      const base = baseOf(b, r);
      return {
        setup: r.setup,
        nodes: r.nodes,
        'decisions/s': Math.round(r.decisionsPerSecond),
        'vs baseline': ratio(r.decisionsPerSecond, base?.decisionsPerSecond),
        'decision p99 (ms)': f(r.decisionP99Ms),
        'relays CPU/decision (µs)': f(r.relayCpuUs, 1),
        'failed / lost': `${r.failed} / ${r.lost}`,
        'call same relay p50/p99 (ms)': `${f(r.sameP50Ms)} / ${f(r.sameP99Ms)}`,
        'p50 vs baseline': ratio(r.sameP50Ms, base?.sameP50Ms),
        'call other relay p50/p99 (ms)':
          r.crossP50Ms === undefined ? '' : `${f(r.crossP50Ms)} / ${f(r.crossP99Ms)}`,
        'hop adds p50 (ms)': r.crossP50Ms === undefined ? '' : f(r.crossP50Ms - r.sameP50Ms),
        'join / listed (s)': `${f(r.joinS, 1)} / ${f(r.listedS, 1)}`,
      };
    }),
  );
  const ctx = b.rows.filter((r) => r.context);
  if (ctx.length) {
    console.log(
      'Context: a write by a node of relay 0 reaching watchers spread over the relays; baseline: 1 relay, no Redis',
    );
    console.table(
      ctx.map((r) => {
        const c = r.context!;
        const base = baseOf(b, r)?.context;
        return {
          setup: r.setup,
          nodes: r.nodes,
          watchers: c.watchers,
          'p50 / p99 (ms)': `${f(c.p50Ms)} / ${f(c.p99Ms)}`,
          'p50 vs baseline': ratio(c.p50Ms, base?.p50Ms),
          'all reached p50 (ms)': f(c.allReachedP50Ms),
          'writes/s acked': Math.round(c.writesPerSecond),
          'writes/s vs baseline': ratio(c.writesPerSecond, base?.writesPerSecond),
          'writes missed': c.missed,
        };
      }),
    );
  }
  if (b.kills.length) {
    console.log(
      'A relay killed (SIGKILL) under calls through HAProxy; its nodes reconnect through it',
    );
    console.table(
      b.kills.map((k) => ({
        relays: k.relays,
        nodes: k.nodes,
        'nodes moved': k.moved,
        'relisted after (s)': f(k.relistedS, 1),
        'pinned call back after (s)': f(k.pinnedBackS, 1),
        'calls failed / after kill': `${k.callsFailed} / ${k.calls}`,
        'lost with the relay (502/504)': k.lostWithRelay,
        'last failure after (s)': f(k.lastFailureS, 1),
        'failures by kind': Object.entries(k.failures)
          .map(([why, n]) => `${why}: ${n}`)
          .join(', '),
        'p50 before (ms)': f(k.p50BeforeMs),
        'slowest after (ms)': f(k.slowestAfterMs, 0),
      })),
    );
  }
}

/** The report's section (report.ts): one row per setup and size, one per kill run. */
export function clusterSection(b: ClusterBench): Section {
  return {
    id: 'cluster',
    title: 'Relays sharing a Redis: decisions, calls, context, a relay killed',
    baseline: '1 relay without Redis, same number of simulated nodes',
    note: 'Relay processes with --redis behind HAProxy, simulated nodes spread evenly over the relays, all on one machine (tests/bench/cluster.ts).',
    rows: [
      ...b.rows.map((r) => ({
        label: `${r.setup}, ${r.nodes} nodes`,
        'decisions/s': r.decisionsPerSecond,
        'decision p99 (ms)': r.decisionP99Ms,
        'call same relay p50 (ms)': r.sameP50Ms,
        'call same relay p99 (ms)': r.sameP99Ms,
        'call other relay p50 (ms)': r.crossP50Ms,
        'call other relay p99 (ms)': r.crossP99Ms,
        'context p50 (ms)': r.context?.p50Ms,
        'context p99 (ms)': r.context?.p99Ms,
        'context writes/s': r.context?.writesPerSecond,
      })),
      ...b.kills.map((k) => ({
        label: `${k.relays} relays, one killed, ${k.nodes} nodes`,
        'relisted after (s)': k.relistedS,
        'pinned call back after (s)': k.pinnedBackS,
        'calls failed': k.callsFailed,
        'calls lost with the relay': k.lostWithRelay,
        'slowest call after (ms)': k.slowestAfterMs,
      })),
    ],
  };
}
