// The placement index against the scan it replaces: over random sequences of joins, departures,
// pauses, load, figures, models, RTT, trust and quarantine, every decision the index makes (or
// refuses) is the one place() makes over the same nodes, to the bit. First on core's index told
// of each change, then on the relay's registry, whose records tell it by themselves.
// BRUME_SEED=<seed> replays one sequence (the failure names it); BRUME_CASES sets how many.
import { describe, expect, it } from 'vitest';
import type { NodeRecord } from '../../core/api';
import type { Manifest } from '../../core/manifest';
import {
  type BackendName,
  createPlacementIndex,
  type NodeView,
  type PlacementRequest,
  place,
  route,
  type VariantInfo,
} from '../../core/placement';
import type { Role } from '../../core/protocol';
import { mulberry32 } from '../../models/digits/mlp';
import { createRegistry } from '../../relay/hub/registry';
import { id } from '../node-view';

const replaying = process.env.BRUME_SEED !== undefined;
const base = Number(process.env.BRUME_SEED ?? 20261202);
const cases = Number(process.env.BRUME_CASES ?? (replaying ? 1 : 200));

/** What a decision came to: the placement, or the error as far as a caller can tell. */
function outcome(f: () => unknown): unknown {
  try {
    return { placed: f() };
  } catch (e) {
    const { name, message, code, constraint, best } = e as Record<string, unknown>;
    return { name, message, code, constraint, best };
  }
}

const backendNames: BackendName[] = ['wasm', 'webgpu', 'cpu'];
const roles: Role[] = ['dew', 'fog', 'cloud'];
const keyPool = ['MFkwEwYHKoZIzj0CAQ-a', 'MFkwEwYHKoZIzj0CAQ-b'];

/** A seeded source of fabrics, changes and requests, ties common (whole numbers half the time). */
function generator(seed: number) {
  const r = mulberry32(seed);
  const int = (n: number) => Math.floor(r() * n);
  const pick = <T>(xs: readonly T[]) => xs[int(xs.length)]!;
  const coarse = r() < 0.5;
  const num = (max: number) => (coarse ? int(max + 1) : r() * max);
  const rpcs = ['v0', 'v1', 'v2'];
  const stats = (): NodeView['stats'] => {
    const s: NodeView['stats'] = {};
    for (const v of rpcs)
      if (r() < 0.5) s[`digits/model/${v}@${pick(backendNames)}`] = { count: int(7), p50: num(30) };
    if (r() < 0.5) s['digits/main/run@logic'] = { count: int(7), p50: num(10) };
    return s;
  };
  const models = (): NodeView['models'] =>
    r() < 0.6 ? { 'digits/model': rpcs.filter(() => r() < 0.6) } : {};
  const backends = () => {
    const b = backendNames.filter(() => r() < 0.6);
    return b.length > 0 ? b : [pick(backendNames)];
  };
  const versionPool = ['1.0.0', '1.0.1', '2.0.0'];
  const versions = (): NodeView['versions'] => ({ digits: versionPool.filter(() => r() < 0.5) });
  const fresh = (n: number): NodeView => ({
    id: id(n),
    role: pick(roles),
    publicKey: r() < 0.3 ? pick(keyPool) : `key-${n}`,
    trusted: r() < 0.4,
    online: r() < 0.9,
    paused: r() < 0.2,
    rttMs: num(10),
    backends: backends(),
    queue: int(5),
    maxConcurrency: 1 + int(4),
    ...(r() < 0.4 ? { workersMax: { 'digits/main': 1 + int(3) } } : {}),
    apps: ['digits'],
    stats: stats(),
    models: models(),
    ...(r() < 0.4 ? { measured: stats() } : {}),
    ...(r() < 0.1 ? { quarantined: true } : {}),
    ...(r() < 0.6 ? { versions: versions() } : {}),
    ...(r() < 0.3 ? { fetch: true } : {}),
  });
  /** One change to a node as the relay makes it: assigned field by field. */
  const change = (n: NodeView): void => {
    const w = n as unknown as Record<string, unknown>;
    switch (
      pick([
        'pause',
        'load',
        'stats',
        'models',
        'rtt',
        'trust',
        'quarantine',
        'measured',
        'versions',
      ])
    ) {
      case 'versions':
        // A heartbeat's versions and fetch: read at each decision, nothing to re-sort.
        w.versions = versions();
        w.fetch = r() < 0.3;
        break;
      case 'pause':
        w.paused = !n.paused;
        break;
      case 'load':
        w.queue = int(5);
        w.maxConcurrency = 1 + int(4);
        // A pool's cap bounds a Logic call's slots (its manifest's scale).
        if (r() < 0.3) w.workersMax = r() < 0.7 ? { 'digits/main': 1 + int(3) } : {};
        break;
      case 'stats':
        w.stats = stats();
        if (r() < 0.3) w.backends = backends();
        break;
      case 'models':
        w.models = models();
        break;
      case 'rtt':
        w.rttMs = num(10);
        break;
      case 'trust':
        w.trusted = !n.trusted;
        break;
      case 'quarantine':
        w.quarantined = !n.quarantined;
        break;
      case 'measured': {
        // As the meter does: the same object, updated in place, assigned again.
        const m = n.measured ?? {};
        m[`digits/model/${pick(rpcs)}@${pick(backendNames)}`] = { count: int(7), p50: num(30) };
        w.measured = m;
      }
    }
  };
  const kinds = ['model', 'logic+model', 'logic'] as const;
  const variantSets = kinds.map((kind): VariantInfo[] =>
    kind === 'logic'
      ? [{ rpc: '', accuracy: 1, latencyMs: r() < 0.5 ? 1 : 0.1 + num(10) }]
      : rpcs
          .slice(0, 1 + int(3))
          .map((rpc) => ({ rpc, accuracy: pick([0.8, 0.9, 0.95]), latencyMs: num(20) })),
  );
  const tierSets: Role[][] = [['fog', 'cloud'], ['cloud'], ['dew'], ['dew', 'fog']];
  const request = (ids: string[]): PlacementRequest => {
    const k = int(3);
    const kind = kinds[k]!;
    const qos: PlacementRequest['qos'] = {};
    if (r() < 0.4) qos.accuracy = pick([0.8, 0.9, 0.95, 0.99]);
    if (r() < 0.4) qos.latencyMs = num(40);
    if (r() < 0.15)
      qos.privacy = pick(['device', pick(ids.length ? ids : [id(4002)]), id(4002), ...keyPool]);
    const exclude = r() < 0.2 ? ids.filter(() => r() < 0.2) : undefined;
    return {
      app: 'digits',
      service: kind === 'model' ? 'model' : 'main',
      ...(kind === 'logic+model' ? { logic: { rpc: 'run', modelService: 'model' } } : {}),
      ...(kind === 'logic' ? { logic: { rpc: 'run' } } : {}),
      variants: variantSets[k]!,
      qos,
      caller: pick(['', id(4001), ...ids.slice(0, 3), pick(ids.length ? ids : [''])]),
      ...(exclude ? { exclude } : {}),
      ...(r() < 0.1 ? { trustedOnly: true } : {}),
      ...(r() < 0.25 ? { version: pick(versionPool) } : {}),
      ...(r() < 0.25 ? { tiers: pick(tierSets) } : {}),
    };
  };
  return { r, int, pick, fresh, change, request };
}

