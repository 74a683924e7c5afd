// Scheduling decisions per second and their p99, at 100, 1,000 and 10,000 nodes: in process (the
// scan place() against the relay's index, alternated round by round on the same fabric), and
// through a relay with simulated nodes joined over real sockets, with the relay's CPU per decision
// and the bench client's, to tell which of the two bounds the figure.
import { readFileSync } from 'node:fs';
import {
  createPlacementIndex,
  type NodeView,
  type PlacementRequest,
  place,
  type VariantInfo,
} from '../../core/placement';
import { decodeFrame, type ToNode } from '../../core/protocol';
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

/** The p-th quantile (0–1) of `xs`, sorted in place (NaN when empty). */
export function quantile(xs: number[], p: number): number {
  if (xs.length === 0) return Number.NaN;
  xs.sort((a, b) => a - b);
  return xs[Math.min(xs.length - 1, Math.floor(p * xs.length))]!;
}

/** The median of `xs` (a copy is sorted). */
export function median(xs: number[]): number {
  return quantile([...xs], 0.5);
}

export type Placer = 'scan' | 'index';

/**
 * Decisions over `n` nodes for `ms` of wall time by the scan (`place`) or the relay's index, each
 * timed; the fabric changes as heartbeats change it (two nodes' load every 100 decisions, ~1,000
 * changes a second at 50,000 decisions a second), which the index must take in.
 */
export function placementRate(
  n: number,
  ms = 1000,
  how: Placer = 'scan',
  nodes = simulatedNodes(n),
): { perSecond: number; p99Ms: number; cpuUs: number } {
  const index = createPlacementIndex();
  for (const node of nodes) index.set(node);
  const decide =
    how === 'scan'
      ? (r: PlacementRequest) => place(nodes, r)
      : (r: PlacementRequest) => index.place(r);
  // The index sorts its lists at its first decision of a kind, once: not what one decision costs.
  decide({ app: 'digits', service: 'model', variants, qos: {}, caller: '' });
  const times: number[] = [];
  let count = 0;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  while (performance.now() - t0 < ms) {
    for (let k = 0; k < 100; k++, count++) {
      const req = {
        app: 'digits',
        service: 'model',
        variants,
        qos: qosMix[count % qosMix.length]!,
        caller: nodes[count % n]!.id,
      };
      const s = performance.now();
      decide(req);
      times.push(performance.now() - s);
    }
    for (let c = 0; c < 2; c++) {
      const node = nodes[(count * 7 + c * 13) % n]!;
      node.queue = (node.queue + 1) % 4;
      index.set(node);
    }
  }
  const cpu = process.cpuUsage(cpu0);
  return {
    perSecond: (count * 1000) / (performance.now() - t0),
    p99Ms: quantile(times, 0.99),
    cpuUs: (cpu.user + cpu.system) / count,
  };
}

export interface DecisionRow {
  where: string;
  nodes: number;
  /** Median over rounds. */
  perSecond: number;
  /** p99 of one decision (in process) or of a schedule → decision round trip (through the relay). */
  p99Ms: number;
  /**
   * CPU time per decision in µs of the process deciding (this one in process, else the relay's),
   * which a busy machine's time slicing does not inflate as it does wall-clock rates.
   */
  cpuUs: number;
  /** Through the relay: the bench client's CPU time per decision (µs). */
  clientCpuUs?: number;
  failed?: number;
  /** Through the relay: requests never answered within 10 s of the end of a round. */
  lost?: number;
  joinS?: number;
}

/**
 * The scan and the index over the same fabric, alternated `rounds` times (the machine is shared:
 * neither gets the quiet moments), medians of the rates and of the p99s.
 */
