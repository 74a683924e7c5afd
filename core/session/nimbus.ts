/**
 * Nimbus: where a stream's session runs, chosen once per session (seed 004 §2.1; PROTOCOL §5.9.1).
 * Pure: the relay calls it over its node views, the trace-driven simulator (tests/bench/nimbus.ts)
 * over a synthetic campus, with the same code.
 *
 * For one device, over the edge nodes (roles dew and fog):
 * 1. FilterAndMinimize: keep the nodes whose RTT is below the frame budget ε_t.
 * 2. LookAheadLoad: keep a node serving sessions only if the session of least slack would still
 *    meet its own budget with one more client in the queue; then, if κ > 0, sample κ of them.
 * 3. Core: L = Lt + exec + q(load + 1) with Lt = d / (BW / (load + 1)) + RTT, and B = Lt · w;
 *    drop L ≥ ε_t or B ≥ ε_b; choose the least α·L/ε_t + β·load/maxload (+ γ on battery),
 *    maxload = (ε_t − b) / m.
 * 4. Failover: the cloud node of least RTT if it meets both; else the device runs it locally.
 * The caller records a placed session in its node's `sessions` (`{ latencyBudgetMs, netMs }`).
 * @example const c = placeSession({ frameBytes: 33_000, fps: 15, localMs: 154,
 *            localEnergyMj: 182, radioMjPerMs: WIFI_MJ_PER_MS }, nodes);
 *          if (c.node) nodes.find((n) => n.id === c.node)!.sessions.push(sessionOf(device, c));
 */
import { InputError } from '../errors';
import type { Role } from '../protocol';
import { sharedMbps, transferMs, uploadEnergyMj } from './energy';

/** A session a node already serves, as the look-ahead needs it. */
export interface NimbusSession {
  /** The session's ε_t. */
  latencyBudgetMs: number;
  /** Its network part (Lt: transfer + RTT) when it was placed. */
  netMs: number;
}

/** A node as the rule sees it, from the device's side. The device's own node is never one. */
export interface NimbusNode {
  id: string;
  /** dew and fog are edge candidates; cloud nodes are only the failover. */
  role: Role;
  /** From the device's access point to this node. */
  rttMs: number;
  /** The node's link rate; the rule shares it as bandwidthMbps / (sessions + 1). */
  bandwidthMbps: number;
  /** Inference time of one frame on this node (the seed's TET; 5 ms for a cloud, CLOUD_EXEC_MS). */
  execMs: number;
  /** Queue time with n clients: q(n) = m·n + b ms (never below 0). m = 0: no queueing. */
  queue: { m: number; b: number };
  sessions: NimbusSession[];
  /** Runs on a battery that is not charging: penalised by γ against a node on mains. */
  onBattery?: boolean;
}

/** The device asking for a session and its requirements. */
export interface NimbusDevice {
  /** One frame's upload, bytes (the seed's d). */
  frameBytes: number;
  fps: number;
  /** ε_t; default 1000 / fps. */
  latencyBudgetMs?: number;
  /** Running one frame on the device itself. */
  localMs: number;
  localEnergyMj: number;
  /** ε_b per frame; default localEnergyMj (the seed's ε_b = TEC). Ignored while charging. */
  energyBudgetMj?: number;
  /** The radio's power, mJ per ms (WIFI_MJ_PER_MS, LTE_MJ_PER_MS). */
  radioMjPerMs: number;
  /** On mains power: no energy constraint (ε_b = ∞), the lowest latency still wins. */
  charging?: boolean;
}

/** How many nodes each step took out, for the reason, the console and the tests. */
export interface NimbusCounts {
  nodes: number;
  /** Non-finite or negative figures: skipped, never trusted. */
  invalid: number;
  /** Step 1: RTT ≥ ε_t. */
  beyondRtt: number;
  /** Step 2: a session already there would break with one more client. */
  full: number;
  /** Step 2: left out by the κ sample. */
  sampledOut: number;
  /** Step 3: L ≥ ε_t. */
  overLatency: number;
  /** Step 3: B ≥ ε_b. */
  overEnergy: number;
  /** Step 3: those that met both. */
  fitting: number;
}

export interface NimbusChoice {
  /** The node placed on; null: the device runs its frames itself. */
  node: string | null;
  via: 'edge' | 'cloud' | 'local';
  /** Estimated per-frame latency (L, or the local time). */
  latencyMs: number;
  /** Estimated device energy per frame (B, or the local energy). */
  energyMj: number;
  /** Lt of the chosen node: what the caller records as the session's netMs. 0 when local. */
  netMs: number;
  /** The ε_t and ε_b the choice was made against. */
  latencyBudgetMs: number;
  energyBudgetMj: number;
  /** The Core score of an edge choice. */
  score?: number;
  counts: NimbusCounts;
  reason: string;
}

export interface NimbusOptions {
  /** Weight of latency (default 0.7; greedy 1). */
  alpha?: number;
  /** Weight of load (default 0.3; greedy 0). */
  beta?: number;
  /** Added to the score of a node on battery (default 0.2: it must be 0.2/α of ε_t faster). */
  gamma?: number;
  /** Edge candidates sampled after the look-ahead; 0 or absent: all. */
  kappa?: number;
  /** For the κ sample; default Math.random. */
  random?: () => number;
  /** greedy: no look-ahead, no sample, α 1, β 0 (the seed's baseline). */
  variant?: 'nimbus' | 'greedy';
}

