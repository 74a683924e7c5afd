// place() and route(): focused examples, then seeded property tests against a brute-force oracle.
// The property runs BRUME_CASES random fabrics (default 5,000) from a fixed seed base; a failure
// names its seed, and `BRUME_SEED=<seed> npx vitest run tests/unit/placement.test.ts` replays that
// one fabric (set BRUME_CASES too to run many from another base).
import { describe, expect, it } from 'vitest';
import { BrumeError, QosError } from '../../core/errors';
import type { Manifest } from '../../core/manifest';
import {
  type BackendName,
  backendPrior,
  type NodeView,
  type Placement,
  type PlacementRequest,
  place,
  type Route,
  route,
  type VariantInfo,
} from '../../core/placement';
import type { Role } from '../../core/protocol';
import { mulberry32 } from '../../models/digits/mlp';
import { id, node } from '../node-view';

const variants: VariantInfo[] = [
  { rpc: 'small', accuracy: 0.94, latencyMs: 0.5 },
  { rpc: 'large', accuracy: 0.97, latencyMs: 3 },
];
const request = (over: Partial<PlacementRequest> = {}): PlacementRequest => ({
  app: 'digits',
  service: 'model',
  variants,
  qos: {},
  caller: id(1),
  ...over,
});
/** A Logic `main/run` that calls no model. */
const logicOnly = (over: Partial<PlacementRequest> = {}) =>
  request({
    service: 'main',
    logic: { rpc: 'run' },
    variants: [{ rpc: '', accuracy: 1, latencyMs: 1 }],
    ...over,
  });
const thrown = (f: () => unknown): unknown => {
  try {
    f();
  } catch (e) {
    return e;
  }
  throw new Error('expected place() to throw');
};
const qosError = (f: () => unknown): QosError => {
  const e = thrown(f);
  if (e instanceof QosError) return e;
  throw e;
};

