/**
 * Decision leases (PROTOCOL.md §5.3.2), the relay's side: the leases it granted, bounded per node
 * and in all, and their revocation. A lease is a cache of one decision, never a second scheduler:
 * the relay tells every holder (`lease-revoke`) as soon as the node a lease chose leaves, is
 * paused or quarantined, or reports figures that moved materially (`moved`) since the first live
 * lease to it was granted. A full table grants no more (the decision goes without a lease): it
 * never forgets a lease a node may still use.
 * @example const leases = createLeases({ ms: 2000, send });
 *          const lease = leases.grant(caller, request, record);  // on a decision; may be undefined
 *          leases.heartbeat(record);                             // after the registry read one
 *          leases.left(id);                                      // a node's socket is gone
 */
import type { NodeRecord } from '../../core/api';
import { InputError } from '../../core/errors';
import { type Lease, MAX_LEASE_MS, MAX_REVOKED_IDS, type ToNode } from '../../core/protocol';
import type { Qos } from '../../core/scheduler';

export interface LeaseOptions {
  /** How long a lease lasts; 0 grants none. */
  ms: number;
  /** Leases one node holds at most (default 256, at most 1024: one revocation names them all). */
  perNode?: number;
  /** Leases held in all (default 65,536). */
  total?: number;
  send(node: string, frame: ToNode): void;
  /** The clock leases expire by (default performance.now). */
  now?: () => number;
}

/** What a decision answered: the key a lease would cover. */
export interface LeaseRequest {
  app: string;
  service: string;
  rpc: string;
  qos: Qos;
  exclude: string[];
}

interface Grant {
  id: number;
  holder: string;
  target: string;
  key: string;
  expiresAt: number;
}

/** A chosen node's figures when its first live lease was granted, to tell a material move. */
interface Figures {
  load: number;
  maxConcurrency: number;
  backend: string;
  apps: string[];
  models: Record<string, string[]>;
  p50: Map<string, number>;
}

/** A p50 moved materially when it rose by more than half and by more than this. */
const P50_FLOOR_MS = 1;

export function createLeases(o: LeaseOptions) {
  const perNode = o.perNode ?? 256;
  const total = o.total ?? 65_536;
  if (!(Number.isInteger(o.ms) && o.ms >= 0 && o.ms <= MAX_LEASE_MS))
    throw new InputError(`leaseMs must be a whole number from 0 to ${MAX_LEASE_MS}, got ${o.ms}`);
  if (!(Number.isInteger(perNode) && perNode >= 1 && perNode <= MAX_REVOKED_IDS))
    throw new InputError(`leases per node must be from 1 to ${MAX_REVOKED_IDS}, got ${perNode}`);
  if (!(Number.isInteger(total) && total >= 1))
    throw new InputError(`leases in all must be a whole number of at least 1, got ${total}`);
  const now = o.now ?? (() => performance.now());
  /** Every live grant by id; all last `ms`, so insertion order is expiry order. */
  const byId = new Map<number, Grant>();
  const byHolder = new Map<string, Map<string, Grant>>();
  const byTarget = new Map<string, Set<Grant>>();
  const baseline = new Map<string, Figures>();
  const counts = { granted: 0, revoked: 0, refused: 0 };
  let next = 1;

  function drop(g: Grant): void {
    byId.delete(g.id);
    const mine = byHolder.get(g.holder);
    if (mine?.get(g.key) === g) {
      mine.delete(g.key);
      if (mine.size === 0) byHolder.delete(g.holder);
    }
    const to = byTarget.get(g.target);
    to?.delete(g);
    if (to?.size === 0) {
      byTarget.delete(g.target);
      baseline.delete(g.target);
    }
  }

  /** Forgets expired grants: the oldest first, so this stops at the first live one. */
  function prune(at: number): void {
    for (const g of byId.values()) {
      if (g.expiresAt > at) return;
      drop(g);
    }
  }

  /** Tells every holder of a lease to `target` that it ends now, and forgets those leases. */
  function revoke(target: string, reason: string): void {
    const to = byTarget.get(target);
    if (!to) return;
    const at = now();
    const ids = new Map<string, number[]>();
    for (const g of [...to]) {
      drop(g);
      // An expired one its holder no longer uses: no word needed.
      if (g.expiresAt <= at) continue;
      const list = ids.get(g.holder) ?? [];
      ids.set(g.holder, list);
      list.push(g.id);
      counts.revoked++;
    }
    for (const [holder, list] of ids)
      o.send(holder, { t: 'lease-revoke', node: target, ids: list, reason });
  }

  return {
    /** The lease a decision carries, or undefined: leases off, a verified call, a re-placement
     * (nodes excluded besides the caller), or the table full. */
    grant(holder: string, req: LeaseRequest, target: NodeRecord): Lease | undefined {
      if (o.ms === 0 || holder === '' || req.qos.verify) return undefined;
      let self = false;
      for (const n of req.exclude) {
        if (n !== holder) return undefined;
        self = true;
      }
      const at = now();
      prune(at);
      const { verify: _, ...qos } = req.qos;
      const key = keyOf(req, qos, self);
      const mine = byHolder.get(holder);
      const old = mine?.get(key);
      // Asked again (a new call raced the last grant): the new lease replaces the old one.
      if (old) drop(old);
      if ((mine?.size ?? 0) >= perNode || byId.size >= total) {
        counts.refused++;
        return undefined;
      }
      const g: Grant = { id: next++, holder, target: target.id, key, expiresAt: at + o.ms };
      byId.set(g.id, g);
      const held = mine ?? new Map<string, Grant>();
      if (!mine) byHolder.set(holder, held);
      held.set(key, g);
      const to = byTarget.get(g.target) ?? new Set<Grant>();
      if (to.size === 0) {
        byTarget.set(g.target, to);
        baseline.set(g.target, figuresOf(target));
      }
      to.add(g);
      counts.granted++;
      return { id: g.id, ms: o.ms, app: req.app, service: req.service, rpc: req.rpc, qos };
    },
    /** Node `record` sent a heartbeat (already read into it): revoke its leases if it moved. */
    heartbeat(record: NodeRecord): void {
      const base = baseline.get(record.id);
      if (!base) return;
      const why = moved(base, record);
      if (why) revoke(record.id, why);
    },
    /** Leases to `node` end (it was paused or quarantined), with `reason` to their holders. */
    revoke,
    /** Node `id` left: leases to it are revoked, and those it held are forgotten. */
    left(id: string): void {
      revoke(id, 'the node left');
      for (const g of [...(byHolder.get(id)?.values() ?? [])]) drop(g);
    },
    /** Leases held now (expired ones not yet forgotten included), and counts since start. */
    stats() {
      prune(now());
      return { held: byId.size, holders: byHolder.size, ...counts };
    },
  };
}

