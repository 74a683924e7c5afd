/**
 * The figures placement judges a node by, in one place for the relay and for a node judging
 * itself: the stats key a latency is kept under, how many samples a measurement needs before it
 * counts, the backend priors, and the execution figure for one node (the relay's measurement →
 * the node's report → the manifest's figure × the prior for its backend).
 * @example
 * statsKey('digits', 'model', 'large', 'wasm'); // 'digits/model/large@wasm'
 * statsKey('digits', 'classify', 'classify', 'logic'); // 'digits/classify/classify@logic'
 * modelFigure(node, 'digits/model/large@wasm', 3, 'cpu'); // { ms: 1.8, measured: false, … }
 */
import type { BackendName } from '../exec/model-runner';
import type { Role } from '../protocol';

export type { BackendName } from '../exec/model-runner';

/** A latency summary as a node reports it and the relay measures it. */
export interface LatencyFigure {
  count: number;
  p50: number;
}

/** What the relay knows of one node when it places a request (and a node knows of itself). */
export interface NodeView {
  /** 32 hex chars: the hash of its public key. */
  id: string;
  role: Role;
  /** base64url SPKI. */
  publicKey: string;
  /** On the relay's trust list (meaningful for fog and cloud). */
  trusted: boolean;
  online: boolean;
  /** The user paused contributing: it serves only its own requests. */
  paused: boolean;
  /** Measured relay ↔ node round trip. */
  rttMs: number;
  /** Most preferred first: models run on backends[0]. */
  backends: BackendName[];
  /** Requests running or queued now. */
  queue: number;
  /** At least 1. */
  maxConcurrency: number;
  apps: string[];
  /** Measured latency by `statsKey` (`app/service/rpc@backend`, or `@logic` for a Logic). */
  stats: Record<string, LatencyFigure>;
  /** Variants it can hold, by `app/modelService`; no key: not reported yet, all allowed. */
  models: Record<string, string[]>;
  /**
   * The relay's own measurement of its execution (forward → result, minus RTT), by the keys of
   * `stats`: preferred over what the node reports once it has `minSamples` (a node can lie).
   */
  measured?: Record<string, LatencyFigure>;
  /** Caught answering wrong (relay/verify.ts): never placed, except on itself as the caller. */
  quarantined?: boolean;
  /** The versions of each app it holds (its heartbeat's `versions`); absent: not reported. */
  versions?: Record<string, string[]>;
  /** It fetches a version it does not hold when a call needs it (its heartbeat's `fetch`). */
  fetch?: boolean;
  /**
   * The most workers each service that declares `scale` can have on it, by `app/service` (its
   * heartbeat's `workersMax`; a model service's sessions on a Node node): a call to one has at
   * most that many slots there.
   */
  workersMax?: Record<string, number>;
}

/**
 * The calls `n` runs at once for `app/service` (empty `pool`: none named): its `maxConcurrency`,
 * within the pool's most workers (sessions) when the node reports them (`workersMax`); at least 1.
 */
export function slotsFor(n: NodeView, pool: string): number {
  const workers = pool ? n.workersMax?.[pool] : undefined;
  return Math.max(
    1,
    workers === undefined ? n.maxConcurrency : Math.min(n.maxConcurrency, workers),
  );
}

/**
 * Whether `n` can run version `version` of `app`: it holds it, or it fetches what it lacks
 * (PROTOCOL.md §5.7). A call that asks no version runs anywhere (each node's current one).
 */
export function runsVersion(n: NodeView, app: string, version: string | undefined): boolean {
  if (version === undefined || n.fetch === true) return true;
  const held = n.versions ? Object.hasOwn(n.versions, app) && n.versions[app] : undefined;
  return held ? held.includes(version) : false;
}

/**
 * Before a node has measured a variant, the manifest's latency (measured on a browser's WASM
 * build) scaled by this for the node's backend. onnxruntime-node's CPU kernels beat the browser's
 * WASM build (native SIMD and threads): 0.6. For the small models Brume ships, a WebGPU dispatch
 * and readback cost more than the kernels save: 1.2. `minSamples` samples replace the guess.
 */
export const backendPrior: Record<BackendName, number> = { cpu: 0.6, wasm: 1, webgpu: 1.2 };

/** Samples a measured p50 needs before it replaces the prior. */
export const minSamples = 3;

/** Whether a measured figure has enough samples to count. */
export function counts(figure: LatencyFigure | undefined): figure is LatencyFigure {
  return figure !== undefined && figure.count >= minSamples;
}

/** `app/service/rpc@`: every key for one rpc (or variant) of a service, on any backend. */
export function statsKeyPrefix(app: string, service: string, rpc: string): string {
  return `${app}/${service}/${rpc}@`;
}

/**
 * The key a latency is kept under, by the node that ran it and by the relay that timed it:
 * `app/service/variant@backend` for a model, `app/service/rpc@logic` for a Logic's own time.
 */
export function statsKey(
  app: string,
  service: string,
  rpc: string,
  where: BackendName | 'logic',
): string {
  return statsKeyPrefix(app, service, rpc) + where;
}

/** The backend a node runs models on: its first, or WASM when it reported none. */
export function backendOf(n: Pick<NodeView, 'backends'>): BackendName {
  return n.backends[0] ?? 'wasm';
}

/** The manifest's `latencyMs` for a variant, as a guess for `backend` before any measurement. */
export function priorMs(latencyMs: number, backend: BackendName): number {
  return latencyMs * backendPrior[backend];
}

/**
 * The execution figure placement uses for `key` on `n`: the relay's measurement once it has
 * `minSamples`, else the node's own report once it has as many, else none (use the prior).
 * Answers the record itself (no allocation: this runs per node and variant).
 */
export function execFigure(
  n: Pick<NodeView, 'stats' | 'measured'>,
  key: string,
): LatencyFigure | undefined {
  const m = n.measured?.[key];
  if (counts(m)) return m;
  const s = n.stats[key];
  return counts(s) ? s : undefined;
}

/** A model variant's execution time on a node, and where the figure came from. */
export interface ModelFigure {
  ms: number;
  measured: boolean;
  /** The figure is the relay's own measurement. */
  byRelay: boolean;
}

/**
 * A model variant's execution on `n`: its figure under `key` when one counts, else the manifest's
 * `latencyMs` × the prior for `backend`. Written into `out` when given, which placement's inner
 * loops reuse so that no (node, variant) pair allocates.
 */
export function modelFigure(
  n: Pick<NodeView, 'stats' | 'measured'>,
  key: string,
  latencyMs: number,
  backend: BackendName,
  out: ModelFigure = { ms: 0, measured: false, byRelay: false },
): ModelFigure {
  const stat = execFigure(n, key);
  out.ms = stat === undefined ? priorMs(latencyMs, backend) : stat.p50;
  out.measured = stat !== undefined;
  out.byRelay = stat !== undefined && stat === n.measured?.[key];
  return out;
}

/** The key of `NodeView.models` (and of a heartbeat's `models`): `app/modelService`. */
export function modelKey(app: string, service: string): string {
  return `${app}/${service}`;
}
