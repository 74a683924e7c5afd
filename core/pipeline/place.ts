/**
 * Stage placement along the data path (seed 001 §VI, Houmani et al.), pure: the same function for
 * a tab's, the relay's and the benchmark's nodes. Two phases, as in the seed:
 *
 * 1. Reserve (its Algorithms 2 and 4): the intensive stages reserve capacity, HI first, then LI,
 *    each in priority order (higher first, then manifest order). HI prefers cloud then fog, LI fog
 *    then cloud; within a tier the node with the most free capacity. A stage that fits nowhere in
 *    full gets Algorithm 4: the fog/cloud node with the most free capacity, if that is at least
 *    50% of the stage's need (the floor); else the shortfall to the floor is cut evenly from that
 *    node's reservations that stay at or above their own floor after the cut. When even that
 *    cannot reach the floor the stage is overcommitted on that node (`overcommitted`): a fabric
 *    queues rather than refuse — the seed leaves this case open.
 * 2. Schedule (its Algorithm 3): in data order, an intensive stage runs where it reserved; an NI
 *    stage on the node with free capacity nearest its predecessors (the sum of link costs from
 *    each predecessor's node; `$input` is the source), so it lands next to them. Ties go to the
 *    lower id (the seed picks at random within a tier; this is reproducible).
 *
 * Privacy `device` runs every stage on the source. A fan-out stage (`each`) also lists every other
 * node that can run it (`spread`), nearest first, which the executor deals its branches over.
 * Nodes with tier `dew` are the seed's Edge; intensive stages never reserve there (the seed's
 * LI/HI run only on fog or cloud) unless no fog or cloud node can run them at all.
 * @example
 * const p = placePipeline({ stages, nodes, source: 'edge-1', cost: tierCost(table2, tierOf) });
 * p.stages.detect.node; // 'fog-1'
 */
import { UnavailableError } from '../errors';
import type { Role } from '../protocol';
import { INPUT, type TaskClass } from './schema';

export interface PlaceStage {
  name: string;
  class: TaskClass;
  from: string[];
  /** Capacity the stage needs (cores in the seed, concurrent slots in Brume). */
  need: number;
  priority?: number;
  fanOut?: boolean;
}

export interface PlaceNode {
  id: string;
  tier: Role;
  /** Free capacity, in the unit of `need`. */
  free: number;
  /** Whether it can run the stage at all (holds the app, the variant, …); absent: every stage. */
  runs?: (stage: string) => boolean;
}

export interface PlaceRequest {
  stages: PlaceStage[];
  nodes: PlaceNode[];
  /** The node the input comes from (the caller), `''` for one that is no node (an HTTP client). */
  source: string;
  /** Link cost in ms between two nodes (0 for the same node); the source may be `''`. */
  cost: (a: string, b: string) => number;
  /** `device`: every stage on the source. */
  privacy?: string;
}

export interface Reservation {
  stage: string;
  node: string;
  /** The capacity held, after any cut. */
  amount: number;
  need: number;
  /** How it was made: in full, at Algorithm 4's floor, by cutting others, or overcommitted. */
  how: 'full' | 'floor' | 'cut' | 'overcommitted';
}

export interface StagePlace {
  node: string;
  /** Other nodes that can run it, nearest first (fan-out stages; empty otherwise). */
  spread: string[];
  reason: string;
}

export interface PipelinePlacement {
  stages: Record<string, StagePlace>;
  reservations: Reservation[];
  /** Cuts Algorithm 4 made to earlier reservations: stage → amount taken. */
  cuts: { stage: string; node: string; by: number }[];
}

/** Algorithm 4's floor: a reservation keeps at least this share of its need. */
export const FLOOR = 0.5;

const prefer: Record<'LI' | 'HI', Role[]> = { HI: ['cloud', 'fog'], LI: ['fog', 'cloud'] };

export function placePipeline(req: PlaceRequest): PipelinePlacement {
  const nodes = [...req.nodes].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  const runs = (n: PlaceNode, s: string) => n.runs?.(s) ?? true;
  const out: PipelinePlacement = { stages: {}, reservations: [], cuts: [] };
  if (req.privacy === 'device') {
    for (const s of req.stages) {
      out.stages[s.name] = { node: req.source, spread: [], reason: 'privacy "device": the caller' };
    }
    return out;
  }
  const free = new Map(nodes.map((n) => [n.id, n.free]));
  const byName = new Map(req.stages.map((s) => [s.name, s]));
  const reservedAt = new Map<string, Reservation>();

  // 1. Reservation: HI then LI, each by priority then manifest order.
  for (const cls of ['HI', 'LI'] as const) {
    const list = req.stages
      .map((s, i) => ({ s, i }))
      .filter(({ s }) => s.class === cls)
      .sort((a, b) => (b.s.priority ?? 0) - (a.s.priority ?? 0) || a.i - b.i);
    for (const { s } of list) {
      const able = nodes.filter((n) => runs(n, s.name));
      if (able.length === 0) throw new UnavailableError(`no node can run stage "${s.name}"`);
      const tiers = prefer[cls];
      const upper = able.filter((n) => tiers.includes(n.tier));
      const pool = upper.length > 0 ? upper : able; // only edges can: use them
      const r = reserve(s, pool, tiers, free, out);
      reservedAt.set(s.name, r);
      out.reservations.push(r);
    }
  }

  // 2. Scheduling in data order: intensive stages where they reserved, NI next to predecessors.
  const where = new Map<string, string>();
  const nodeOf = (f: string) => (f === INPUT ? req.source : (where.get(f) ?? req.source));
  for (const name of dataOrder(req.stages)) {
    const s = byName.get(name)!;
    const near = (id: string) => s.from.reduce((sum, f) => sum + req.cost(nodeOf(f), id), 0);
    const able = nodes.filter((n) => runs(n, s.name));
    const r = reservedAt.get(name);
    let node: string;
    let reason: string;
    if (r) {
      node = r.node;
      const tier = nodes.find((n) => n.id === node)!.tier;
      reason = `${s.class} on ${tier}: reserved ${round(r.amount)} of ${round(r.need)} (${r.how})`;
    } else {
      if (able.length === 0) throw new UnavailableError(`no node can run stage "${s.name}"`);
      const fits = able.filter((n) => (free.get(n.id) ?? 0) >= s.need);
      const pool = fits.length > 0 ? fits : able;
      node = nearest(pool, near).id;
      free.set(node, (free.get(node) ?? 0) - s.need);
      reason = `NI next to its predecessors (~${round(near(node))} ms away)${fits.length > 0 ? '' : ', overcommitted'}`;
    }
    where.set(name, node);
    const spread = s.fanOut
      ? able
          .filter((n) => n.id !== node)
          .sort((a, b) => near(a.id) - near(b.id) || (a.id < b.id ? -1 : 1))
          .map((n) => n.id)
      : [];
    out.stages[name] = { node, spread, reason };
  }
  return out;
}