describe('place: cost model', () => {
  it('prefers the caller when it is as good: no network', () => {
    const p = place([node(2), node(1)], request());
    expect(p).toMatchObject({ node: id(1), rpc: 'large' });
    expect(p.breakdown).toEqual({ networkMs: 0, queueMs: 0, execMs: 3, measured: false });
    expect(p.reason).toBe(
      '00000000 (dew, wasm, the caller): large, acc 0.97, ~3 ms (net 0 + queue 0 + exec 3 prior ×1); most accurate (no latency budget)',
    );
  });

  it('counts the caller’s own rtt when another node serves it, and none for an HTTP caller', () => {
    const nodes = [node(1, { rttMs: 4, online: false }), node(2, { rttMs: 2 })];
    expect(place(nodes, request()).breakdown.networkMs).toBe(6);
    expect(place(nodes, request({ caller: '' })).breakdown.networkMs).toBe(2);
    expect(place(nodes, request({ caller: id(9) })).breakdown.networkMs).toBe(2); // unknown caller
  });

  it('trusts measured figures over priors once there are three samples', () => {
    const slow = { 'digits/model/large@wasm': { count: 5, p50: 40 } };
    const few = { 'digits/model/large@wasm': { count: 2, p50: 40 } };
    const otherBackend = { 'digits/model/large@webgpu': { count: 9, p50: 40 } };
    const nodes = [node(1, { stats: slow }), node(2, { rttMs: 2 })];
    const p = place(nodes, request({ qos: { latencyMs: 20 } }));
    expect(p).toMatchObject({ node: id(2), rpc: 'large' });
    expect(p.estimateMs).toBeCloseTo(2 + 1 + 3 * backendPrior.wasm);
    const measured = place([node(1, { stats: slow })], request());
    expect(measured.breakdown).toMatchObject({ execMs: 40, measured: true });
    expect(measured.reason).toMatch(/exec 40 measured\)/);
    expect(place([node(1, { stats: few })], request()).breakdown.measured).toBe(false);
    expect(place([node(1, { stats: otherBackend })], request()).breakdown.execMs).toBe(3);
  });

  it('prefers the relay’s own measurement over what a node reports, past three samples', () => {
    const key = 'digits/model/large@wasm';
    const liar = node(2, {
      stats: { [key]: { count: 50, p50: 0 } },
      measured: { [key]: { count: 3, p50: 40 } },
    });
    const honest = node(3, { stats: { [key]: { count: 9, p50: 10 } } });
    const p = place([liar, honest], request({ caller: '' }));
    expect(p).toMatchObject({ node: id(3), breakdown: { execMs: 10, measured: true } });
    expect(p.reason).toMatch(/exec 10 measured\)/);
    const alone = place([liar], request({ caller: '' }));
    expect(alone.breakdown.execMs).toBe(40);
    expect(alone.reason).toMatch(/exec 40 measured by the relay\)/);
    // Two relay samples are not enough: the report stands.
    const early = node(2, { ...liar, measured: { [key]: { count: 2, p50: 40 } } });
    expect(place([early, honest], request({ caller: '' })).node).toBe(id(2));
  });

  it('never places on a quarantined node but its own calls, and only trusted ones when asked', () => {
    const bad = node(2, { quarantined: true, rttMs: 0 });
    const fog = node(4, { role: 'fog', trusted: true, rttMs: 9 });
    expect(place([bad, node(3, { rttMs: 5 }), fog], request({ caller: '' })).node).toBe(id(3));
    expect(place([bad, node(3)], request({ caller: id(2) })).node).toBe(id(2));
    const gone = thrown(() => place([bad], request({ caller: '' })));
    expect(gone).toMatchObject({ code: 'E_UNAVAILABLE', message: /quarantined/ });
    const trusted = request({ caller: '', trustedOnly: true });
    expect(place([bad, node(3), fog], trusted).node).toBe(id(4));
    expect(thrown(() => place([node(3)], trusted))).toMatchObject({ code: 'E_UNAVAILABLE' });
  });

  it('places a service with tiers only on nodes of those roles, unless privacy keeps it home', () => {
    const dew = node(1, { rttMs: 0 });
    const fog = node(4, { role: 'fog', trusted: true, rttMs: 5 });
    const cloud = node(5, { role: 'cloud', trusted: true, rttMs: 9 });
    const up = request({ caller: id(1), tiers: ['fog', 'cloud'] });
    expect(place([dew, fog, cloud], request({ caller: id(1) })).node).toBe(id(1));
    expect(place([dew, fog, cloud], up).node).toBe(id(4));
    expect(place([dew, fog, cloud], { ...up, tiers: ['cloud'] }).node).toBe(id(5));
    expect(place([dew, cloud], up).node).toBe(id(5));
    // In order of preference: a fog that fits beats a faster cloud node, until none fits.
    const near = { ...cloud, rttMs: 0 };
    expect(place([dew, fog, near], up).node).toBe(id(4));
    expect(place([dew, fog, near], { ...up, tiers: ['cloud', 'fog'] }).node).toBe(id(5));
    expect(place([dew, fog, near], { ...up, qos: { latencyMs: 5 } }).node).toBe(id(5));
    const none = thrown(() => place([dew], up));
    expect(none).toBeInstanceOf(QosError);
    expect(none).toMatchObject({ constraint: 'tiers', message: /only on fog or cloud nodes/ });
    const gone = thrown(() => place([dew, { ...fog, online: false }], up));
    expect(gone).toMatchObject({ code: 'E_UNAVAILABLE', message: /no fog or cloud node/ });
    const home = { ...up, qos: { privacy: 'device' } };
    expect(place([dew, fog, cloud], home).node).toBe(id(1));
    // Privacy pinned to a node of another role: the tiers say why nothing fits.
    const pinned = { ...up, qos: { privacy: id(1) } };
    expect(thrown(() => place([dew, fog], pinned))).toMatchObject({ constraint: 'tiers' });
  });

  it('scales the manifest figure by the prior for the node’s first backend', () => {
    const cpu = node(2, { backends: ['cpu', 'wasm'] });
    const gpu = node(3, { backends: ['webgpu', 'wasm'] });
    const p = place([gpu, cpu], request({ caller: '' }));
    expect(p.node).toBe(id(2));
    expect(p.breakdown.execMs).toBeCloseTo(3 * backendPrior.cpu);
    expect(backendPrior.cpu).toBeLessThan(backendPrior.wasm);
    expect(backendPrior.webgpu).toBeGreaterThan(backendPrior.wasm);
  });

  it('adds queue wait: each request ahead costs one execution per slot', () => {
    const busy = node(2, { queue: 3, maxConcurrency: 2 });
    const p = place([busy], request({ caller: '' }));
    expect(p.breakdown).toMatchObject({ queueMs: 4.5, execMs: 3 });
    expect(p.estimateMs).toBe(1 + 4.5 + 3);
    expect(place([busy, node(3, { rttMs: 5 })], request({ caller: '' })).node).toBe(id(3));
  });

  it('adds a Logic’s own measured time to its model’s, and uses a Logic-only prior until measured', () => {
    const logicStat = { 'digits/main/run@logic': { count: 4, p50: 2 } };
    const withModel = request({ service: 'main', logic: { rpc: 'run', modelService: 'model' } });
    expect(place([node(1, { stats: logicStat })], withModel).breakdown.execMs).toBe(3 + 2);
    expect(place([node(1)], withModel).breakdown.execMs).toBe(3); // not measured: model only
    const unmeasured = place([node(1)], logicOnly());
    expect(unmeasured).toMatchObject({ rpc: '', estimateMs: 1 });
    expect(unmeasured.reason).toMatch(/Logic only, ~1 ms .*exec 1 prior\)/);
    const measured = place([node(1, { stats: logicStat })], logicOnly());
    expect(measured.breakdown).toMatchObject({ execMs: 2, measured: true });
  });
});

