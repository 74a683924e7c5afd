/**
 * The choice of node and variant for a request (costs after Nimbus §7), made by the relay over
 * every node and by a node over itself alone (see route.ts): among the nodes privacy allows, the most accurate (node, variant) pair whose estimate —
 * network + queue wait + execution — fits the latency budget; ties go to the faster, then the
 * less loaded, then the lower id, so the same fabric always gets the same answer.
 *
 * - network: 0 on the caller itself, else the node's RTT to the relay plus the caller's.
 * - execution: the p50 for the variant on the node's first backend once there are `minSamples` —
 *   the relay's own measurement (`measured`) when it has that many, else what the node reports
 *   (`stats`) — before that the manifest's figure × `backendPrior` (figures.ts); plus a Logic's
 *   own p50.
 * - queue: execution × queue / slots (each request ahead costs one execution per slot): the
 *   node's maxConcurrency, within its pool's cap for a service that declares `scale` (slotsFor).
 *
 * One pass over the nodes, no sorting and no allocation per node. The relay decides through
 * indexed.ts instead, which keeps the pairs sorted and answers what this pass answers. Throws QosError naming the most fundamental constraint
 * that cannot be met (privacy, then accuracy, then latency) with what was achievable as `best`.
 * @example
 * const qos = { accuracy: 0.96, latencyMs: 20 };
 * const p = place(nodes, { app: 'digits', service: 'model', variants, qos, caller: '' });
 * p.node; // 'a1b2c3d4…'
 * p.rpc; // 'large'
 * p.reason; // 'a1b2c3d4 (fog, webgpu): large, acc 0.969, ~3.1 ms
 *           //  (net 0.4 + queue 0 + exec 2.7 measured); most accurate within 20 ms'
 */
import { QosError, UnavailableError } from '../errors';
import type { Role } from '../protocol';
import type { Qos } from '../scheduler';
import {
  type BackendName,
  backendOf,
  backendPrior,
  execFigure,
  type ModelFigure,
  modelFigure,
  modelKey as modelsKey,
  type NodeView,
  runsVersion,
  slotsFor,
  statsKey,
} from './figures';

/** A model variant's figures from the manifest. */
export interface VariantInfo {
  rpc: string;
  accuracy: number;
  latencyMs: number;
}

export interface PlacementRequest {
  app: string;
  /** The service called. */
  service: string;
  /** When the service is a Logic: its rpc and the model service that decides its accuracy. */
  logic?: { rpc: string; modelService?: string };
  /**
   * Variants of the model service that decides accuracy (the service itself or the Logic's
   * model). For a Logic that calls no model, one `{ rpc: '', accuracy: 1, latencyMs }` whose
   * latency is the Logic's own prior (the manifest's figure, or 1).
   */
  variants: VariantInfo[];
  qos: Qos;
  /** The asking node, or '' for an HTTP client of the relay. */
  caller: string;
  /** Nodes not to use: already tried and lost. */
  exclude?: string[];
  /** Only nodes on the trust list: the reference run of a redundant execution (relay/verify.ts). */
  trustedOnly?: boolean;
  /** Only nodes that hold or fetch this version of the app (a call that asked `qos.version`). */
  version?: string;
  /**
   * Only nodes of these roles, in order of preference: any node of an earlier role that fits
   * beats every node of a later one (the service's `tiers`, PROTOCOL.md §2.1). Privacy "device"
   * overrides it: the caller runs it whatever its role.
   */
  tiers?: readonly Role[];
}

export interface Placement {
  node: string;
  /** The model variant ('' when no model decides). */
  rpc: string;
  /** networkMs + queueMs + execMs. */
  estimateMs: number;
  breakdown: { networkMs: number; queueMs: number; execMs: number; measured: boolean };
  /** One line for people: where, what, how long, from which figures, and why. */
  reason: string;
}

/** How `qos.privacy` restricts nodes: not at all, to the caller, to one node id, to a key. */
type Pin = 'none' | 'device' | 'node' | 'key';

