/**
 * One placement rule for a call to a service of an app, used by the relay over every node it
 * knows and by a node over its own view of itself (Runtime.plan), so that both judge a node the
 * same way: which model service decides a Logic's accuracy (`modelOf`), its variants, the rpc to
 * run and the variant to pin.
 * @example
 * const r = route(manifest, nodes, { service: 'classify', qos: { accuracy: 0.96 }, caller: '' });
 * r.rpc; // 'classify' (the Logic's rpc)
 * r.variant; // 'large' (its model's variant, pinned: r.pin = { model: 'large' })
 */
import { NotFoundError } from '../errors';
import type { Manifest, ModelService } from '../manifest';
import type { Role } from '../protocol';
import type { Qos } from '../scheduler';
import { type BackendName, type LatencyFigure, modelKey, type NodeView, statsKey } from './figures';
import type { PlacementIndex } from './indexed';
import { type PlacementRequest, place, type VariantInfo } from './place';

/** Where a request goes: the node, the rpc to call there and the model variants it must use. */
export interface Route {
  node: string;
  /** A Logic's rpc, or a model service's variant. */
  rpc: string;
  /** The variant of the model a Logic depends on, by model service: the executing node runs it. */
  pin?: Record<string, string>;
  /** The model variant that decided accuracy ('' when no model is involved). */
  variant: string;
  estimateMs: number;
  reason: string;
}

export interface RouteRequest {
  service: string;
  /** A Logic's rpc ('' or absent: its first), or the variant of a model service ('' : any). */
  rpc?: string;
  qos: Qos;
  /** The asking node, or '' for an HTTP client of the relay. */
  caller: string;
  /** Nodes not to use: already tried and lost. */
  exclude?: string[];
  /** Only this variant: a check runs the variant the first run did. */
  variant?: string;
  /** Only nodes on the trust list (the reference run of a redundant execution). */
  trustedOnly?: boolean;
  /** Only nodes that hold or fetch this version of the app (`manifest` is that version). */
  version?: string;
}

/** A Logic that calls no model: accuracy 1, and 1 ms of its own until it is measured. */
const logicOnly: VariantInfo[] = [{ rpc: '', accuracy: 1, latencyMs: 1 }];

/**
 * The model service whose variant decides the accuracy of a call to `service`: a model service
 * itself; for a Logic, the first of its declared `models`, or, when it declares none, the app's
 * only model service if it has exactly one. Undefined: no model decides (the Logic alone).
 */
export function modelOf(manifest: Manifest, service: string): string | undefined {
  const svc = serviceOf(manifest, service);
  if (svc === undefined) return undefined;
  if (svc.kind === 'model') return service;
  if (svc.models !== undefined) return svc.models[0];
  let only: string | undefined;
  for (const [name, s] of Object.entries(manifest.services)) {
    if (s.kind !== 'model') continue;
    if (only !== undefined) return undefined;
    only = name;
  }
  return only;
}

/** The service named `service`, never one inherited from Object.prototype (`constructor`). */
function serviceOf(manifest: Manifest, service: string) {
  return Object.hasOwn(manifest.services, service) ? manifest.services[service] : undefined;
}

/** The variants placement chooses among for a call to `service` (see `modelOf`). */
export function variantsOf(manifest: Manifest, service: string): VariantInfo[] {
  const name = modelOf(manifest, service);
  const model = name === undefined ? undefined : manifest.services[name];
  if (model?.kind !== 'model') return logicOnly;
  return Object.entries(model.variants).map(([rpc, v]) => ({
    rpc,
    accuracy: v.accuracy,
    latencyMs: v.latencyMs,
  }));
}

/**
 * Where a call to `req.service` of `manifest` runs among `nodes` (a list, scanned; or an index,
 * which answers the same without the scan): the node, the rpc, the variant and its pin, the
 * estimate and why. Throws NotFoundError for a service the app lacks, and what `place` throws:
 * UnavailableError when no node can take it, QosError naming the constraint.
 */