describe('place: who may serve', () => {
  it('never gives a node a variant it cannot hold; an unreported app allows every variant', () => {
    const smallOnly = node(1, { models: { 'digits/model': ['small'] } });
    const nodes = [smallOnly, node(2, { rttMs: 50 })];
    expect(place(nodes, request({ qos: { accuracy: 0.95 } })).node).toBe(id(2));
    expect(place(nodes, request({ qos: { latencyMs: 10 } }))).toMatchObject({
      node: id(1),
      rpc: 'small',
    });
    expect(place([smallOnly], request())).toMatchObject({ node: id(1), rpc: 'small' });
    const e = qosError(() => place([smallOnly], request({ qos: { accuracy: 0.95 } })));
    expect(e).toMatchObject({ constraint: 'accuracy', best: 0.94 });
    const none = node(1, { models: { 'digits/model': [] } });
    expect(qosError(() => place([none], request()))).toMatchObject({
      constraint: 'accuracy',
      best: undefined,
    });
  });

  it('keeps privacy: device, a node id, a trusted key', () => {
    const fog = node(3, { role: 'fog', publicKey: 'fog-key', trusted: true, rttMs: 30 });
    const nodes = [node(1, { models: { 'digits/model': ['small'] } }), node(2), fog];
    expect(place(nodes, request({ qos: { privacy: 'device' } })).node).toBe(id(1));
    expect(place(nodes, request({ qos: { privacy: id(2) } })).node).toBe(id(2));
    expect(place(nodes, request({ qos: { privacy: 'fog-key' } })).node).toBe(id(3));
    // Two nodes share a key: only the trusted one may serve it.
    const twin = node(4, { publicKey: 'fog-key', rttMs: 0 });
    expect(place([...nodes, twin], request({ qos: { privacy: 'fog-key' } })).node).toBe(id(3));
  });

  it('refuses what privacy cannot allow, naming what was asked', () => {
    const fog = node(3, { role: 'fog', publicKey: 'fog-key', trusted: false });
    const nodes = [node(1), node(2), fog];
    const untrusted = qosError(() => place(nodes, request({ qos: { privacy: 'fog-key' } })));
    expect(untrusted).toMatchObject({ constraint: 'privacy', best: undefined });
    expect(untrusted.message).toMatch(/key fog-key is not trusted/);
    const nobody = qosError(() => place(nodes, request({ qos: { privacy: 'nobody' } })));
    expect(nobody).toMatchObject({ constraint: 'privacy', best: undefined });
    expect(nobody.message).toMatch(/nobody.*no such node/);
    expect(qosError(() => place(nodes, request({ qos: { privacy: id(7) } }))).message).toMatch(
      /node 0000000000000000….*no such node/,
    );
    const http = request({ caller: '', qos: { privacy: 'device' } });
    expect(qosError(() => place(nodes, http)).message).toMatch(/HTTP caller has no device/);
    const offline = qosError(() =>
      place([node(1), node(2, { online: false })], request({ qos: { privacy: id(2) } })),
    );
    expect(offline.message).toMatch(/allows no node that can take digits\/model now/);
  });

  it('skips excluded, offline and paused nodes, but a paused caller serves itself', () => {
    const nodes = [node(1, { paused: true }), node(2, { online: false }), node(3), node(4)];
    expect(place(nodes, request()).node).toBe(id(1));
    expect(place(nodes, request({ caller: id(9), exclude: [id(3)] })).node).toBe(id(4));
    expect(place(nodes, request({ exclude: [id(1)] })).node).toBe(id(3));
    const gone = thrown(() => place([node(2, { online: false })], request()));
    expect(gone).toMatchObject({
      code: 'E_UNAVAILABLE',
      message: expect.stringMatching(/no node/),
    });
    expect(gone).not.toBeInstanceOf(QosError);
    const empty = thrown(() => place([], request({ qos: { privacy: 'device' } })));
    expect(empty).toBeInstanceOf(BrumeError);
    expect(empty).toMatchObject({ code: 'E_UNAVAILABLE', message: 'no node is connected' });
  });
});