/**
 * The node and variant for `req` among `nodes`.
 * Throws BrumeError E_UNAVAILABLE when no node is connected (or none can take work and no privacy
 * was asked), else QosError: 'privacy' (nothing privacy allows can take it), 'accuracy' (nothing
 * reaches it; `best` = the best accuracy on offer), 'latencyMs' (nothing accurate enough fits the
 * budget; `best` = the fastest such estimate).
 */
export function place(nodes: readonly NodeView[], req: PlacementRequest): Placement {
  if (nodes.length === 0) throw new UnavailableError('no node is connected');
  const { qos, caller, app, variants } = req;
  const privacy = qos.privacy;
  const pin = pinOf(privacy);
  if (pin === 'device' && !caller) {
    throw new QosError(
      'privacy',
      undefined,
      'privacy "device" keeps a request on its caller, and an HTTP caller has no device',
    );
  }
  const modelService = req.logic ? req.logic.modelService : req.service;
  const modelKey = modelService ? modelsKey(app, modelService) : '';
  const logicKey = req.logic ? statsKey(app, req.service, req.logic.rpc, 'logic') : '';
  const pool = `${app}/${req.service}`;
  const callerRtt = caller ? (nodes.find((n) => n.id === caller)?.rttMs ?? 0) : 0;
  const exclude = req.exclude?.length ? req.exclude : undefined;
  const trustedOnly = req.trustedOnly === true;
  const tiers = tiersOf(req, pin);
  const minAccuracy = qos.accuracy ?? Number.NEGATIVE_INFINITY;
  const budget = qos.latencyMs ?? Number.POSITIVE_INFINITY;
  const keys: Partial<Record<BackendName, string[]>> = {};
  const figure: ModelFigure = { ms: 0, measured: false, byRelay: false };

  let holders = 0; // nodes with the asked key, trusted or not
  let trustedHolders = 0;
  let eligible = 0; // nodes privacy allows that can take work now
  let allowed = 0; // nodes privacy allows
  let onTier = 0; // of those, nodes of a role the service's tiers name
  let bestAccuracy = Number.NEGATIVE_INFINITY; // over pairs privacy and capacity allow
  let fastestAccurate = Number.POSITIVE_INFINITY; // over those that also meet accuracy
  // The best pair so far, kept in locals rather than an object per improvement.
  let bn: NodeView | undefined;
  let bv: VariantInfo | undefined;
  let bTotal = 0;
  let bLoad = 0;
  let bRank = 0;
  let bNet = 0;
  let bQueue = 0;
  let bExec = 0;
  let bMeasured = false;
  let bByRelay = false;

  for (let j = 0; j < nodes.length; j++) {
    const n = nodes[j]!;
    const isCaller = caller !== '' && n.id === caller;
    if (pin !== 'none') {
      if (
        pin === 'device' ? !isCaller : pin === 'node' ? n.id !== privacy : n.publicKey !== privacy
      )
        continue;
      if (pin === 'key') {
        holders++;
        if (!n.trusted) continue;
        trustedHolders++;
      }
    }
    allowed++;
    // Tiers in order of preference: a node of an earlier role beats any of a later one.
    const rank = tiers ? tiers.indexOf(n.role) : 0;
    if (rank < 0) continue;
    onTier++;
    if (
      !n.online ||
      ((n.paused || n.quarantined) && !isCaller) ||
      (trustedOnly && !n.trusted) ||
      exclude?.includes(n.id) ||
      !runsVersion(n, app, req.version)
    )
      continue;
    eligible++;
    const backend = backendOf(n);
    const runnable = modelKey ? n.models[modelKey] : undefined;
    const logicStat = logicKey ? execFigure(n, logicKey) : undefined;
    const logicMeasured = logicStat !== undefined;
    const logicMs = logicMeasured ? logicStat.p50 : 0;
    const networkMs = isCaller ? 0 : n.rttMs + callerRtt;
    const slots = slotsFor(n, pool);
    const load = n.queue / slots;
    let statKeys: string[] | undefined;
    let byRelay = false;
    for (let i = 0; i < variants.length; i++) {
      const v = variants[i]!;
      if (runnable && v.rpc && !runnable.includes(v.rpc)) continue;
      if (v.accuracy > bestAccuracy) bestAccuracy = v.accuracy;
      if (v.accuracy < minAccuracy) continue;
      let modelMs: number;
      let measured: boolean;
      if (v.rpc) {
        statKeys ??= keys[backend] ??= variants.map((w) =>
          statsKey(app, modelService!, w.rpc, backend),
        );
        const f = modelFigure(n, statKeys[i]!, v.latencyMs, backend, figure);
        measured = f.measured;
        modelMs = f.ms;
        byRelay = f.byRelay;
      } else {
        // No model decides: the variant's latency is the Logic's own prior, until it is measured.
        measured = logicMeasured;
        modelMs = logicMeasured ? 0 : v.latencyMs;
        byRelay = logicMeasured && logicStat === n.measured?.[logicKey];
      }
      const execMs = modelMs + logicMs;
      const queueMs = (execMs * n.queue) / slots;
      const total = networkMs + queueMs + execMs;
      if (total < fastestAccurate) fastestAccurate = total;
      if (total > budget) continue;
      if (bn && bv) {
        if (rank !== bRank) {
          if (rank > bRank) continue;
        } else if (v.accuracy !== bv.accuracy) {
          if (v.accuracy < bv.accuracy) continue;
        } else if (total !== bTotal) {
          if (total > bTotal) continue;
        } else if (load !== bLoad) {
          if (load > bLoad) continue;
        } else if (n.id >= bn.id) continue;
      }
      bn = n;
      bv = v;
      bRank = rank;
      bTotal = total;
      bLoad = load;
      bNet = networkMs;
      bQueue = queueMs;
      bExec = execMs;
      bMeasured = measured;
      bByRelay = byRelay;
    }
  }

  if (bn && bv) {
    const breakdown = {
      networkMs: bNet,
      queueMs: bQueue,
      execMs: bExec,
      measured: bMeasured,
    };
    return {
      node: bn.id,
      rpc: bv.rpc,
      estimateMs: bTotal,
      breakdown,
      reason: explain(bn, bv, bTotal, breakdown, req, bByRelay),
    };
  }
  throw refusal(nodes, req, pin, {
    holders,
    trustedHolders,
    eligible,
    allowed,
    onTier,
    bestAccuracy,
    fastestAccurate,
  });
}

