/**
 * The relay's own timing of each node: an untrusted node's claims are checked by measuring it.
 * A node reports its latencies in heartbeats and may lie; for every call the relay forwards it
 * keeps `elapsed − RTT` under the key placement reads (`app/service/rpc@backend` for a model,
 * `app/service/rpc@logic` for a Logic: `statsKey`), and placement prefers these figures once there
 * are `minSamples`.
 * @example const meter = createMeter({ maxNodes: 10_000 });
 *          record.measured = meter.of(record.id);      // the object placement reads, kept current
 *          meter.answered(record, shape, elapsedMs);   // on every forwarded call's result
 */
import type { Manifest } from '../core/manifest';
import { execFigure, minSamples, type NodeView, priorMs, statsKey } from '../core/placement';
import { quantile } from '../core/stats';

/** What a forwarded call is, as far as timing it goes. */
export interface CallShape {
  /** The stat key its time is kept under. */
  key: string;
  /** A Logic's model stages, whose time is the model's, not the Logic's (see `answered`). */
  models: { key: string; priorMs: number }[];
  /** The model variant that decides its answer ('' when no model does). */
  variant: string;
}

/** Newest samples kept per key: recent behaviour counts, an old good record does not shield. */
const window = 16;
/** Keys kept per node: a node cannot grow the relay's memory by calling many names. */
const maxKeys = 256;

/** The shape of a call to `service` running `rpc` (pinned to `pin`) on a node's `backend`. */
export function shapeOf(
  manifest: Manifest | undefined,
  call: { app: string; service: string; rpc: string; pin?: Record<string, string> },
  backend: NodeView['backends'][number] = 'wasm',
): CallShape | undefined {
  const svc = manifest?.services[call.service];
  if (!manifest || !svc) return undefined;
  const { app, service, rpc } = call;
  if (svc.kind === 'model')
    return { key: statsKey(app, service, rpc, backend), models: [], variant: rpc };
  const models: CallShape['models'] = [];
  let variant = '';
  for (const [ms, v] of Object.entries(call.pin ?? {})) {
    const m = manifest.services[ms];
    if (m?.kind !== 'model' || !m.variants[v]) continue;
    models.push({
      key: statsKey(app, ms, v, backend),
      priorMs: priorMs(m.variants[v]!.latencyMs, backend),
    });
    variant ||= v;
  }
  return { key: statsKey(app, service, rpc, 'logic'), models, variant };
}

export function createMeter(options: { maxNodes?: number } = {}) {
  const maxNodes = options.maxNodes ?? 10_000;
  // By node id, kept across reconnects (a liar cannot shed its record by joining again); the node
  // measured least recently is forgotten first when full.
  const byNode = new Map<
    string,
    { rings: Map<string, number[]>; view: NonNullable<NodeView['measured']> }
  >();

  function entry(id: string) {
    let e = byNode.get(id);
    if (!e) {
      if (byNode.size >= maxNodes) byNode.delete(byNode.keys().next().value!);
      e = { rings: new Map(), view: {} };
      byNode.set(id, e);
    }
    return e;
  }

  function put(id: string, key: string, samples: number[]): void {
    const e = entry(id);
    // Most recently measured last: the Map's order is the eviction order.
    byNode.delete(id);
    byNode.set(id, e);
    if (!e.rings.has(key) && e.rings.size >= maxKeys) return;
    e.rings.set(key, samples);
    const sorted = [...samples].sort((a, b) => a - b);
    const count = Math.max((e.view[key]?.count ?? 0) + 1, samples.length);
    // The same median as the node's own figures (core/stats.ts).
    e.view[key] = { count, p50: quantile(sorted, 0.5) };
  }

  return {
    /**
     * The relay's figures for node `id`: one object per node, updated in place (read it again after
     * recording: a node forgotten when the meter was full gets a new one).
     */
    of(id: string): NonNullable<NodeView['measured']> {
      return entry(id).view;
    },
    /**
     * A forwarded call's answer came `execMs` after it was sent, less the node's RTT. A Logic's
     * share is what is left after its model stages' figures (the relay's, the node's report, or
     * the prior): a node that under-reports its model time only moves that time onto its Logic.
     */
    answered(
      node: Pick<NodeView, 'id' | 'stats' | 'measured'>,
      shape: CallShape,
      execMs: number,
    ): void {
      let ms = Math.max(0, execMs);
      for (const m of shape.models) ms -= execFigure(node, m.key)?.p50 ?? m.priorMs;
      const ring = [...(byNode.get(node.id)?.rings.get(shape.key) ?? []), Math.max(0, ms)];
      put(node.id, shape.key, ring.slice(-window));
    },
    /**
     * A forwarded call got no answer within `timeoutMs`: the node is costed at the timeout for
     * that call (its window becomes `minSamples` timeouts) until most of its newer answers are faster.
     */
    timedOut(node: Pick<NodeView, 'id'>, shape: CallShape, timeoutMs: number): void {
      put(
        node.id,
        shape.key,
        Array.from({ length: minSamples }, () => timeoutMs),
      );
    },
  };
}

export type Meter = ReturnType<typeof createMeter>;