describe('place: failures and ties', () => {
  it('names the most fundamental constraint, with what was achievable', () => {
    const nodes = [node(1, { models: { 'digits/model': ['small'] } }), node(2, { rttMs: 4 })];
    const slow = qosError(() => place(nodes, request({ caller: '', qos: { latencyMs: 1 } })));
    expect(slow.constraint).toBe('latencyMs');
    expect(slow.best).toBeCloseTo(1 + 0.5); // node 1's rtt + the small model's prior
    expect(slow.message).toMatch(/within 1 ms; the fastest takes ~1.5 ms/);
    // Asking for accuracy too: the fastest *accurate* pair is what counts.
    const both = qosError(() =>
      place(nodes, request({ caller: '', qos: { latencyMs: 1, accuracy: 0.95 } })),
    );
    expect(both).toMatchObject({ constraint: 'latencyMs', best: 4 + 3 });
    // Accuracy out of reach outranks the budget; privacy outranks both.
    const weak = qosError(() => place(nodes, request({ qos: { latencyMs: 1, accuracy: 0.99 } })));
    expect(weak).toMatchObject({ constraint: 'accuracy', best: 0.97 });
    const pinned = { latencyMs: 1, accuracy: 0.99, privacy: 'missing-key' };
    expect(qosError(() => place(nodes, request({ qos: pinned }))).constraint).toBe('privacy');
    // Device privacy on a node that cannot hold the accurate variant: accuracy, best from it.
    const device = request({ qos: { privacy: 'device', accuracy: 0.95 } });
    expect(qosError(() => place(nodes, device))).toMatchObject({
      constraint: 'accuracy',
      best: 0.94,
    });
  });

  it('among equally accurate pairs takes the fastest, then the least loaded, then the lowest id', () => {
    // Both total 4 ms: a = 1 rtt + 1 queue + 2 exec, b = 2 rtt + 0 queue + 2 exec.
    const stats = { 'digits/model/large@wasm': { count: 3, p50: 2 } };
    const a = node(5, { rttMs: 1, queue: 1, maxConcurrency: 2, stats });
    const b = node(6, { rttMs: 2, stats });
    const p = place([a, b], request({ caller: '' }));
    expect(p).toMatchObject({ node: id(6), estimateMs: 4 });
    expect(place([a, b], request({ caller: '' })).estimateMs).toBe(
      place([a], request({ caller: '' })).estimateMs,
    );
    expect(place([node(8), node(7)], request({ caller: '' })).node).toBe(id(7));
    expect(place([node(7), node(8)], request({ caller: '' })).node).toBe(id(7));
  });
});

// ——— The property: thousands of random fabrics, each checked by a brute-force oracle. ———

const backendNames: BackendName[] = ['wasm', 'webgpu', 'cpu'];
const roles: Role[] = ['dew', 'fog', 'cloud'];
const keyPool = ['MFkwEwYHKoZIzj0CAQ-a', 'MFkwEwYHKoZIzj0CAQ-b', 'MFkwEwYHKoZIzj0CAQ-c'];

