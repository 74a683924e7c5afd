/**
 * `place` without a scan of every node: for each kind of request (app, model service, Logic,
 * variants) the (node, variant) pairs the rule may choose are kept sorted by their cost without
 * the caller's RTT — `rttMs + queue + execution`, which the caller's RTT shifts alike for every
 * node but the caller — in one list per accuracy, highest first. A decision walks the list of the
 * best accuracy the request allows from its cheapest pair, judges the caller apart (no network for
 * it), skips nodes the request rules out (excluded, untrusted for `trustedOnly`), and stops at the
 * first pair that cannot beat what it holds. It answers exactly what `place` over the same nodes
 * answers (tests/unit/placement-index.test.ts checks it against the scan): pinned requests are
 * placed by the scan over the few nodes privacy allows, and a refusal by the scan over all.
 *
 * The index is told, never asks: `set(node)` when a node joins or any field placement reads
 * changes (relay/hub/registry.ts tells it on every assignment), `delete(id)` when it leaves. A
 * change is applied to each list at the next decision that reads it; many at once rebuild it.
 * @example
 * const index = createPlacementIndex();
 * index.set(node);         // joined, or its load, figures, models, RTT, pause… changed
 * index.place(req);        // what place([...every node set], req) answers
 * index.delete(node.id);   // left
 */
import { UnavailableError } from '../errors';
import {
  backendOf,
  execFigure,
  type ModelFigure,
  modelFigure,
  modelKey,
  type NodeView,
  runsVersion,
  slotsFor,
  statsKey,
} from './figures';
import {
  explain,
  type Placement,
  type PlacementRequest,
  pinOf,
  place,
  type VariantInfo,
} from './place';

/** One (node, variant) a request may be placed on, with the figures `place` would compute. */
interface Pair {
  node: NodeView;
  /** The variant's index in the kind's list. */
  vi: number;
  rttMs: number;
  load: number;
  queueMs: number;
  execMs: number;
  measured: boolean;
  byRelay: boolean;
  /** rttMs + queueMs + execMs: the list's order. */
  key: number;
}

/** The pairs of one accuracy, cheapest first. */
interface Level {
  accuracy: number;
  pairs: Pair[];
  /** The largest |rttMs| + |queueMs| + |execMs| among them: how far rounding can move a total. */
  scale: number;
}

/** One kind of request: what a pair's cost depends on, and its sorted lists. */
interface Kind {
  app: string;
  modelService: string | undefined;
  modelKey: string;
  logicKey: string;
  /** `app/service` called: its pool (a Logic's workers, a model's sessions) may bound a node's slots. */
  pool: string;
  variants: VariantInfo[];
  /** Stats keys of the variants, by backend (as `place` builds them). */
  statKeys: Map<string, string[]>;
  /** Highest accuracy first. */
  levels: Level[];
  levelOf: Level[];
  /** The pairs of each indexed node, to take them out of the lists. */
  byNode: Map<string, Pair[]>;
  /** Nodes changed since the lists were last brought up to date. */
  pending: Set<string>;
  built: boolean;
  /** A pair's cost was not a finite number: order is meaningless, the scan decides. */
  unordered: boolean;
}

/** Kinds kept at most (least recently used dropped): each holds a pair per node and variant. */
const maxKinds = 32;

export interface PlacementIndex {
  /** A node joined, or a field placement reads changed (the same object may be set again). */
  set(node: NodeView): void;
  delete(id: string): void;
  readonly size: number;
  /** Every node, in the order they were first set. */
  nodes(): readonly NodeView[];
  /** What `place(this.nodes(), req)` answers, with the same errors. */
  place(req: PlacementRequest): Placement;
}