describe('the placement index', () => {
  it(`decides as place() does over ${cases} random sequences of changes`, () => {
    let placed = 0;
    let refused = 0;
    for (let s = 0; s < cases; s++) {
      const seed = base + s;
      const replay = `seed ${seed} (replay: BRUME_SEED=${seed} npx vitest run tests/unit/placement-index.test.ts)`;
      const g = generator(seed);
      const index = createPlacementIndex();
      const nodes = new Map<string, NodeView>();
      const size = g.r() < 0.2 ? 1 + g.int(3) : 5 + g.int(60);
      for (let step = 0; step < 60; step++) {
        const roll = g.r();
        if (roll < 0.2 || nodes.size < size / 2) {
          const n = g.fresh(g.int(size * 2));
          nodes.set(n.id, n);
          index.set(n);
        } else if (roll < 0.3) {
          const gone = g.pick([...nodes.keys()]);
          nodes.delete(gone);
          index.delete(gone);
        } else if (nodes.size > 0) {
          const n = g.pick([...nodes.values()]);
          g.change(n);
          index.set(n);
        }
        // Several decisions per change: most read the lists as the last one left them.
        for (let q = 0; q < 3; q++) {
          const req = g.request([...nodes.keys()]);
          const want = outcome(() => place([...nodes.values()], req));
          const got = outcome(() => index.place(req));
          expect(got, `step ${step}; ${replay}`).toEqual(want);
          if ((want as { placed?: unknown }).placed) placed++;
          else refused++;
        }
      }
    }
    if (replaying) return;
    // Both outcomes often, or the property says little.
    expect(placed).toBeGreaterThan(cases * 30);
    expect(refused).toBeGreaterThan(cases * 10);
  });

  it('orders thousands of nodes as the scan does, after many changes at once', () => {
    const g = generator(base);
    const index = createPlacementIndex();
    const nodes: NodeView[] = [];
    for (let i = 0; i < 3000; i++) {
      nodes.push(g.fresh(i));
      index.set(nodes[i]!);
    }
    for (let round = 0; round < 20; round++) {
      // From one change (applied in place) to a third of them (the lists rebuilt).
      for (let c = 0; c < (round % 2 ? 1 : 1000); c++) {
        const n = g.pick(nodes);
        g.change(n);
        index.set(n);
      }
      for (let q = 0; q < 20; q++) {
        const req = g.request(nodes.map((n) => n.id));
        expect(
          outcome(() => index.place(req)),
          `round ${round}`,
        ).toEqual(outcome(() => place(nodes, req)));
      }
    }
  });
});