/** One random fabric and request. Half the cases use whole numbers so that ties are common. */
function randomCase(seed: number): { nodes: NodeView[]; req: PlacementRequest } {
  const r = mulberry32(seed);
  const int = (n: number) => Math.floor(r() * n);
  const pick = <T>(xs: readonly T[]) => xs[int(xs.length)]!;
  const coarse = r() < 0.5;
  const num = (max: number) => (coarse ? int(max + 1) : r() * max);

  const kind = pick(['model', 'logic+model', 'logic'] as const);
  const vs: VariantInfo[] = [];
  if (kind === 'logic') {
    vs.push({ rpc: '', accuracy: 1, latencyMs: r() < 0.5 ? 1 : 0.1 + num(10) });
  } else {
    const count = 1 + int(4);
    for (let i = 0; i < count; i++) {
      // Accuracies from a handful of values, so equal accuracies (ties) happen.
      vs.push({ rpc: `v${i}`, accuracy: pick([0.5, 0.8, 0.9, 0.95, 0.99]), latencyMs: num(20) });
    }
  }
  const service = kind === 'model' ? 'model' : 'main';
  const nodes: NodeView[] = [];
  const ids = new Set<number>(); // unique, in random order (ids below 4000; 4001+ are unknown)
  const count = r() < 0.3 ? 1 + int(3) : 1 + int(40);
  const up = pick([0.95, 0.7, 0.2]); // how many nodes are online and not paused
  while (ids.size < count) ids.add(int(4000));
  for (const [i, n] of [...ids].entries()) {
    const backends = backendNames.filter(() => r() < 0.6);
    if (backends.length === 0) backends.push(pick(backendNames));
    if (r() < 0.5) backends.reverse();
    const stats: NodeView['stats'] = {};
    for (const v of vs) {
      if (!v.rpc) continue;
      const on = r() < 0.8 ? backends[0]! : pick(backendNames); // sometimes another backend's
      if (r() < 0.5) stats[`digits/model/${v.rpc}@${on}`] = { count: int(7), p50: num(30) };
    }
    if (kind !== 'model' && r() < 0.5) {
      stats[`digits/main/${r() < 0.9 ? 'run' : 'other'}@logic`] = { count: int(7), p50: num(10) };
    }
    const models: NodeView['models'] = {};
    if (r() < 0.6) models['digits/model'] = vs.filter(() => r() < 0.6).map((v) => v.rpc);
    if (r() < 0.1) models['digits/other'] = [];
    // The relay's own figures, some over the same keys the node reports (and contradicting them).
    const measured: NodeView['measured'] = {};
    if (r() < 0.4) {
      for (const key of [
        ...Object.keys(stats),
        'digits/main/run@logic',
        `digits/model/v0@${backends[0]}`,
      ])
        if (r() < 0.5) measured[key] = { count: int(7), p50: num(30) };
    }
    nodes.push(
      node(n, {
        role: pick(roles),
        publicKey: r() < 0.5 ? pick(keyPool) : `key-${i}`,
        trusted: r() < 0.4,
        online: r() < up,
        paused: r() > up + (1 - up) / 2,
        rttMs: num(10),
        backends,
        queue: int(5),
        maxConcurrency: 1 + int(4),
        stats,
        models,
        ...(r() < 0.5 ? { measured } : {}),
        ...(r() < 0.1 ? { quarantined: true } : {}),
        // The versions it holds (some hold none of the app), and whether it fetches the others.
        ...(r() < 0.6 ? { versions: { digits: versionPool.filter(() => r() < 0.5) } } : {}),
        ...(r() < 0.3 ? { fetch: true } : {}),
      }),
    );
  }
  const caller = pick(['', id(4001), pick(nodes).id, pick(nodes).id, pick(nodes).id]);
  const privacy =
    r() < 0.65
      ? undefined
      : pick([
          'device',
          pick(nodes).id,
          id(4002),
          pick(keyPool),
          pick(nodes).publicKey,
          'key-unknown',
        ]);
  const qos: PlacementRequest['qos'] = {};
  if (r() < 0.5) qos.accuracy = r() < 0.3 ? pick(vs).accuracy : Math.round(r() * 100) / 100;
  if (r() < 0.5) qos.latencyMs = num(40);
  if (privacy !== undefined) qos.privacy = privacy;
  const exclude = r() < 0.3 ? nodes.filter(() => r() < 0.2).map((n) => n.id) : undefined;
  // A third of the requests name tiers (from their own stream: the cases above stay as they were).
  const t = mulberry32(seed ^ 0x7153);
  const tiers = t() < 0.33 ? roles.filter(() => t() < 0.5) : undefined;
  return {
    nodes,
    req: {
      app: 'digits',
      service,
      ...(kind === 'logic+model' ? { logic: { rpc: 'run', modelService: 'model' } } : {}),
      ...(kind === 'logic' ? { logic: { rpc: 'run' } } : {}),
      variants: vs,
      qos,
      caller,
      ...(exclude ? { exclude } : {}),
      ...(r() < 0.1 ? { trustedOnly: true } : {}),
      ...(r() < 0.25 ? { version: pick(versionPool) } : {}),
      ...(tiers?.length ? { tiers } : {}),
    },
  };
}

/** App versions the random fabrics hold and calls ask for. */
const versionPool = ['1.0.0', '1.0.1', '2.0.0'];

interface Pair {
  node: NodeView;
  v: VariantInfo;
  index: number;
  net: number;
  queue: number;
  exec: number;
  est: number;
  measured: boolean;
  load: number;
}

type Expected =
  | { kind: 'placed'; pair: Pair; fits: Pair[] }
  | { kind: 'unavailable' }
  | {
      kind: 'qos';
      constraint: 'privacy' | 'accuracy' | 'latencyMs' | 'tiers';
      best: number | undefined;
    };

/**
 * What place() must answer, found the slow plain way: list every (node, variant) pair the rules
 * allow with its cost, filter by accuracy and budget, sort the survivors. Written from the rules,
 * not from core/placement.ts.
 */