/** What one pass over the nodes counted, for the error when nothing fits. */
interface Tally {
  /** Nodes with the asked key, trusted or not. */
  holders: number;
  trustedHolders: number;
  /** Nodes privacy allows that can take work now. */
  eligible: number;
  /** Nodes privacy allows, and those of them whose role the service's tiers name. */
  allowed: number;
  onTier: number;
  /** Over pairs privacy and capacity allow. */
  bestAccuracy: number;
  /** Over those that also meet accuracy. */
  fastestAccurate: number;
}

/**
 * The error when no pair fits, naming the most fundamental constraint missed: privacy, then
 * accuracy, then latency (see `place`).
 */
function refusal(nodes: readonly NodeView[], req: PlacementRequest, pin: Pin, t: Tally): Error {
  const { qos } = req;
  const privacy = qos.privacy;
  const what = `${req.app}/${req.service}`;
  if (pin === 'key' && t.holders > 0 && t.trustedHolders === 0) {
    return new QosError(
      'privacy',
      undefined,
      `the node with key ${short(privacy!)} is not trusted by this relay (brume trust <key>)`,
    );
  }
  const tiers = tiersOf(req, pin);
  if (tiers && t.allowed > 0 && t.onTier === 0) {
    const none = pin === 'none' ? 'no such node is connected' : 'privacy allows none of them';
    return new QosError(
      'tiers',
      undefined,
      `${what} runs only on ${tiers.join(' or ')} nodes (its tiers), and ${none}`,
    );
  }
  if (t.eligible === 0) {
    if (tiers && pin === 'none') {
      return new UnavailableError(
        `no ${tiers.join(' or ')} node (the tiers of ${what}) can take it now (all offline, paused, quarantined or already tried)`,
      );
    }
    if (req.version !== undefined && pin === 'none') {
      return new UnavailableError(
        `no node that can take ${what} now holds or fetches version ${req.version} (qos.version)`,
      );
    }
    if (pin === 'none') {
      return new UnavailableError(
        `no node can take ${what} now (all offline, paused, quarantined or already tried)`,
      );
    }
    return new QosError('privacy', undefined, privacyMiss(pin, privacy!, nodes, req));
  }
  if (t.bestAccuracy === Number.NEGATIVE_INFINITY) {
    return new QosError(
      'accuracy',
      undefined,
      `no node ${pin === 'none' ? '' : 'privacy allows '}can hold any variant of ${what}`,
    );
  }
  if (t.fastestAccurate === Number.POSITIVE_INFINITY) {
    return new QosError(
      'accuracy',
      t.bestAccuracy,
      `no node reaches accuracy ${qos.accuracy} for ${what}; the best available is ${t.bestAccuracy}`,
    );
  }
  const at = qos.accuracy !== undefined ? ` at accuracy ${qos.accuracy}` : '';
  return new QosError(
    'latencyMs',
    t.fastestAccurate,
    `no node runs ${what}${at} within ${qos.latencyMs} ms; the fastest takes ~${ms(t.fastestAccurate)} ms`,
  );
}