/** Algorithm 2 for one stage, then Algorithm 4 when it fits nowhere in full. */
function reserve(
  s: PlaceStage,
  pool: PlaceNode[],
  tiers: Role[],
  free: Map<string, number>,
  out: PipelinePlacement,
): Reservation {
  const f = (n: PlaceNode) => free.get(n.id) ?? 0;
  // The preferred tiers in order, then any other the pool has (only edges can run it).
  const order = [...tiers, ...pool.map((n) => n.tier).filter((t) => !tiers.includes(t))];
  for (const tier of order) {
    const fit = pool.filter((n) => n.tier === tier && f(n) >= s.need);
    if (fit.length > 0) {
      const n = most(fit, f);
      free.set(n.id, f(n) - s.need);
      return { stage: s.name, node: n.id, amount: s.need, need: s.need, how: 'full' };
    }
  }
  // Algorithm 4: the node with the most free capacity (ties: the preferred tier), at least the floor.
  const rank = (x: PlaceNode) => f(x) - tiers.indexOf(x.tier) * 1e-9;
  const n = most(pool, rank);
  const floor = FLOOR * s.need;
  const has = Math.max(0, f(n));
  if (has >= floor) {
    free.set(n.id, f(n) - has);
    return { stage: s.name, node: n.id, amount: has, need: s.need, how: 'floor' };
  }
  // Cut evenly from the reservations there that stay at their own floor after their part.
  const remain = floor - has;
  let able = out.reservations.filter((r) => r.node === n.id);
  for (;;) {
    const part = remain / able.length;
    const keep = able.filter((r) => r.amount - part >= FLOOR * r.need);
    if (keep.length === able.length) break;
    able = keep;
  }
  if (able.length > 0) {
    const part = remain / able.length;
    for (const r of able) {
      r.amount -= part;
      out.cuts.push({ stage: r.stage, node: n.id, by: part });
    }
    free.set(n.id, f(n) - has);
    return { stage: s.name, node: n.id, amount: floor, need: s.need, how: 'cut' };
  }
  free.set(n.id, f(n) - s.need);
  return { stage: s.name, node: n.id, amount: has, need: s.need, how: 'overcommitted' };
}

function most(nodes: PlaceNode[], f: (n: PlaceNode) => number): PlaceNode {
  let best = nodes[0]!;
  for (const n of nodes) if (f(n) > f(best)) best = n; // sorted by id: ties keep the lower
  return best;
}

function nearest(nodes: PlaceNode[], cost: (id: string) => number): PlaceNode {
  let best = nodes[0]!;
  for (const n of nodes) if (cost(n.id) < cost(best.id)) best = n;
  return best;
}

/** Stages after all their `from` (manifest order otherwise). */
function dataOrder(stages: PlaceStage[]): string[] {
  const byName = new Map(stages.map((s) => [s.name, s]));
  const out: string[] = [];
  const done = new Set<string>();
  const visit = (name: string) => {
    if (done.has(name)) return;
    done.add(name);
    for (const f of byName.get(name)?.from ?? []) if (byName.has(f)) visit(f);
    out.push(name);
  };
  for (const s of stages) visit(s.name);
  return out;
}

const round = (x: number) => Math.round(x * 100) / 100;

/** A link between two tiers as the seed's Table II gives it. */
export interface TierLink {
  delayMs: number;
  mbps: number;
}

/**
 * Link cost from a table by tier pair (seed 001 eq. 2): delay + S / bandwidth, `S` in Mbit; edge
 * to cloud goes through fog (both hops). Same node: 0. The source `''` is taken as `sourceTier`.
 */
export function tierCost(
  table: Partial<Record<`${Role}-${Role}`, TierLink>>,
  tierOf: (id: string) => Role,
  sizeMbit: number,
): (a: string, b: string) => number {
  const hop = (x: Role, y: Role): number => {
    const l = table[`${x}-${y}`] ?? table[`${y}-${x}`];
    if (l) return l.delayMs + (sizeMbit / l.mbps) * 1000;
    if ((x === 'dew' && y === 'cloud') || (x === 'cloud' && y === 'dew')) {
      return hop('dew', 'fog') + hop('fog', 'cloud');
    }
    return Number.POSITIVE_INFINITY;
  };
  return (a, b) => (a === b ? 0 : hop(tierOf(a), tierOf(b)));
}
