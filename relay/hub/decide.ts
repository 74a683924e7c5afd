/**
 * Turns a manifest and a QoS into a placement request, and the placement into a route: the node,
 * the rpc to call there and the model variants it must use. Every decision, made or refused, is
 * logged. (Kept whole: core's placement rule replaces its body.)
 * @example const route = await decide(deps, 'digits', 'classify', { accuracy: 0.9 }, callerId);
 */
import type { DecisionRecord, NodeRecord } from '../../core/api';
import { NotFoundError } from '../../core/errors';
import type { Manifest } from '../../core/manifest';
import { place } from '../../core/placement';
import type { Qos } from '../../core/scheduler';

/** Where a request goes: the node, the rpc to call there and the model variants it must use. */
export interface Route {
  node: string;
  rpc: string;
  pin?: Record<string, string>;
  /** The model variant that decided accuracy ('' when no model is involved). */
  variant: string;
  estimateMs: number;
  reason: string;
}

/** What deciding reads: the manifests, the nodes, and where decisions are logged. */
export interface DecideDeps {
  manifest(app: string): Promise<Manifest | undefined>;
  nodes(): NodeRecord[];
  logged(record: DecisionRecord): void;
}

/** Places a request: the node, the rpc to call there and the variants it must use. */
export async function decide(
  deps: DecideDeps,
  app: string,
  service: string,
  qos: Qos,
  caller: string,
  exclude: string[] = [],
  rpc = '',
  only: { variant?: string; trustedOnly?: boolean } = {},
): Promise<Route> {
  const record: DecisionRecord = {
    at: Date.now(),
    app,
    service,
    qos,
    caller,
    reason: '',
    ok: false,
  };
  try {
    const manifest = await deps.manifest(app);
    const svc = manifest?.services[service];
    if (!manifest || !svc)
      throw new NotFoundError(`no service "${service}" in app "${app}" on this relay`);
    // A Logic is judged by the model service it calls, as a node judges itself (Runtime.plan).
    const modelService =
      svc.kind === 'model'
        ? service
        : Object.entries(manifest.services).find(([, s]) => s.kind === 'model')?.[0];
    const model = modelService ? manifest.services[modelService] : undefined;
    const variants =
      model?.kind === 'model'
        ? Object.entries(model.variants).map(([id, v]) => ({
            rpc: id,
            accuracy: v.accuracy,
            latencyMs: v.latencyMs,
          }))
        : [{ rpc: '', accuracy: 1, latencyMs: 1 }];
    // A check runs the variant the first run did, or the answers could not be compared.
    const allowed =
      only.variant === undefined ? variants : variants.filter((v) => v.rpc === only.variant);
    const logicRpc = svc.kind === 'logic' ? rpc || svc.rpcs[0]! : '';
    const p = place(deps.nodes(), {
      app,
      service,
      ...(svc.kind === 'logic'
        ? { logic: { rpc: logicRpc, ...(modelService ? { modelService } : {}) } }
        : {}),
      variants: allowed,
      qos,
      caller,
      exclude,
      ...(only.trustedOnly && { trustedOnly: true }),
    });
    const route: Route = {
      node: p.node,
      rpc: svc.kind === 'model' ? p.rpc : logicRpc,
      ...(svc.kind === 'logic' && modelService && p.rpc ? { pin: { [modelService]: p.rpc } } : {}),
      variant: p.rpc,
      estimateMs: p.estimateMs,
      reason: p.reason,
    };
    Object.assign(record, {
      node: p.node,
      rpc: p.rpc,
      estimateMs: p.estimateMs,
      reason: p.reason,
      ok: true,
    });
    return route;
  } catch (e) {
    record.reason = (e as Error).message;
    throw e;
  } finally {
    deps.logged(record);
  }
}