// ——— Through the relay's registry: its records tell the index of every assignment. ———

const manifest = {
  name: 'digits',
  version: '1.0.0',
  services: {
    model: {
      kind: 'model',
      variants: {
        v0: { accuracy: 0.9, latencyMs: 0.5 },
        v1: { accuracy: 0.95, latencyMs: 3 },
        v2: { accuracy: 0.95, latencyMs: 1 },
      },
    },
    main: { kind: 'logic', rpcs: ['run'], models: ['model'] },
  },
} as unknown as Manifest;

describe('the registry', () => {
  it('keeps its placement index true to its records as the hub changes them', () => {
    for (let s = 0; s < Math.max(1, cases / 10); s++) {
      const seed = base + s;
      const replay = `seed ${seed}`;
      const g = generator(seed);
      const registry = createRegistry<object>({
        send: () => {},
        trusted: () => g.r() < 0.5,
        event: () => {},
        revoke: () => {},
      });
      const links = new Map<string, object>();
      for (let step = 0; step < 150; step++) {
        const roll = g.r();
        const ids = registry.records().map((n) => n.id);
        if (roll < 0.2 || ids.length < 10) {
          const view = g.fresh(g.int(60));
          const record: NodeRecord = {
            ...view,
            caps: { backends: view.backends.map((name) => ({ name, detail: '' })), cores: 1 },
            joinedAt: 0,
            lastSeen: 0,
          };
          // A node joining again replaces its older connection, as the hub does.
          const old = links.get(record.id);
          if (old) registry.remove(record.id, old);
          const link = {};
          links.set(record.id, link);
          registry.add(record, link);
        } else if (roll < 0.3) {
          const gone = g.pick(ids);
          registry.remove(gone, links.get(gone)!);
        } else if (roll < 0.45) {
          const n = registry.get(g.pick(ids))!.record;
          registry.heartbeat(n, {
            t: 'heartbeat',
            load: { queue: g.int(5), maxConcurrency: 1 + g.int(4) },
            apps: ['digits'],
            models: g.r() < 0.5 ? { 'digits/model': ['v0', 'v2'] } : {},
            stats: { 'digits/model/v1@wasm': { count: 5, p50: g.int(4) } },
            paused: g.r() < 0.2,
            ...(g.r() < 0.5 && { versions: { digits: g.r() < 0.5 ? ['1.0.1'] : [] } }),
            ...(g.r() < 0.5 && { fetch: g.r() < 0.5 }),
            ...(g.r() < 0.4 && { workersMax: { 'digits/main': 1 + g.int(3) } }),
          });
        } else if (roll < 0.5) {
          registry.retrust();
        } else {
          g.change(registry.get(g.pick(ids))!.record);
        }
        for (let q = 0; q < 3; q++) {
          const req = g.request(registry.records().map((n) => n.id));
          const rr = {
            service: req.service,
            qos: req.qos,
            caller: req.caller,
            ...(req.exclude && { exclude: req.exclude }),
            ...(req.trustedOnly && { trustedOnly: true }),
          };
          expect(
            outcome(() => route(manifest, registry.placement(), rr)),
            `step ${step}; ${replay}`,
          ).toEqual(outcome(() => route(manifest, registry.records(), rr)));
        }
      }
    }
  });

  it('forgets what a replaced record does after its node joined again', () => {
    const registry = createRegistry<object>({
      send: () => {},
      trusted: () => false,
      event: () => {},
      revoke: () => {},
    });
    const g = generator(base);
    const view = { ...g.fresh(1), online: true, paused: false, quarantined: false, rttMs: 5 };
    const record = (rttMs: number): NodeRecord => ({
      ...view,
      rttMs,
      models: {},
      caps: { backends: [], cores: 1 },
      joinedAt: 0,
      lastSeen: 0,
    });
    const old = record(5);
    const first = {};
    registry.add(old, first);
    registry.remove(old.id, first);
    const now = record(7);
    registry.add(now, {});
    old.paused = true;
    old.online = false;
    const r = route(manifest, registry.placement(), { service: 'model', qos: {}, caller: '' });
    expect(r.node).toBe(now.id);
    expect(r.estimateMs).toBeGreaterThan(7);
  });
});