export const NIMBUS_ALPHA = 0.7;
export const NIMBUS_BETA = 0.3;
export const NIMBUS_GAMMA = 0.2;
/** The seed's assumed inference time in a cloud datacenter. */
export const CLOUD_EXEC_MS = 5;

/** q(n) = m·n + b, never negative (a fitted b may be). */
export function queueMs(node: Pick<NimbusNode, 'queue'>, clients: number): number {
  return Math.max(0, node.queue.m * clients + node.queue.b);
}

/** Clients a node can hold within `budgetMs` of queueing: (ε_t − b) / m; Infinity when m = 0. */
export function maxLoad(node: NimbusNode, budgetMs: number): number {
  return node.queue.m > 0 ? (budgetMs - node.queue.b) / node.queue.m : Number.POSITIVE_INFINITY;
}

/** ε_t of a device: its budget, else one frame's time. */
export function latencyBudget(device: NimbusDevice): number {
  return device.latencyBudgetMs ?? 1000 / device.fps;
}

/** ε_b of a device: unbounded while charging, else its budget, else its local energy. */
export function energyBudget(device: NimbusDevice): number {
  if (device.charging) return Number.POSITIVE_INFINITY;
  return device.energyBudgetMj ?? device.localEnergyMj;
}

/** The device's frame on `node` once it joins: Lt, L and B. */
export function estimate(
  device: NimbusDevice,
  node: NimbusNode,
): { netMs: number; latencyMs: number; energyMj: number } {
  const load = node.sessions.length;
  const netMs = transferMs(device.frameBytes, sharedMbps(node.bandwidthMbps, load)) + node.rttMs;
  return {
    netMs,
    latencyMs: netMs + node.execMs + queueMs(node, load + 1),
    energyMj: uploadEnergyMj(netMs, device.radioMjPerMs),
  };
}

/** The entry a placed session adds to its node's `sessions`. */
export function sessionOf(device: NimbusDevice, choice: NimbusChoice): NimbusSession {
  return { latencyBudgetMs: latencyBudget(device), netMs: choice.netMs };
}

const finite = (x: unknown, min: number): x is number =>
  typeof x === 'number' && Number.isFinite(x) && x >= min;

function checkDevice(device: NimbusDevice): void {
  const fields: [keyof NimbusDevice, number, boolean][] = [
    ['frameBytes', 0, true],
    ['fps', Number.MIN_VALUE, true],
    ['latencyBudgetMs', Number.MIN_VALUE, false],
    ['localMs', 0, true],
    ['localEnergyMj', 0, true],
    ['energyBudgetMj', 0, false],
    ['radioMjPerMs', 0, true],
  ];
  for (const [field, min, required] of fields) {
    const v = device[field];
    if (v === undefined && !required) continue;
    if (!finite(v, min))
      throw new InputError(
        `session ${field} must be a finite number ${min > 0 ? 'above' : 'at least'} 0 (got ${String(v)})`,
      );
  }
}

/** Figures the rule can compute with; a node with others is skipped, not trusted. */
function validNode(n: NimbusNode): boolean {
  return (
    finite(n.rttMs, 0) &&
    finite(n.bandwidthMbps, Number.MIN_VALUE) &&
    finite(n.execMs, 0) &&
    finite(n.queue?.m, 0) &&
    finite(n.queue?.b, Number.NEGATIVE_INFINITY) &&
    Array.isArray(n.sessions) &&
    n.sessions.every((s) => finite(s?.latencyBudgetMs, 0) && finite(s?.netMs, 0))
  );
}

/** Step 2's test: the session of least slack still meets its budget with one more client. */
export function roomForOneMore(node: NimbusNode): boolean {
  if (node.sessions.length === 0) return true;
  let worst = node.sessions[0]!;
  for (const s of node.sessions)
    if (s.latencyBudgetMs - s.netMs < worst.latencyBudgetMs - worst.netMs) worst = s;
  return (
    worst.netMs + node.execMs + queueMs(node, node.sessions.length + 1) <= worst.latencyBudgetMs
  );
}

/** κ of `xs` chosen uniformly without replacement (a partial Fisher–Yates on a copy). */
function sample<T>(xs: T[], k: number, random: () => number): T[] {
  const a = [...xs];
  for (let i = 0; i < k; i++) {
    // Clamped: an injected random that returns 1 or NaN must not index past the end.
    const u = random();
    const j =
      i + Math.min(a.length - i - 1, Math.max(0, Math.floor((u >= 0 ? u : 0) * (a.length - i))));
    [a[i], a[j]] = [a[j]!, a[i]!];
  }
  return a.slice(0, k);
}

const fmt = (x: number) => (Number.isFinite(x) ? x.toFixed(1) : '∞');

/**
 * The node for a device's session by Nimbus's rule (or its greedy baseline); null when it should
 * run locally. Throws InputError naming a device field that is not a usable number.
 */
