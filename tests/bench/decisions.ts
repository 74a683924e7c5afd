// Scheduling decisions per second: place() in process, and through a relay with simulated nodes
// connected over real sockets.
import { type NodeView, place, type VariantInfo } from '../../core/placement';
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