export function route(
  manifest: Manifest,
  nodes: readonly NodeView[] | PlacementIndex,
  req: RouteRequest,
): Route {
  const { service } = req;
  const svc = serviceOf(manifest, service);
  if (svc === undefined)
    throw new NotFoundError(`no service "${service}" in app "${manifest.name}"`);
  const modelService = modelOf(manifest, service);
  const variants = variantsOf(manifest, service);
  // A model service's rpc is its variant: a caller that names one gets that one.
  const only = req.variant ?? (svc.kind === 'model' && req.rpc ? req.rpc : undefined);
  if (only !== undefined && svc.kind === 'model' && !Object.hasOwn(svc.variants, only)) {
    throw new NotFoundError(
      `service "${manifest.name}/${service}" has no variant "${only.slice(0, 64)}" (it has: ${Object.keys(svc.variants).join(', ')})`,
    );
  }
  const allowed = only === undefined ? variants : variants.filter((v) => v.rpc === only);
  const logicRpc = svc.kind === 'logic' ? req.rpc || svc.rpcs[0]! : '';
  const request: PlacementRequest = {
    app: manifest.name,
    service,
    ...(svc.kind === 'logic'
      ? { logic: { rpc: logicRpc, ...(modelService !== undefined && { modelService }) } }
      : {}),
    variants: allowed,
    qos: req.qos,
    caller: req.caller,
    ...(req.exclude !== undefined && { exclude: req.exclude }),
    ...(req.trustedOnly && { trustedOnly: true }),
    ...(req.version !== undefined && { version: req.version }),
    ...(svc.tiers !== undefined && { tiers: svc.tiers }),
  };
  const p = Array.isArray(nodes) ? place(nodes, request) : (nodes as PlacementIndex).place(request);
  return {
    node: p.node,
    rpc: svc.kind === 'model' ? p.rpc : logicRpc,
    ...(svc.kind === 'logic' && modelService !== undefined && p.rpc
      ? { pin: { [modelService]: p.rpc } }
      : {}),
    variant: p.rpc,
    estimateMs: p.estimateMs,
    reason: p.reason,
  };
}

/**
 * What `route` reads of a node for one request to `service`: the stats of the Logic's rpc and of
 * the variants of the model it depends on (on `backend`), and which of those variants it holds.
 * A node judging itself passes these to `selfView` instead of every stat and app it has.
 */
export function figuresFor(
  manifest: Manifest,
  service: string,
  rpc: string,
  backend: BackendName,
  node: { stat(key: string): LatencyFigure | undefined; holds(model: ModelService): string[] },
): Pick<Self, 'stats' | 'models'> {
  const stats: Record<string, LatencyFigure> = {};
  const models: Record<string, string[]> = {};
  const keep = (key: string) => {
    const s = node.stat(key);
    if (s) stats[key] = s;
  };
  const svc = serviceOf(manifest, service);
  if (svc?.kind === 'logic') keep(statsKey(manifest.name, service, rpc || svc.rpcs[0]!, 'logic'));
  const name = modelOf(manifest, service);
  const model = name === undefined ? undefined : manifest.services[name];
  if (name !== undefined && model?.kind === 'model') {
    for (const v of Object.keys(model.variants)) keep(statsKey(manifest.name, name, v, backend));
    models[modelKey(manifest.name, name)] = node.holds(model);
  }
  return { stats, models };
}

/** What a node knows of itself, to judge itself as the relay would (see `selfView`). */
export interface Self {
  id: string;
  /** Most preferred first. */
  backends: BackendName[];
  /** Its own latencies by stats key (what its heartbeat reports). */
  stats: Record<string, LatencyFigure>;
  /** Variants it can hold, by `app/modelService` (what its heartbeat reports). */
  models: Record<string, string[]>;
  apps: string[];
  /** Requests running or queued now; default 0. */
  queue?: number;
  /** Default 1. */
  maxConcurrency?: number;
  /** Default 'dew'. */
  role?: Role;
}

/**
 * A node as the relay sees it from its heartbeat, with no network between it and itself: online,
 * not paused (a paused node still serves itself), RTT 0, no measurement by a relay.
 */
export function selfView(self: Self): NodeView {
  return {
    id: self.id,
    role: self.role ?? 'dew',
    publicKey: '',
    trusted: false,
    online: true,
    paused: false,
    rttMs: 0,
    backends: self.backends,
    queue: self.queue ?? 0,
    maxConcurrency: Math.max(1, self.maxConcurrency ?? 1),
    apps: self.apps,
    stats: self.stats,
    models: self.models,
  };
}