export function placeSession(
  device: NimbusDevice,
  nodes: NimbusNode[],
  options: NimbusOptions = {},
): NimbusChoice {
  checkDevice(device);
  const greedy = options.variant === 'greedy';
  const alpha = greedy ? 1 : (options.alpha ?? NIMBUS_ALPHA);
  const beta = greedy ? 0 : (options.beta ?? NIMBUS_BETA);
  const gamma = options.gamma ?? NIMBUS_GAMMA;
  const kappa = options.kappa ?? 0;
  for (const [name, v] of [
    ['alpha', alpha],
    ['beta', beta],
    ['gamma', gamma],
  ] as const)
    if (!finite(v, 0))
      throw new InputError(`${name} must be a finite number at least 0 (got ${v})`);
  if (!Number.isInteger(kappa) || kappa < 0)
    throw new InputError(`kappa must be a whole number at least 0 (got ${kappa})`);
  const epsT = latencyBudget(device);
  const epsB = energyBudget(device);
  const counts: NimbusCounts = {
    nodes: nodes.length,
    invalid: 0,
    beyondRtt: 0,
    full: 0,
    sampledOut: 0,
    overLatency: 0,
    overEnergy: 0,
    fitting: 0,
  };
  const base = { latencyBudgetMs: epsT, energyBudgetMj: epsB, counts };

  // 1. FilterAndMinimize (and 2. LookAheadLoad) over the edge; clouds wait for the failover.
  let edge: NimbusNode[] = [];
  const clouds: NimbusNode[] = [];
  for (const n of nodes) {
    if (!validNode(n)) counts.invalid++;
    else if (n.rttMs >= epsT) counts.beyondRtt++;
    else if (n.role === 'cloud') clouds.push(n);
    else if (!greedy && !roomForOneMore(n)) counts.full++;
    else edge.push(n);
  }
  if (!greedy && kappa > 0 && edge.length > kappa) {
    counts.sampledOut = edge.length - kappa;
    edge = sample(edge, kappa, options.random ?? Math.random);
  }

  // 3. Core: both constraints, then the least score; ties to the lower latency, then the id.
  let best: { node: NimbusNode; e: ReturnType<typeof estimate>; score: number } | undefined;
  for (const node of edge) {
    const e = estimate(device, node);
    if (e.latencyMs >= epsT) {
      counts.overLatency++;
      continue;
    }
    if (e.energyMj >= epsB) {
      counts.overEnergy++;
      continue;
    }
    counts.fitting++;
    const load = node.sessions.length;
    const cap = maxLoad(node, epsT);
    const loadTerm = beta === 0 || load === 0 ? 0 : load / cap;
    const score = (alpha * e.latencyMs) / epsT + beta * loadTerm + (node.onBattery ? gamma : 0);
    if (
      !best ||
      score < best.score ||
      (score === best.score &&
        (e.latencyMs < best.e.latencyMs ||
          (e.latencyMs === best.e.latencyMs && node.id < best.node.id)))
    )
      best = { node, e, score };
  }
  if (best)
    return {
      ...base,
      node: best.node.id,
      via: 'edge',
      latencyMs: best.e.latencyMs,
      energyMj: best.e.energyMj,
      netMs: best.e.netMs,
      score: best.score,
      reason: `${best.node.role} ${best.node.id}: ${fmt(best.e.latencyMs)} ms < ${fmt(epsT)} ms, ${fmt(best.e.energyMj)} mJ < ${fmt(epsB)} mJ, score ${best.score.toFixed(3)} (${counts.fitting} of ${counts.nodes} nodes fit)`,
    };

  // 4. Failover: the nearest cloud, if it meets both; else local.
  let cloud: NimbusNode | undefined;
  for (const c of clouds) if (!cloud || c.rttMs < cloud.rttMs) cloud = c;
  let cloudWhy = 'no cloud within RTT';
  if (cloud) {
    const e = estimate(device, cloud);
    if (e.latencyMs < epsT && e.energyMj < epsB)
      return {
        ...base,
        node: cloud.id,
        via: 'cloud',
        latencyMs: e.latencyMs,
        energyMj: e.energyMj,
        netMs: e.netMs,
        reason: `cloud ${cloud.id} (no edge node fits): ${fmt(e.latencyMs)} ms, ${fmt(e.energyMj)} mJ`,
      };
    cloudWhy = `cloud ${cloud.id} needs ${fmt(e.latencyMs)} ms and ${fmt(e.energyMj)} mJ`;
  }
  const { invalid, beyondRtt, full, sampledOut, overLatency, overEnergy } = counts;
  return {
    ...base,
    node: null,
    via: 'local',
    latencyMs: device.localMs,
    energyMj: device.localEnergyMj,
    netMs: 0,
    reason: `local: no node meets ${fmt(epsT)} ms and ${fmt(epsB)} mJ (of ${counts.nodes}: ${beyondRtt} beyond RTT, ${full} full, ${sampledOut} not sampled, ${overLatency} too slow, ${overEnergy} over energy, ${invalid} invalid; ${cloudWhy})`,
  };
}