export function inProcessRows(sizes = [100, 1000, 10_000], rounds = 5, ms = 300): DecisionRow[] {
  const rows: DecisionRow[] = [];
  for (const n of sizes) {
    const nodes = simulatedNodes(n);
    const runs: Record<Placer, ReturnType<typeof placementRate>[]> = { scan: [], index: [] };
    for (let r = 0; r < rounds; r++) {
      for (const how of r % 2 ? (['index', 'scan'] as const) : (['scan', 'index'] as const))
        runs[how].push(placementRate(n, ms, how, nodes));
    }
    for (const how of ['scan', 'index'] as const) {
      rows.push({
        where: how === 'scan' ? 'in process, place() scan' : 'in process, index',
        nodes: n,
        perSecond: median(runs[how].map((x) => x.perSecond)),
        p99Ms: median(runs[how].map((x) => x.p99Ms)),
        cpuUs: median(runs[how].map((x) => x.cpuUs)),
      });
    }
  }
  return rows;
}

/** Joins one node, again (up to 3 times) when a busy machine lets its welcome time out. */
async function joinPatiently(wsUrl: string, tries = 3): ReturnType<typeof joinRaw> {
  try {
    return await joinRaw(wsUrl, 'dew', { keep: (f) => f.t !== 'decision' && f.t !== 'error' });
  } catch (e) {
    if (tries <= 1) throw e;
    return joinPatiently(wsUrl, tries - 1);
  }
}

/** Has `node` say it is idle and holds the digits app and both its models, the small one measured. */
export function digitsHeartbeat(node: RawNode): void {
  node.send({
    t: 'heartbeat',
    load: { queue: 0, maxConcurrency: 1 },
    apps: ['digits'],
    models: { 'digits/model': ['small', 'large'] },
    stats: { 'digits/model/small@wasm': { count: 10, p50: 0.3 } },
    paused: false,
  });
}

/** `n` nodes joined over real sockets with signed joins, each having sent one heartbeat. */
export async function joinMany(wsUrl: string, n: number): Promise<RawNode[]> {
  const nodes: RawNode[] = [];
  for (let i = 0; i < n; i += 50) {
    const batch = await Promise.all(
      Array.from({ length: Math.min(50, n - i) }, () => joinPatiently(wsUrl)),
    );
    for (const { node } of batch) {
      digitsHeartbeat(node);
      nodes.push(node);
    }
  }
  return nodes;
}

/** CPU seconds (user + system) process `pid` has used, from /proc (Linux). */
export function cpuSecondsOf(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name, which is in parentheses and may hold spaces.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in ticks of 1/100 s
}

/**
 * Has `senders` of `nodes` ask a relay for decisions on digits for `ms`, keeping `window` requests
 * in flight each: decisions a second, the p99 round trip, and the CPU the relay process (`pid`;
 * several: a cluster's relays, summed) and this process spent per decision.
 */