function oracle(nodes: NodeView[], req: PlacementRequest): Expected & { allowed: Set<string> } {
  const { qos, caller } = req;
  const p = qos.privacy;
  const privacyAllows = (n: NodeView): boolean => {
    if (p === undefined) return true;
    if (p === 'device') return caller !== '' && n.id === caller;
    if (/^[0-9a-f]{32}$/.test(p)) return n.id === p;
    return n.publicKey === p && n.trusted;
  };
  // A quarantined node, like a paused one, serves only itself; a reference run only the trusted.
  const canTakeWork = (n: NodeView): boolean =>
    n.online &&
    ((!n.paused && !n.quarantined) || n.id === caller) &&
    (!req.trustedOnly || n.trusted) &&
    !(req.exclude ?? []).includes(n.id) &&
    // A call that asked a version: only nodes that hold it, or fetch what they lack.
    (req.version === undefined ||
      n.fetch === true ||
      (n.versions?.digits ?? []).includes(req.version));
  // The relay's measurement once it has three samples, else the node's report once it has three.
  const figure = (n: NodeView, key: string) => {
    const m = n.measured?.[key];
    if (m && m.count >= 3) return m;
    const s = n.stats[key];
    return s && s.count >= 3 ? s : undefined;
  };
  // Tiers name the roles that may run it, unless privacy keeps it on the caller.
  const tiers = p === 'device' ? undefined : req.tiers;
  const onTier = (n: NodeView): boolean => !tiers || tiers.includes(n.role);
  const eligible = nodes.filter((n) => privacyAllows(n) && onTier(n) && canTakeWork(n));
  const allowed = new Set(eligible.map((n) => n.id));
  const callerNode = nodes.find((n) => n.id === caller);
  const modelService = req.logic ? req.logic.modelService : req.service;

  const pairs: Pair[] = [];
  for (const n of eligible) {
    const backend = n.backends[0]!;
    const logicStat = req.logic
      ? figure(n, `digits/${req.service}/${req.logic.rpc}@logic`)
      : undefined;
    const logicMeasured = logicStat !== undefined;
    req.variants.forEach((v, index) => {
      const holds = modelService ? n.models[`digits/${modelService}`] : undefined;
      if (holds !== undefined && v.rpc !== '' && !holds.includes(v.rpc)) return;
      let exec: number;
      let measured: boolean;
      if (v.rpc === '') {
        measured = logicMeasured;
        exec = logicMeasured ? logicStat.p50 : v.latencyMs;
      } else {
        const s = figure(n, `digits/${modelService}/${v.rpc}@${backend}`);
        measured = s !== undefined;
        exec =
          (measured ? s!.p50 : v.latencyMs * backendPrior[backend]) +
          (logicMeasured ? logicStat.p50 : 0);
      }
      const net = n.id === caller ? 0 : n.rttMs + (callerNode ? callerNode.rttMs : 0);
      const queue = (exec * n.queue) / n.maxConcurrency;
      const est = net + queue + exec;
      pairs.push({
        node: n,
        v,
        index,
        net,
        queue,
        exec,
        est,
        measured,
        load: n.queue / n.maxConcurrency,
      });
    });
  }

  if (nodes.length === 0) return { kind: 'unavailable', allowed };
  if (p === 'device' && caller === '')
    return { kind: 'qos', constraint: 'privacy', best: undefined, allowed };
  const privateOk = nodes.filter(privacyAllows);
  if (privateOk.length > 0 && !privateOk.some(onTier))
    return { kind: 'qos', constraint: 'tiers', best: undefined, allowed };
  if (eligible.length === 0) {
    if (p === undefined) return { kind: 'unavailable', allowed };
    return { kind: 'qos', constraint: 'privacy', best: undefined, allowed };
  }
  if (pairs.length === 0) return { kind: 'qos', constraint: 'accuracy', best: undefined, allowed };
  const accurate = pairs.filter((q) => qos.accuracy === undefined || q.v.accuracy >= qos.accuracy);
  if (accurate.length === 0) {
    const best = Math.max(...pairs.map((q) => q.v.accuracy));
    return { kind: 'qos', constraint: 'accuracy', best, allowed };
  }
  const fits = accurate.filter((q) => qos.latencyMs === undefined || q.est <= qos.latencyMs);
  if (fits.length === 0) {
    const best = Math.min(...accurate.map((q) => q.est));
    return { kind: 'qos', constraint: 'latencyMs', best, allowed };
  }
  // Tiers rank roles: an earlier role first, whatever the rest.
  const rank = (q: Pair) => (tiers ? tiers.indexOf(q.node.role) : 0);
  const sorted = [...fits].sort(
    (a, b) =>
      rank(a) - rank(b) ||
      b.v.accuracy - a.v.accuracy ||
      a.est - b.est ||
      a.load - b.load ||
      (a.node.id < b.node.id ? -1 : a.node.id > b.node.id ? 1 : 0) ||
      a.index - b.index,
  );
  return { kind: 'placed', pair: sorted[0]!, fits, allowed };
}

