/**
 * The relay's placement: core's route over the nodes connected now, with every decision, made or
 * refused, kept in the decision log. A node's own plan (Runtime.plan) applies the same rule to
 * itself.
 * @example const route = await decide(deps, 'digits', 'classify', { accuracy: 0.9 }, callerId);
 */
import type { DecisionRecord, NodeRecord } from '../../core/api';
import { NotFoundError } from '../../core/errors';
import type { Manifest } from '../../core/manifest';
import { type PlacementIndex, type Route, route } from '../../core/placement';
import type { Qos } from '../../core/scheduler';

export type { Route } from '../../core/placement';

/** What deciding reads: the manifests, the nodes, and where decisions are logged. */
export interface DecideDeps {
  /** The manifest a call runs: the current one, or the version `range` (`qos.version`) picks. */
  manifest(app: string, range?: string): Promise<Manifest | undefined>;
  /** The nodes connected now: a list (scanned) or the registry's index (the same answers). */
  nodes(): readonly NodeRecord[] | PlacementIndex;
  logged(record: DecisionRecord): void;
}

/** A request to place: who asks, whom not to use, the rpc, and a check's variant and trust. */
export type DecideArgs = [
  app: string,
  service: string,
  qos: Qos,
  caller: string,
  exclude?: string[],
  rpc?: string,
  only?: { variant?: string; trustedOnly?: boolean },
];

/** Places a request: the node, the rpc to call there and the variants it must use. */
export async function decide(
  deps: DecideDeps,
  ...[app, service, qos, caller, exclude = [], rpc = '', only = {}]: DecideArgs
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
    const manifest = await deps.manifest(app, qos.version);
    if (!manifest || !Object.hasOwn(manifest.services, service))
      throw new NotFoundError(`no service "${service}" in app "${app}" on this relay`);
    const r = route(manifest, deps.nodes(), {
      service,
      rpc,
      qos,
      caller,
      exclude,
      // A check runs the variant the first run did, or the answers could not be compared.
      ...(only.variant !== undefined && { variant: only.variant }),
      ...(only.trustedOnly && { trustedOnly: true }),
      // A call that asked a version goes only where that version runs or can be fetched.
      ...(qos.version !== undefined && { version: manifest.version }),
    });
    Object.assign(record, {
      node: r.node,
      rpc: r.variant,
      estimateMs: r.estimateMs,
      reason: r.reason,
      ok: true,
    });
    return r;
  } catch (e) {
    record.reason = (e as Error).message;
    throw e;
  } finally {
    deps.logged(record);
  }
}
