/**
 * The relay's choice of node and variant for a request: among the nodes privacy allows, the most
 * accurate (node, variant) pair whose estimate — network RTT + queue wait + execution — fits the
 * latency budget; ties go to the faster, then the less loaded, then the lower id.
 * Execution is the node's own measured p50 once it has three samples, before that the manifest's
 * figure scaled by a prior for the node's backend.
 * @example const p = place(hub.nodes(), { app: 'digits', service: 'model', variants, qos: { accuracy: 0.96 }, caller });
 *          p.node, p.rpc === 'large', p.reason
 */
import { BrumeError, QosError } from './errors';
import type { BackendName } from './exec/model-runner';
import type { Role } from './protocol';
import type { Qos } from './scheduler';

export interface NodeView {
  id: string;
  role: Role;
  /** base64url SPKI. */
  publicKey: string;
  /** On the relay's trust list (meaningful for fog and cloud). */
  trusted: boolean;
  online: boolean;
  /** The user paused contributing: it serves only its own requests. */
  paused: boolean;
  rttMs: number;
  /** Most preferred first: models run on backends[0]. */
  backends: BackendName[];
  queue: number;
  maxConcurrency: number;
  apps: string[];
  /** By `app/service/rpc@backend` (models) or `app/service/rpc@logic`. */
  stats: Record<string, { count: number; p50: number }>;
  /** Variants it can hold, by `app/modelService`; no key: not reported yet, all allowed. */
  models: Record<string, string[]>;
}

export interface VariantInfo {
  rpc: string;
  accuracy: number;
  latencyMs: number;
}

export interface PlacementRequest {
  app: string;
  service: string;
  /** When the service is a Logic: its rpc and the model service that decides its accuracy. */
  logic?: { rpc: string; modelService?: string };
  /** Variants of the model service that decides accuracy; one `{ rpc: '' }` when none does. */
  variants: VariantInfo[];
  qos: Qos;
  /** The asking node, or '' for an HTTP client of the relay. */
  caller: string;
  exclude?: string[];
}

export interface Placement {
  node: string;
  /** The model variant ('' when no model decides). */
  rpc: string;
  estimateMs: number;
  breakdown: { networkMs: number; queueMs: number; execMs: number; measured: boolean };
  reason: string;
}

/**
 * Before a node has measured a variant, the manifest's latency scaled by this for its backend.
 * onnxruntime-node's CPU kernels beat the browser's WASM build (SIMD and threads); for the small
 * models Brume ships, a WebGPU dispatch costs more than it saves.
 */
export const backendPrior: Record<BackendName, number> = { cpu: 0.6, wasm: 1, webgpu: 1.2 };

const minSamples = 3;

export function place(nodes: readonly NodeView[], req: PlacementRequest): Placement {
  if (nodes.length === 0)
    throw new BrumeError('E_UNAVAILABLE', 'no node is connected to the relay');
  const { qos, caller, app } = req;
  const allowed = privacyFilter(nodes, req);
  const modelService = req.logic ? req.logic.modelService : req.service;
  const modelKey = modelService ? `${app}/${modelService}` : '';
  const logicKey = req.logic ? `${app}/${req.service}/${req.logic.rpc}@logic` : '';
  const callerRtt = caller ? (nodes.find((n) => n.id === caller)?.rttMs ?? 0) : 0;
  const exclude = req.exclude?.length ? new Set(req.exclude) : undefined;
  // Stats keys per backend, built once per decision rather than once per node and variant.
  const statKeys = new Map<BackendName, string[]>();
  const keysFor = (backend: BackendName) => {
    let keys = statKeys.get(backend);
    if (!keys) {
      keys = req.variants.map((v) => `${modelKey}/${v.rpc}@${backend}`);
      statKeys.set(backend, keys);
    }
    return keys;
  };

  let best: Candidate | undefined;
  let bestAccuracy = Number.NEGATIVE_INFINITY; // over pairs privacy and capacity allow
  let fastestAccurate = Number.POSITIVE_INFINITY; // over pairs that also meet accuracy
  let eligible = 0;
  for (const n of allowed) {
    if (!n.online || exclude?.has(n.id) || (n.paused && n.id !== caller)) continue;
    eligible++;
    const backend = n.backends[0] ?? 'wasm';
    const runnable = modelKey ? n.models[modelKey] : undefined;
    const logicStat = logicKey ? n.stats[logicKey] : undefined;
    const logicMs = logicStat && logicStat.count >= minSamples ? logicStat.p50 : 0;
    const networkMs = n.id === caller ? 0 : n.rttMs + callerRtt;
    const load = n.queue / Math.max(1, n.maxConcurrency);
    const keys = keysFor(backend);
    for (let i = 0; i < req.variants.length; i++) {
      const v = req.variants[i]!;
      if (runnable && v.rpc && !runnable.includes(v.rpc)) continue;
      if (v.accuracy > bestAccuracy) bestAccuracy = v.accuracy;
      if (qos.accuracy !== undefined && v.accuracy < qos.accuracy) continue;
      const stat = v.rpc ? n.stats[keys[i]!] : undefined;
      const measured = stat !== undefined && stat.count >= minSamples;
      const modelMs = !v.rpc ? 0 : measured ? stat.p50 : v.latencyMs * backendPrior[backend];
      const execMs = modelMs + logicMs;
      const queueMs = execMs * load;
      const total = networkMs + queueMs + execMs;
      if (total < fastestAccurate) fastestAccurate = total;
      if (qos.latencyMs !== undefined && total > qos.latencyMs) continue;
      if (best && !better(v.accuracy, total, load, n.id, best)) continue;
      best = { n, v, total, load, networkMs, queueMs, execMs, measured };
    }
  }

  if (best) return describe(best, req);
  const what = `${app}/${req.service}`;
  if (eligible === 0) {
    if (qos.privacy !== undefined) {
      throw new QosError(
        'privacy',
        undefined,
        `no node allowed by privacy ${short(qos.privacy)} can take ${what} now`,
      );
    }
    throw new BrumeError(
      'E_UNAVAILABLE',
      `no node can take ${what} now (all paused, busy elsewhere or lost)`,
    );
  }
  if (bestAccuracy === Number.NEGATIVE_INFINITY) {
    throw new QosError('accuracy', undefined, `no connected node can hold any variant of ${what}`);
  }
  if (fastestAccurate === Number.POSITIVE_INFINITY) {
    throw new QosError(
      'accuracy',
      bestAccuracy,
      `no node reaches accuracy ${qos.accuracy} for ${what}; the best available is ${bestAccuracy}`,
    );
  }
  throw new QosError(
    'latencyMs',
    fastestAccurate,
    `no node runs ${what}${qos.accuracy !== undefined ? ` at accuracy ${qos.accuracy}` : ''} within ${qos.latencyMs} ms; the fastest takes ~${fastestAccurate.toFixed(1)} ms`,
  );
}

