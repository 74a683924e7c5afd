// A synthetic campus for the Nimbus simulation (seed 004 §2.1, §3) and the loop that places its
// devices one at a time with core/session/nimbus.ts, the rule the relay uses. Pure and seeded:
// the same config gives the same campus and the same placements (only wallMs varies).
//
// Stated assumptions, where the notes give no figure (the seed's own traces and fits are not here):
// - Queue fits q(n) = m·n + b with b = 1 ms and m such that maxload at 15 FPS (ε_t 66.7 ms) is the
//   seed simulator's per-tier client caps 4 / 16 / 64 (T1 / T2 / T3); inference times 10 / 3 /
//   1.5 ms (MobileNetV2 on Jetson TX2 / GTX 1060 / RTX 2080, batch 1).
// - RTT from an access point to a node: the tier's base (1 / 2 / 4 ms) + 10 ms per km on the
//   campus + |N(0, 0.5)| ms; T1 nodes sit at access points, T2 anywhere, T3 in one machine room.
// - The cloud: one datacenter at N(40, 8) ms (at least 15) from each access point, reached over
//   the access point (300 Mbps, not shared) or over 4G (20 Mbps uplink, +25 ms, 2.5 mJ/ms); 5 ms
//   per frame, no queue.
// - A frame is 33 KB = 33,000 bytes.

import { LTE_MJ_PER_MS, WIFI_MJ_PER_MS } from '../../core/session/energy';
import {
  type NimbusDevice,
  type NimbusNode,
  placeSession,
  queueMs,
} from '../../core/session/nimbus';
import { mulberry32 } from '../../models/digits/mlp';

export type TierName = 'T1' | 'T2' | 'T3';
export interface TierSpec {
  gpu: string;
  execMs: number;
  queue: { m: number; b: number };
  bandwidthMbps: number;
  baseRttMs: number;
}
const queueFit = (cap: number) => ({ m: (1000 / 15 - 1) / cap, b: 1 });
export const tiers: Record<TierName, TierSpec> = {
  T1: { gpu: 'Jetson TX2', execMs: 10, queue: queueFit(4), bandwidthMbps: 300, baseRttMs: 1 },
  T2: { gpu: 'GTX 1060', execMs: 3, queue: queueFit(16), bandwidthMbps: 1000, baseRttMs: 2 },
  T3: { gpu: '2× RTX 2080', execMs: 1.5, queue: queueFit(64), bandwidthMbps: 5000, baseRttMs: 4 },
};
/** Local MobileNetV2 on the seed's phones. */
export const phones = [
  { name: 'OnePlus 5T', localMs: 154, localEnergyMj: 182 },
  { name: 'OnePlus 3', localMs: 116, localEnergyMj: 318 },
  { name: 'Redmi Note 4X', localMs: 190, localEnergyMj: 268 },
] as const;
export const FRAME_BYTES = 33_000;
const CLOUD = { execMs: 5, wifiMbps: 300, lteMbps: 20, lteExtraRttMs: 25 };

export interface CampusConfig {
  seed: number;
  devices: number;
  accessPoints: number;
  nodes: Record<TierName, number>;
  sideKm: number;
}
/** ≈ the seed's κ experiment: 152 nodes, ~1000 devices. */
export const campus152: CampusConfig = {
  seed: 2026,
  devices: 1000,
  accessPoints: 200,
  nodes: { T1: 100, T2: 45, T3: 7 },
  sideKm: 1,
};

export interface Device {
  ap: number;
  fps: number;
  phone: (typeof phones)[number];
}
export interface Campus {
  config: CampusConfig;
  nodes: { id: string; tier: TierName }[];
  /** rtt[ap * nodes.length + j]: access point → node j, ms. */
  rtt: Float64Array;
  cloudRtt: Float64Array;
  devices: Device[];
}

export function makeCampus(config: CampusConfig): Campus {
  const r = mulberry32(config.seed);
  const normal = (mean: number, sd: number) =>
    mean + sd * Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());
  const at = () => [r() * config.sideKm, r() * config.sideKm] as const;
  const aps = Array.from({ length: config.accessPoints }, at);
  const room = at();
  const nodes: { id: string; tier: TierName; place: readonly [number, number] }[] = [];
  for (const tier of ['T1', 'T2', 'T3'] as const) {
    for (let i = 0; i < config.nodes[tier]; i++) {
      const place =
        tier === 'T1'
          ? aps[Math.floor((i * config.accessPoints) / config.nodes.T1)]!
          : tier === 'T2'
            ? at()
            : room;
      nodes.push({ id: `${tier}-${i}`, tier, place });
    }
  }
  const rtt = new Float64Array(aps.length * nodes.length);
  aps.forEach(([x, y], a) => {
    nodes.forEach((n, j) => {
      const km = Math.hypot(x - n.place[0], y - n.place[1]);
      rtt[a * nodes.length + j] = tiers[n.tier].baseRttMs + 10 * km + Math.abs(normal(0, 0.5));
    });
  });
  const cloudRtt = Float64Array.from(aps, () => Math.max(15, normal(40, 8)));
  const devices = Array.from({ length: config.devices }, () => ({
    ap: Math.floor(r() * aps.length),
    fps: Math.min(30, Math.max(5, normal(15, 2))),
    phone: phones[Math.floor(r() * phones.length)]!,
  }));
  return { config, nodes: nodes.map(({ id, tier }) => ({ id, tier })), rtt, cloudRtt, devices };
}