/** Checks one case; returns 'placed' or the error's constraint/code, for the coverage tally. */
function check(seed: number): string {
  const { nodes, req } = randomCase(seed);
  const want = oracle(nodes, req);
  const replay = `seed ${seed} (replay: BRUME_SEED=${seed} npx vitest run tests/unit/placement.test.ts)`;
  let got: Placement | undefined;
  let error: unknown;
  try {
    got = place(nodes, req);
  } catch (e) {
    error = e;
  }
  if (got) {
    const n = nodes.find((x) => x.id === got.node);
    const v = req.variants.find((x) => x.rpc === got.rpc);
    // (a) privacy, eligibility and capacity
    expect(n, `unknown node; ${replay}`).toBeDefined();
    expect(want.allowed.has(got.node), `a node privacy or availability rules out; ${replay}`).toBe(
      true,
    );
    const holds = n!.models[`digits/${req.logic ? req.logic.modelService : req.service}`];
    if (holds && got.rpc !== '')
      expect(holds, `a variant the node cannot hold; ${replay}`).toContain(got.rpc);
    // (b) accuracy, (c) budget
    expect(v, `unknown variant; ${replay}`).toBeDefined();
    if (req.qos.accuracy !== undefined) {
      expect(v!.accuracy, `below the accuracy asked; ${replay}`).toBeGreaterThanOrEqual(
        req.qos.accuracy,
      );
    }
    if (req.qos.latencyMs !== undefined) {
      expect(got.estimateMs, `over the budget; ${replay}`).toBeLessThanOrEqual(req.qos.latencyMs);
    }
    const { networkMs, queueMs, execMs } = got.breakdown;
    expect(networkMs + queueMs + execMs, `breakdown does not add up; ${replay}`).toBeCloseTo(
      got.estimateMs,
      9,
    );
    // (d) the oracle found a compliant pair too, and the very same one
    expect(want.kind, `placed although nothing complies; ${replay}`).toBe('placed');
    if (want.kind !== 'placed') return 'placed';
    const { pair } = want;
    // The most accurate among the nodes of the preferred role that fit (every role without tiers).
    const tiers = req.qos.privacy === 'device' ? undefined : req.tiers;
    const sameRank = (q: { node: NodeView }) => !tiers || q.node.role === pair.node.role;
    const best = Math.max(...want.fits.filter(sameRank).map((q) => q.v.accuracy));
    expect(v!.accuracy, `not the best achievable accuracy; ${replay}`).toBe(best);
    expect({ node: got.node, rpc: got.rpc }, `not the oracle's pick; ${replay}`).toEqual({
      node: pair.node.id,
      rpc: pair.v.rpc,
    });
    expect(got.estimateMs, replay).toBeCloseTo(pair.est, 9);
    expect(got.breakdown, replay).toEqual({
      networkMs: pair.net,
      queueMs: pair.queue,
      execMs: pair.exec,
      measured: pair.measured,
    });
    return 'placed';
  }
  // (e) it threw: nothing complies, and the constraint and `best` are the oracle's
  expect(want.kind, `threw although a compliant pair exists: ${String(error)}; ${replay}`).not.toBe(
    'placed',
  );
  if (want.kind === 'unavailable') {
    expect(error, replay).not.toBeInstanceOf(QosError);
    expect((error as BrumeError).code, replay).toBe('E_UNAVAILABLE');
    return 'E_UNAVAILABLE';
  }
  expect(error, `${String(error)}; ${replay}`).toBeInstanceOf(QosError);
  const e = error as QosError;
  if (want.kind !== 'qos') return e.constraint;
  expect(e.constraint, `${e.message}; ${replay}`).toBe(want.constraint);
  if (want.best === undefined) expect(e.best, replay).toBeUndefined();
  else expect(e.best as number, `${e.message}; ${replay}`).toBeCloseTo(want.best, 9);
  if (want.constraint === 'latencyMs') expect(e.message, replay).toMatch(/~[\d.]+ ms/);
  const key = req.qos.privacy;
  if (want.constraint === 'privacy' && key && !/^[0-9a-f]{32}$/.test(key) && key !== 'device') {
    const holders = nodes.filter((x) => x.publicKey === key);
    if (holders.length > 0 && !holders.some((x) => x.trusted)) {
      expect(e.message, replay).toMatch(/not trusted/);
    }
  }
  return e.constraint;
}

describe('place, over random fabrics', () => {
  const replaying = process.env.BRUME_SEED !== undefined;
  const base = Number(process.env.BRUME_SEED ?? 20261124);
  const cases = Number(process.env.BRUME_CASES ?? (replaying ? 1 : 5000));

  it(`agrees with a brute-force oracle on ${cases} fabrics from seed ${base}`, () => {
    const outcomes: Record<string, number> = {};
    for (let k = 0; k < cases; k++) {
      const outcome = check(base + k);
      outcomes[outcome] = (outcomes[outcome] ?? 0) + 1;
    }
    if (replaying && cases < 100) return;
    // The generator must reach every outcome often, or the property says little.
    for (const o of ['placed', 'privacy', 'accuracy', 'latencyMs', 'tiers', 'E_UNAVAILABLE']) {
      expect(outcomes[o] ?? 0, `${o} in ${JSON.stringify(outcomes)}`).toBeGreaterThan(cases / 100);
    }
  });
});

// ——— The same property through route(): the manifest says which model judges a Logic. ———

/** The model whose variants decide a call to `service`, written from PROTOCOL §2.1 `models`. */
function dependsOn(m: Manifest, service: string): string | undefined {
  const s = m.services[service]!;
  if (s.kind === 'model') return service;
  if (s.models !== undefined) return s.models[0];
  const models = Object.keys(m.services).filter((k) => m.services[k]!.kind === 'model');
  return models.length === 1 ? models[0] : undefined;
}

const modelService = (variants: VariantInfo[]): Manifest['services'][string] => ({
  kind: 'model',
  task: 'test',
  inputs: [],
  outputs: [],
  variants: Object.fromEntries(
    variants.map((v) => [
      v.rpc,
      { ...v, file: `${v.rpc}.onnx`, params: 1, weights: 'trained', measured: 'test' },
    ]),
  ),
});