export async function askMany(
  nodes: RawNode[],
  options: { senders?: number; window?: number; ms?: number; pid?: number | number[] } = {},
) {
  const { senders = 50, window = 8, ms = 3000, pid } = options;
  let answered = 0;
  let failed = 0;
  let lost = 0;
  let stop = false;
  const times: number[] = [];
  const pids = pid === undefined ? [] : [pid].flat();
  const relayCpu = () => pids.reduce((sum, p) => sum + cpuSecondsOf(p), 0);
  const relay0 = relayCpu();
  const client0 = process.cpuUsage();
  const start = performance.now();
  await Promise.all(
    nodes.slice(0, senders).map(
      (node, s) =>
        new Promise<void>((resolve) => {
          let next = 1;
          let inFlight = 0;
          const sentAt = new Map<number, number>();
          const ask = () => {
            const qos = qosMix[(next + s) % qosMix.length]!;
            sentAt.set(next, performance.now());
            node.send({ t: 'schedule', id: next++, app: 'digits', service: 'classify', qos });
            inFlight++;
          };
          const done = () => {
            node.ws.off('message', onMessage);
            resolve();
          };
          // A node the relay evicted (a machine too busy to answer its pings) asks no more.
          node.ws.once('close', done);
          const onMessage = (data: Buffer) => {
            const f = decodeFrame(new Uint8Array(data), 'toNode') as ToNode;
            if (f.t !== 'decision' && f.t !== 'error') return;
            const at = f.id === undefined ? undefined : sentAt.get(f.id);
            if (at !== undefined) {
              times.push(performance.now() - at);
              sentAt.delete(f.id!);
            }
            if (f.t === 'decision') answered++;
            else failed++;
            inFlight--;
            if (!stop) ask();
            else if (inFlight === 0) done();
          };
          node.ws.on('message', onMessage);
          for (let w = 0; w < window; w++) ask();
          setTimeout(() => {
            stop = true;
            if (node.ws.readyState !== node.ws.OPEN) done();
            // A request the relay never answers is counted, not waited on for ever.
            setTimeout(() => {
              lost += inFlight;
              if (inFlight > 0) done();
            }, 10_000).unref();
          }, ms);
        }),
    ),
  );
  const seconds = (performance.now() - start) / 1000;
  const client = process.cpuUsage(client0);
  const decisions = Math.max(1, answered + failed);
  return {
    perSecond: answered / seconds,
    p99Ms: quantile(times, 0.99),
    failed,
    lost,
    ...(pids.length > 0 && { relayCpuUs: ((relayCpu() - relay0) * 1e6) / decisions }),
    clientCpuUs: (client.user + client.system) / decisions,
  };
}

/**
 * Decisions through a relay (process `pid`, apps deployed, its socket caps lifted to `sizes`'
 * largest) as nodes join up to each size in turn: `rounds` runs of `ms` each, medians. Each node
 * may send 500 frames a second (the relay's default rate), so up to 200 of them ask at once.
 */
export async function relayRows(
  wsUrl: string,
  pid: number,
  options: { sizes?: number[]; rounds?: number; ms?: number; log?: (l: string) => void } = {},
): Promise<DecisionRow[]> {
  const { sizes = [100, 1000, 10_000], rounds = 3, ms = 2000, log } = options;
  const rows: DecisionRow[] = [];
  const nodes: RawNode[] = [];
  try {
    for (const n of sizes) {
      const t0 = performance.now();
      nodes.push(...(await joinMany(wsUrl, n - nodes.length)));
      const joinS = (performance.now() - t0) / 1000;
      log?.(`  ${n} simulated nodes joined (${joinS.toFixed(1)} s for the new ones)`);
      const senders = Math.min(n, 200);
      const runs = [];
      for (let r = 0; r < rounds; r++)
        runs.push(await askMany(nodes, { senders, window: n < 200 ? 4 : 2, ms, pid }));
      rows.push({
        where: `through the relay, ${senders} asking`,
        nodes: n,
        perSecond: median(runs.map((x) => x.perSecond)),
        p99Ms: median(runs.map((x) => x.p99Ms)),
        cpuUs: median(runs.map((x) => x.relayCpuUs ?? Number.NaN)),
        clientCpuUs: median(runs.map((x) => x.clientCpuUs)),
        failed: runs.reduce((a, x) => a + x.failed, 0),
        lost: runs.reduce((a, x) => a + x.lost, 0),
        joinS,
      });
    }
  } finally {
    for (const node of nodes) node.ws.close();
  }
  return rows;
}

/** The rows as a table for people. */
export function decisionTable(rows: DecisionRow[]) {
  const f = (x: number | undefined, d = 0) => (x === undefined ? '' : x.toFixed(d));
  return rows.map((r) => ({
    where: r.where,
    nodes: r.nodes,
    'decisions/s': Math.round(r.perSecond),
    'p99 (ms)': f(r.p99Ms, 3),
    'CPU/decision (µs)': f(r.cpuUs, 1),
    'decisions per CPU-second': Math.round(1e6 / r.cpuUs),
    'client CPU/decision (µs)': f(r.clientCpuUs, 1),
    'failed / lost': r.failed === undefined ? '' : `${r.failed} / ${r.lost ?? 0}`,
  }));
}