export type Strategy = 'nimbus' | 'greedy' | 'local' | 'cloud-wifi' | 'cloud-4g';
export type Where = TierName | 'cloud' | 'local';
export interface Placed {
  where: Where;
  node: string | null;
  latencyBudgetMs: number;
  energyBudgetMj: number;
  /** Lt when placed (0 local). */
  netMs: number;
  /** Per frame, once every device is placed: an edge session's queue is its node's final one. */
  latencyMs: number;
  /** Per frame as estimated when it was placed. */
  placedLatencyMs: number;
  energyMj: number;
}
export interface Summary {
  /** Once every device is placed. */
  meanLatencyMs: number;
  /** As each was estimated when placed. */
  meanPlacedLatencyMs: number;
  meanEnergyMj: number;
  share: Record<Where, number>;
  offloaded: number;
  /** Offloaded and still within ε_t once every device is placed. */
  offloadedWithinBudget: number;
  overBudget: number;
  wallMs: number;
}
export interface SimResult {
  strategy: Strategy;
  kappa: number;
  placed: Placed[];
  /** Sessions per node at the end, in campus.nodes order. */
  loads: number[];
  summary: Summary;
}

function deviceOf(d: Device, radioMjPerMs: number): NimbusDevice {
  return {
    frameBytes: FRAME_BYTES,
    fps: d.fps,
    localMs: d.phone.localMs,
    localEnergyMj: d.phone.localEnergyMj,
    radioMjPerMs,
  };
}

/**
 * Places every device of `campus` in arrival order by `strategy`: nimbus and greedy through
 * placeSession over every node (κ sampled with a random seeded from the campus), cloud-only
 * through the same rule with the datacenter alone, all-local without it.
 */
export function simulate(campus: Campus, strategy: Strategy, kappa = 0): SimResult {
  const random = mulberry32(campus.config.seed ^ 0x9e3779b9);
  const n = campus.nodes.length;
  const sessions: NimbusNode['sessions'][] = campus.nodes.map(() => []);
  const index = new Map(campus.nodes.map((x, j) => [x.id, j]));
  const lte = strategy === 'cloud-4g';
  const placed: Placed[] = [];
  const t0 = performance.now();
  for (const d of campus.devices) {
    const device = deviceOf(d, lte ? LTE_MJ_PER_MS : WIFI_MJ_PER_MS);
    const cloud: NimbusNode = {
      id: 'cloud',
      role: 'cloud',
      rttMs: campus.cloudRtt[d.ap]! + (lte ? CLOUD.lteExtraRttMs : 0),
      bandwidthMbps: lte ? CLOUD.lteMbps : CLOUD.wifiMbps,
      execMs: CLOUD.execMs,
      queue: { m: 0, b: 0 },
      sessions: [],
    };
    const views: NimbusNode[] = [];
    if (strategy === 'nimbus' || strategy === 'greedy') {
      for (let j = 0; j < n; j++) {
        const spec = tiers[campus.nodes[j]!.tier];
        views.push({
          id: campus.nodes[j]!.id,
          role: 'fog',
          rttMs: campus.rtt[d.ap * n + j]!,
          bandwidthMbps: spec.bandwidthMbps,
          execMs: spec.execMs,
          queue: spec.queue,
          sessions: sessions[j]!,
        });
      }
    }
    if (strategy !== 'local') views.push(cloud);
    const c = placeSession(device, views, {
      variant: strategy === 'greedy' ? 'greedy' : 'nimbus',
      kappa,
      random,
    });
    const j = c.node === null ? undefined : index.get(c.node);
    if (j !== undefined) sessions[j]!.push({ latencyBudgetMs: c.latencyBudgetMs, netMs: c.netMs });
    placed.push({
      where: j !== undefined ? campus.nodes[j]!.tier : c.via === 'cloud' ? 'cloud' : 'local',
      node: c.node,
      latencyBudgetMs: c.latencyBudgetMs,
      energyBudgetMj: c.energyBudgetMj,
      netMs: c.netMs,
      latencyMs: c.latencyMs,
      placedLatencyMs: c.latencyMs,
      energyMj: c.energyMj,
    });
  }
  const wallMs = performance.now() - t0;
  // The queue each edge session sees once every device is placed.
  for (const p of placed) {
    const j = p.node === null ? undefined : index.get(p.node);
    if (j === undefined) continue;
    const spec = tiers[campus.nodes[j]!.tier];
    p.latencyMs = p.netMs + spec.execMs + queueMs(spec, sessions[j]!.length);
  }
  return {
    strategy,
    kappa,
    placed,
    loads: sessions.map((s) => s.length),
    summary: summarise(placed, wallMs),
  };
}

function summarise(placed: Placed[], wallMs: number): Summary {
  const count: Record<Where, number> = { T1: 0, T2: 0, T3: 0, cloud: 0, local: 0 };
  let latency = 0;
  let placedLatency = 0;
  let energy = 0;
  let within = 0;
  let over = 0;
  for (const p of placed) {
    count[p.where]++;
    latency += p.latencyMs;
    placedLatency += p.placedLatencyMs;
    energy += p.energyMj;
    if (p.where === 'local') continue;
    if (p.latencyMs <= p.latencyBudgetMs) within++;
    else over++;
  }
  const n = placed.length;
  const share = { ...count };
  for (const k of Object.keys(share) as Where[]) share[k] = count[k] / n;
  return {
    meanLatencyMs: latency / n,
    meanPlacedLatencyMs: placedLatency / n,
    meanEnergyMj: energy / n,
    share,
    offloaded: (n - count.local) / n,
    offloadedWithinBudget: within / n,
    overBudget: over,
    wallMs,
  };
}