/**
 * Whether `now`'s figures moved materially from `base`, and how (PROTOCOL.md §5.3.2): paused,
 * quarantined, fewer calls at once, a whole call more waiting per slot, another first backend,
 * an app or model variant it no longer holds, or a p50 that rose by more than half and more than
 * 1 ms. Figures that got better never revoke: the lease chose the node for what it was then.
 */
export function moved(base: Figures, now: NodeRecord): string | undefined {
  if (now.paused) return 'the node was paused';
  if (now.quarantined) return 'the node was quarantined';
  if (now.maxConcurrency < base.maxConcurrency)
    return `it takes ${now.maxConcurrency} calls at once, down from ${base.maxConcurrency}`;
  const load = now.queue / Math.max(1, now.maxConcurrency);
  if (load >= base.load + 1)
    return `its load rose from ${base.load.toFixed(2)} to ${load.toFixed(2)} per slot`;
  if ((now.backends[0] ?? '') !== base.backend) return 'its first backend changed';
  for (const app of base.apps) if (!now.apps.includes(app)) return `it no longer has app ${app}`;
  for (const [model, variants] of Object.entries(base.models)) {
    const held = Object.hasOwn(now.models, model) ? now.models[model]! : [];
    for (const v of variants) if (!held.includes(v)) return `it no longer holds ${model}/${v}`;
  }
  for (const [key, was] of base.p50) {
    const stat = Object.hasOwn(now.stats, key) ? now.stats[key] : undefined;
    if (stat && stat.p50 > was * 1.5 && stat.p50 - was > P50_FLOOR_MS)
      return `${key} p50 rose from ${was.toFixed(2)} to ${stat.p50.toFixed(2)} ms`;
  }
  return undefined;
}

function figuresOf(n: NodeRecord): Figures {
  const p50 = new Map<string, number>();
  for (const [key, s] of Object.entries(n.stats)) p50.set(key, s.p50);
  return {
    load: n.queue / Math.max(1, n.maxConcurrency),
    maxConcurrency: n.maxConcurrency,
    backend: n.backends[0] ?? '',
    apps: [...n.apps],
    models: { ...n.models },
    p50,
  };
}

/** One string per key a lease covers: app, service, rpc, QoS class, and whether the holder was
 * excluded (its own QoS miss) — a request that let the relay pick the holder differs. */
function keyOf(req: LeaseRequest, qos: Omit<Qos, 'verify'>, self: boolean): string {
  return `${req.app}/${req.service}/${req.rpc}|${qos.latencyMs ?? ''}|${qos.accuracy ?? ''}|${qos.privacy ?? ''}|${self ? 'x' : ''}`;
}