interface Candidate {
  n: NodeView;
  v: VariantInfo;
  total: number;
  load: number;
  networkMs: number;
  queueMs: number;
  execMs: number;
  measured: boolean;
}

/** Whether a pair with these figures beats `b` (compared without building it). */
function better(accuracy: number, total: number, load: number, id: string, b: Candidate): boolean {
  if (accuracy !== b.v.accuracy) return accuracy > b.v.accuracy;
  if (total !== b.total) return total < b.total;
  if (load !== b.load) return load < b.load;
  return id < b.n.id;
}

/** The nodes `qos.privacy` allows: the caller, one node by id, or the trusted holders of a key. */
function privacyFilter(nodes: readonly NodeView[], req: PlacementRequest): readonly NodeView[] {
  const p = req.qos.privacy;
  if (p === undefined) return nodes;
  if (p === 'device') {
    if (!req.caller) {
      throw new QosError(
        'privacy',
        undefined,
        'privacy "device" keeps a request on its caller, and an HTTP caller has no device',
      );
    }
    return nodes.filter((n) => n.id === req.caller);
  }
  if (/^[0-9a-f]{32}$/.test(p)) return nodes.filter((n) => n.id === p);
  const holders = nodes.filter((n) => n.publicKey === p);
  const trusted = holders.filter((n) => n.trusted);
  if (holders.length > 0 && trusted.length === 0) {
    throw new QosError(
      'privacy',
      undefined,
      `the node with key ${short(p)} is not trusted by this relay (brume trust)`,
    );
  }
  if (holders.length === 0) {
    throw new QosError('privacy', undefined, `no node with key ${short(p)} is connected`);
  }
  return trusted;
}

function describe(c: Candidate, req: PlacementRequest): Placement {
  const { n, v } = c;
  const source = c.measured ? 'measured' : `prior ×${backendPrior[n.backends[0] ?? 'wasm']}`;
  const variant = v.rpc ? `${v.rpc}, acc ${v.accuracy}, ` : '';
  const why =
    req.qos.latencyMs !== undefined
      ? `most accurate within ${req.qos.latencyMs} ms`
      : 'most accurate (no latency budget)';
  const where =
    n.id === req.caller
      ? 'the caller itself'
      : `${n.id.slice(0, 8)} (${n.role}, ${n.backends[0] ?? '?'})`;
  return {
    node: n.id,
    rpc: v.rpc,
    estimateMs: c.total,
    breakdown: {
      networkMs: c.networkMs,
      queueMs: c.queueMs,
      execMs: c.execMs,
      measured: c.measured,
    },
    reason: `${where}: ${variant}~${c.total.toFixed(1)} ms (net ${c.networkMs.toFixed(1)} + queue ${c.queueMs.toFixed(1)} + exec ${c.execMs.toFixed(1)} ${source}); ${why}`,
  };
}

function short(p: string): string {
  return p.length > 16 ? `${p.slice(0, 16)}…` : p;
}