export function createPlacementIndex(): PlacementIndex {
  const byId = new Map<string, NodeView>();
  /** Node ids by public key, for requests pinned to a key. */
  const byKey = new Map<string, Set<string>>();
  const keyOf = new Map<string, string>();
  const kinds = new Map<string, Kind>();
  let list: NodeView[] | undefined;

  function changed(id: string): void {
    for (const k of kinds.values()) if (k.built) k.pending.add(id);
  }

  function unkey(id: string): void {
    const key = keyOf.get(id);
    if (key === undefined) return;
    const ids = byKey.get(key)!;
    ids.delete(id);
    if (ids.size === 0) byKey.delete(key);
    keyOf.delete(id);
  }

  function kindOf(req: PlacementRequest): Kind {
    const { app, variants } = req;
    const modelService = req.logic ? req.logic.modelService : req.service;
    const logicKey = req.logic ? statsKey(app, req.service, req.logic.rpc, 'logic') : '';
    let name = `${app}\n${modelService ?? '\r'}\n${logicKey}`;
    for (const v of variants) name += `\n${v.rpc}\n${v.accuracy}\n${v.latencyMs}`;
    let k = kinds.get(name);
    if (k) {
      // Most recently used last: the Map's order is the eviction order.
      kinds.delete(name);
      kinds.set(name, k);
      return k;
    }
    const levels: Level[] = [];
    const levelOf: Level[] = [];
    for (const v of variants) {
      let level = levels.find((l) => l.accuracy === v.accuracy);
      if (!level) {
        level = { accuracy: v.accuracy, pairs: [], scale: 0 };
        levels.push(level);
      }
      levelOf.push(level);
    }
    levels.sort((a, b) => b.accuracy - a.accuracy);
    k = {
      app,
      modelService,
      modelKey: modelService ? modelKey(app, modelService) : '',
      logicKey,
      pool: `${app}/${req.service}`,
      variants: variants.map((v) => ({ ...v })),
      statKeys: new Map(),
      levels,
      levelOf,
      byNode: new Map(),
      pending: new Set(),
      built: false,
      unordered: variants.some((v) => Number.isNaN(v.accuracy)),
    };
    if (kinds.size >= maxKinds) kinds.delete(kinds.keys().next().value!);
    kinds.set(name, k);
    return k;
  }

  /** Reused by `pairsOf` for each pair's model figure. */
  const figure: ModelFigure = { ms: 0, measured: false, byRelay: false };

  /**
   * The pairs of `n` for kind `k`, whatever its state: the figures of place.ts's inner loop,
   * computed the same way in the same order so that the totals are the same to the bit.
   */
  function pairsOf(k: Kind, n: NodeView): Pair[] {
    const out: Pair[] = [];
    const { variants, logicKey } = k;
    const backend = backendOf(n);
    const runnable = k.modelKey ? n.models[k.modelKey] : undefined;
    const logicStat = logicKey ? execFigure(n, logicKey) : undefined;
    const logicMeasured = logicStat !== undefined;
    const logicMs = logicMeasured ? logicStat.p50 : 0;
    const slots = slotsFor(n, k.pool);
    const load = n.queue / slots;
    let statKeys: string[] | undefined;
    for (let i = 0; i < variants.length; i++) {
      const v = variants[i]!;
      if (runnable && v.rpc && !runnable.includes(v.rpc)) continue;
      let modelMs: number;
      let measured: boolean;
      let byRelay: boolean;
      if (v.rpc) {
        statKeys ??= k.statKeys.get(backend);
        if (!statKeys) {
          statKeys = variants.map((w) => statsKey(k.app, k.modelService!, w.rpc, backend));
          k.statKeys.set(backend, statKeys);
        }
        const f = modelFigure(n, statKeys[i]!, v.latencyMs, backend, figure);
        measured = f.measured;
        modelMs = f.ms;
        byRelay = f.byRelay;
      } else {
        measured = logicMeasured;
        modelMs = logicMeasured ? 0 : v.latencyMs;
        byRelay = logicMeasured && logicStat === n.measured?.[logicKey];
      }
      const execMs = modelMs + logicMs;
      const queueMs = (execMs * n.queue) / slots;
      const rttMs = n.rttMs;
      const key = rttMs + queueMs + execMs;
      out.push({ node: n, vi: i, rttMs, load, queueMs, execMs, measured, byRelay, key });
    }
    return out;
  }

  /** Orders pairs as `place` prefers them at one accuracy, the caller's RTT aside. */
  function compare(a: Pair, b: Pair): number {
    if (a.key !== b.key) return a.key - b.key;
    if (a.load !== b.load) return a.load - b.load;
    if (a.node.id !== b.node.id) return a.node.id < b.node.id ? -1 : 1;
    return a.vi - b.vi;
  }

  /** The first position in `pairs` not before `p`. */
  function lowerBound(pairs: Pair[], p: Pair): number {
    let lo = 0;
    let hi = pairs.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (compare(pairs[mid]!, p) < 0) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** Pairs of nodes any request may use apart from being its caller: online, working for others. */
  function indexable(n: NodeView): boolean {
    return n.online && !n.paused && !n.quarantined;
  }

  function ordered(p: Pair): boolean {
    return Number.isFinite(p.key) && Number.isFinite(p.load);
  }

  function scaleOf(p: Pair): number {
    return Math.abs(p.rttMs) + Math.abs(p.queueMs) + Math.abs(p.execMs);
  }

  function build(k: Kind): void {
    for (const l of k.levels) {
      l.pairs = [];
      l.scale = 0;
    }
    k.byNode.clear();
    k.pending.clear();
    k.unordered = k.variants.some((v) => Number.isNaN(v.accuracy));
    for (const n of byId.values()) {
      if (!indexable(n)) continue;
      const pairs = pairsOf(k, n);
      k.byNode.set(n.id, pairs);
      for (const p of pairs) {
        const level = k.levelOf[p.vi]!;
        level.pairs.push(p);
        level.scale = Math.max(level.scale, scaleOf(p));
        if (!ordered(p)) k.unordered = true;
      }
    }
    if (!k.unordered) for (const l of k.levels) l.pairs.sort(compare);
    k.built = true;
  }

  /** Brings `k`'s lists up to date: each changed node out and back in, or all at once if many. */
  function refresh(k: Kind): void {
    if (!k.built || k.unordered || k.pending.size * 8 > byId.size) {
      build(k);
      return;
    }
    for (const id of k.pending) {
      for (const p of k.byNode.get(id) ?? []) {
        const pairs = k.levelOf[p.vi]!.pairs;
        pairs.splice(lowerBound(pairs, p), 1);
      }
      k.byNode.delete(id);
      const n = byId.get(id);
      if (!n || !indexable(n)) continue;
      const pairs = pairsOf(k, n);
      k.byNode.set(id, pairs);
      for (const p of pairs) {
        if (!ordered(p)) k.unordered = true;
        const level = k.levelOf[p.vi]!;
        level.pairs.splice(lowerBound(level.pairs, p), 0, p);
        level.scale = Math.max(level.scale, scaleOf(p));
      }
    }
    k.pending.clear();
  }

  /** The nodes a pinned request may use, plus its caller (for its RTT), as `place` needs them. */
  function pinned(req: PlacementRequest): NodeView[] | undefined {
    const privacy = req.qos.privacy!;
    const pin = pinOf(privacy);
    const out: NodeView[] = [];
    if (pin === 'node') {
      const n = byId.get(privacy);
      if (n) out.push(n);
    } else if (pin === 'key') {
      for (const id of byKey.get(privacy) ?? []) out.push(byId.get(id)!);
    }
    // Nothing privacy allows: the scan over all names what is missing.
    if (pin !== 'device' && out.length === 0) return undefined;
    const caller = req.caller ? byId.get(req.caller) : undefined;
    if (caller && !out.includes(caller)) out.push(caller);
    return out.length > 0 ? out : undefined;
  }

  const index: PlacementIndex = {
    set(node) {
      const before = byId.get(node.id);
      if (before !== node) list = undefined;
      byId.set(node.id, node);
      if (keyOf.get(node.id) !== node.publicKey) {
        unkey(node.id);
        keyOf.set(node.id, node.publicKey);
        const ids = byKey.get(node.publicKey) ?? new Set<string>();
        byKey.set(node.publicKey, ids.add(node.id));
      }
      changed(node.id);
    },
    delete(id) {
      if (!byId.delete(id)) return;
      list = undefined;
      unkey(id);
      changed(id);
    },
    get size() {
      return byId.size;
    },
    nodes() {
      list ??= [...byId.values()];
      return list;
    },
    place(req) {
      if (byId.size === 0) throw new UnavailableError('no node is connected');
      if (req.qos.privacy !== undefined) return place(pinned(req) ?? index.nodes(), req);
      // Tiers that rank roles reorder the pairs: the scan decides (such services are few).
      if (req.tiers && req.tiers.length > 1) return place(index.nodes(), req);
      const k = kindOf(req);
      refresh(k);
      const { qos, caller } = req;
      const callerNode = caller ? byId.get(caller) : undefined;
      const callerRtt = callerNode?.rttMs ?? 0;
      if (k.unordered || !Number.isFinite(callerRtt)) return place(index.nodes(), req);
      const exclude = req.exclude?.length ? req.exclude : undefined;
      const trustedOnly = req.trustedOnly === true;
      const tiers = req.tiers;
      const minAccuracy = qos.accuracy ?? Number.NEGATIVE_INFINITY;
      const budget = qos.latencyMs ?? Number.POSITIVE_INFINITY;
      // The caller is judged apart: no network to itself, and it serves itself even paused.
      const version = req.version;
      const callerPairs =
        callerNode?.online &&
        !(tiers && !tiers.includes(callerNode.role)) &&
        !(trustedOnly && !callerNode.trusted) &&
        !exclude?.includes(caller) &&
        runsVersion(callerNode, req.app, version)
          ? pairsOf(k, callerNode)
          : [];
      if (!callerPairs.every(ordered)) return place(index.nodes(), req);

      for (const level of k.levels) {
        if (level.accuracy < minAccuracy) break;
        let best: Pair | undefined;
        let bTotal = 0;
        let bNet = 0;
        const better = (p: Pair, total: number) =>
          !best ||
          (total !== bTotal
            ? total < bTotal
            : p.load !== best.load
              ? p.load < best.load
              : p.node.id !== best.node.id
                ? p.node.id < best.node.id
                : p.vi < best.vi);
        for (const p of callerPairs) {
          if (k.levelOf[p.vi] !== level) continue;
          const total = 0 + p.queueMs + p.execMs;
          if (total > budget || !better(p, total)) continue;
          best = p;
          bTotal = total;
          bNet = 0;
        }
        // Totals are key + the caller's RTT up to rounding: stop past the best with room for it.
        const slack = 1e-9 * (level.scale + Math.abs(callerRtt) + 1);
        for (const p of level.pairs) {
          if (p.key + callerRtt - slack > (best ? Math.min(budget, bTotal) : budget)) break;
          const n = p.node;
          if (
            n.id === caller ||
            (tiers && !tiers.includes(n.role)) ||
            (trustedOnly && !n.trusted) ||
            exclude?.includes(n.id) ||
            !runsVersion(n, req.app, version)
          )
            continue;
          const networkMs = p.rttMs + callerRtt;
          const total = networkMs + p.queueMs + p.execMs;
          if (total > budget || !better(p, total)) continue;
          best = p;
          bTotal = total;
          bNet = networkMs;
        }
        if (best) {
          const v = req.variants[best.vi]!;
          const breakdown = {
            networkMs: bNet,
            queueMs: best.queueMs,
            execMs: best.execMs,
            measured: best.measured,
          };
          return {
            node: best.node.id,
            rpc: v.rpc,
            estimateMs: bTotal,
            breakdown,
            reason: explain(best.node, v, bTotal, breakdown, req, best.byRelay),
          };
        }
      }
      // Nothing fits: the scan names the constraint missed and what was achievable.
      return place(index.nodes(), req);
    },
  };
  return index;
}