/**
 * randomCase's fabric and QoS over a manifest: `main` (a Logic, rpcs run and other) and `model`
 * (randomCase's variants, or its own when the case is Logic-only), sometimes a second model
 * `other`, and a random `models` declaration (absent, [], one or both, in either order).
 */
function randomRouteCase(seed: number) {
  const { nodes, req } = randomCase(seed);
  const r = mulberry32(seed ^ 0x5eed);
  const own = [{ rpc: 'v0', accuracy: 0.9, latencyMs: 2 }];
  const models: Manifest['services'] = {
    model: modelService(req.variants[0]!.rpc ? req.variants : own),
  };
  if (r() < 0.5) models.other = modelService([{ rpc: 'x0', accuracy: 0.8, latencyMs: r() * 5 }]);
  const names = Object.keys(models);
  const declared = [undefined, [], names, [...names].reverse(), [names[names.length - 1]!]][
    Math.floor(r() * 5)
  ];
  const manifest: Manifest = {
    brume: 1,
    name: 'digits',
    version: '1.0.0',
    files: {},
    services: {
      main: {
        kind: 'logic',
        file: 'main.wasm',
        rpcs: ['run', 'other'],
        ...(declared && { models: declared }),
      },
      ...models,
    },
  };
  const asked = req.logic || r() < 0.3 ? 'main' : r() < 0.5 ? 'other' : 'model';
  const service = manifest.services[asked] ? asked : 'model';
  // The case's tiers are the called service's, from its manifest.
  if (req.tiers) manifest.services[service]!.tiers = [...req.tiers];
  return { nodes, req, manifest, service };
}

/** Checks route() against the oracle; answers the model that decided, for the coverage tally. */
function checkRoute(seed: number): string {
  const { nodes, req, manifest, service } = randomRouteCase(seed);
  const replay = `seed ${seed} (replay: BRUME_SEED=${seed} npx vitest run tests/unit/placement.test.ts)`;
  const decides = dependsOn(manifest, service);
  const model = decides === undefined ? undefined : manifest.services[decides];
  const variants =
    model?.kind === 'model'
      ? Object.entries(model.variants).map(([rpc, v]) => ({ rpc, ...v }))
      : [{ rpc: '', accuracy: 1, latencyMs: 1 }];
  const isLogic = service === 'main';
  const want = oracle(nodes, {
    ...req,
    service,
    variants,
    ...(isLogic ? { logic: { rpc: 'run', ...(decides && { modelService: decides }) } } : {}),
    ...(!isLogic && { logic: undefined }),
  });
  const ask = {
    service,
    rpc: isLogic && seed % 2 ? 'run' : '',
    qos: req.qos,
    caller: req.caller,
    ...(req.exclude && { exclude: req.exclude }),
    ...(req.trustedOnly && { trustedOnly: true }),
    ...(req.version !== undefined && { version: req.version }),
  };
  let got: Route | undefined;
  let error: unknown;
  try {
    got = route(manifest, nodes, ask);
  } catch (e) {
    error = e;
  }
  if (want.kind === 'placed') {
    expect(error, `threw ${String(error)}; ${replay}`).toBeUndefined();
    const v = want.pair.v.rpc;
    expect(got, replay).toEqual({
      node: want.pair.node.id,
      rpc: isLogic ? 'run' : v,
      ...(isLogic && decides && v ? { pin: { [decides]: v } } : {}),
      variant: v,
      estimateMs: expect.closeTo(want.pair.est, 9),
      reason: expect.any(String),
    });
  } else if (want.kind === 'unavailable') {
    expect((error as BrumeError)?.code, replay).toBe('E_UNAVAILABLE');
  } else {
    expect(error, `${String(error)}; ${replay}`).toBeInstanceOf(QosError);
    expect((error as QosError).constraint, replay).toBe(want.constraint);
  }
  return isLogic ? `logic judged by ${decides ?? 'none'}` : 'model';
}

describe('route, over random fabrics and manifests', () => {
  const replaying = process.env.BRUME_SEED !== undefined;
  const base = Number(process.env.BRUME_SEED ?? 20261202);
  const cases = Number(process.env.BRUME_CASES ?? (replaying ? 1 : 2000));

  it(`agrees with the oracle under the declared-model rule on ${cases} cases`, () => {
    const outcomes: Record<string, number> = {};
    for (let k = 0; k < cases; k++) {
      const outcome = checkRoute(base + k);
      outcomes[outcome] = (outcomes[outcome] ?? 0) + 1;
    }
    if (replaying && cases < 100) return;
    for (const o of [
      'model',
      'logic judged by model',
      'logic judged by other',
      'logic judged by none',
    ]) {
      expect(outcomes[o] ?? 0, `${o} in ${JSON.stringify(outcomes)}`).toBeGreaterThan(cases / 100);
    }
  });
});