/** The roles a request may be placed on: its tiers, unless privacy keeps it on its caller. */
export function tiersOf(req: PlacementRequest, pin: Pin): readonly Role[] | undefined {
  return pin === 'device' ? undefined : req.tiers;
}

/**
 * 'device'; a node id (32 hex chars, the only form ids take); else a public key (a base64url SPKI
 * is far longer than 32 chars, so the two never collide).
 */
export function pinOf(privacy: string | undefined): Pin {
  if (privacy === undefined) return 'none';
  if (privacy === 'device') return 'device';
  return /^[0-9a-f]{32}$/.test(privacy) ? 'node' : 'key';
}

/** Why nothing privacy allows can take the request, naming what was asked. */
function privacyMiss(pin: Pin, privacy: string, nodes: readonly NodeView[], req: PlacementRequest) {
  const asked =
    pin === 'device'
      ? 'privacy "device" (the caller itself)'
      : pin === 'node'
        ? `privacy node ${short(privacy)}`
        : `privacy key ${short(privacy)}`;
  const known =
    pin === 'key'
      ? nodes.some((n) => n.publicKey === privacy)
      : pin === 'node'
        ? nodes.some((n) => n.id === privacy)
        : nodes.some((n) => n.id === req.caller);
  return known
    ? `${asked} allows no node that can take ${req.app}/${req.service} now (offline, paused, quarantined or already tried)`
    : `${asked}: no such node is connected`;
}

/** `a1b2c3d4 (fog, webgpu): large, acc 0.969, ~3.1 ms (net 0.4 + queue 0 + exec 2.7 measured); …` */
export function explain(
  n: NodeView,
  v: VariantInfo,
  total: number,
  b: Placement['breakdown'],
  req: PlacementRequest,
  byRelay: boolean,
): string {
  const backend = backendOf(n);
  const where = `${n.id.slice(0, 8)} (${n.role}, ${backend}${n.id === req.caller ? ', the caller' : ''})`;
  const what = v.rpc ? `${v.rpc}, acc ${v.accuracy}` : 'Logic only';
  const source = b.measured
    ? byRelay
      ? 'measured by the relay'
      : 'measured'
    : v.rpc
      ? `prior ×${backendPrior[backend]}`
      : 'prior';
  const figures = `net ${ms(b.networkMs)} + queue ${ms(b.queueMs)} + exec ${ms(b.execMs)} ${source}`;
  const pick = req.variants.length > 1 ? 'most accurate' : 'fastest';
  const within =
    req.qos.latencyMs !== undefined ? `within ${req.qos.latencyMs} ms` : '(no latency budget)';
  return `${where}: ${what}, ~${ms(total)} ms (${figures}); ${pick} ${within}`;
}

/** One decimal, without a trailing `.0`. */
function ms(x: number): string {
  return String(Math.round(x * 10) / 10);
}

function short(p: string): string {
  return p.length > 16 ? `${p.slice(0, 16)}…` : p;
}
