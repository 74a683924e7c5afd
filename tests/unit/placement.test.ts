import { describe, expect, it } from 'vitest';
import { BrumeError, QosError } from '../../core/errors';
import type { BackendName } from '../../core/exec/model-runner';
import {
  backendPrior,
  type NodeView,
  type PlacementRequest,
  place,
  type VariantInfo,
} from '../../core/placement';
import type { Role } from '../../core/protocol';
import { mulberry32 } from '../../models/digits/mlp';

const id = (n: number) => n.toString(16).padStart(32, '0');
const node = (n: number, over: Partial<NodeView> = {}): NodeView => ({
  id: id(n),
  role: 'dew',
  publicKey: `key-${n}`,
  trusted: false,
  online: true,
  paused: false,
  rttMs: 1,
  backends: ['wasm'],
  queue: 0,
  maxConcurrency: 1,
  apps: ['digits'],
  stats: {},
  models: {},
  ...over,
});
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
const qosError = (f: () => unknown): QosError => {
  try {
    f();
  } catch (e) {
    if (e instanceof QosError) return e;
    throw e;
  }
  throw new Error('expected a QosError');
};

describe('place', () => {
  it('prefers the caller when it is as good: no network', () => {
    const p = place([node(1), node(2)], request());
    expect(p).toMatchObject({ node: id(1), rpc: 'large' });
    expect(p.breakdown.networkMs).toBe(0);
    expect(p.reason).toMatch(/the caller itself: large/);
  });

  it('trusts measured figures over priors once there are three samples', () => {
    const slow = { 'digits/model/large@wasm': { count: 5, p50: 40 } };
    const few = { 'digits/model/large@wasm': { count: 2, p50: 40 } };
    const nodes = [node(1, { stats: slow }), node(2, { rttMs: 2 })];
    const p = place(nodes, request({ qos: { latencyMs: 20 } }));
    expect(p).toMatchObject({ node: id(2), rpc: 'large' });
    expect(p.estimateMs).toBeCloseTo(3 + 3 * backendPrior.wasm);
    expect(place([node(1, { stats: few })], request()).breakdown.measured).toBe(false);
  });

  it('never gives a node a variant it cannot hold', () => {
    const nodes = [node(1, { models: { 'digits/model': ['small'] } }), node(2, { rttMs: 50 })];
    expect(place(nodes, request({ qos: { accuracy: 0.95 } })).node).toBe(id(2));
    const e = qosError(() => place([nodes[0]!], request({ qos: { accuracy: 0.95 } })));
    expect(e).toMatchObject({ constraint: 'accuracy', best: 0.94 });
  });

  it('keeps privacy: device, a node id, a trusted key', () => {
    const fog = node(3, { role: 'fog', publicKey: 'fog-key', trusted: true, rttMs: 30 });
    const nodes = [node(1, { models: { 'digits/model': ['small'] } }), node(2), fog];
    expect(place(nodes, request({ qos: { privacy: 'device' } })).node).toBe(id(1));
    expect(place(nodes, request({ qos: { privacy: id(2) } })).node).toBe(id(2));
    expect(place(nodes, request({ qos: { privacy: 'fog-key' } })).node).toBe(id(3));
    const untrusted = [...nodes.slice(0, 2), { ...fog, trusted: false }];
    expect(
      qosError(() => place(untrusted, request({ qos: { privacy: 'fog-key' } }))),
    ).toMatchObject({
      constraint: 'privacy',
      message: expect.stringMatching(/not trusted/),
    });
    expect(qosError(() => place(nodes, request({ qos: { privacy: 'nobody' } }))).constraint).toBe(
      'privacy',
    );
    const http = request({ caller: '', qos: { privacy: 'device' } });
    expect(qosError(() => place(nodes, http)).message).toMatch(/HTTP caller has no device/);
    const deviceTooWeak = request({ qos: { privacy: 'device', accuracy: 0.95 } });
    expect(qosError(() => place(nodes, deviceTooWeak)).constraint).toBe('accuracy');
  });

  it('skips excluded, offline and paused nodes, but a paused caller serves itself', () => {
    const nodes = [node(1, { paused: true }), node(2, { online: false }), node(3), node(4)];
    expect(place(nodes, request()).node).toBe(id(1));
    expect(place(nodes, request({ caller: id(9), exclude: [id(3)] })).node).toBe(id(4));
    expect(() => place([node(2, { online: false })], request())).toThrow(/no node can take/);
    expect(() => place([], request())).toThrow(BrumeError);
  });

  it('names the latency it could reach', () => {
    const e = qosError(() => place([node(2, { rttMs: 4 })], request({ qos: { latencyMs: 2 } })));
    expect(e.constraint).toBe('latencyMs');
    expect(e.best).toBeCloseTo(4 + 0.5); // the node's rtt (the caller is not connected) + prior
  });

  it('counts queue wait and breaks ties by load, then id', () => {
    const busy = node(2, { queue: 2, maxConcurrency: 1 });
    const idle = node(3);
    const p = place([busy, idle], request({ caller: '' }));
    expect(p.node).toBe(id(3));
    const a = node(5, { queue: 1, maxConcurrency: 4 });
    const b = node(6, { queue: 0, maxConcurrency: 4 });
    // Same total when exec is 0 (a Logic that calls no model): load decides, then id.
    const logic = request({ caller: '', variants: [{ rpc: '', accuracy: 1, latencyMs: 1 }] });
    expect(place([a, b], { ...logic, logic: { rpc: 'run' } }).node).toBe(id(6));
    expect(place([node(8), node(7)], { ...logic, logic: { rpc: 'run' } }).node).toBe(id(7));
  });
});

// ——— The property: over thousands of random fabrics, compared with a brute-force oracle. ———

function randomCase(seed: number) {
  const r = mulberry32(seed);
  const int = (n: number) => Math.floor(r() * n);
  const pick = <T>(xs: readonly T[]) => xs[int(xs.length)]!;
  const vs: VariantInfo[] = [];
  const nv = 1 + int(4);
  for (let i = 0; i < nv; i++) {
    vs.push({ rpc: `v${i}`, accuracy: Math.round(r() * 100) / 100, latencyMs: r() * 20 });
  }
  const keys = ['k0', 'k1', 'k2', 'k3'];
  const nodes: NodeView[] = [];
  const count = 1 + int(40);
  for (let i = 0; i < count; i++) {
    const backend = pick<BackendName>(['wasm', 'webgpu', 'cpu']);
    const stats: NodeView['stats'] = {};
    for (const v of vs) {
      if (r() < 0.4) stats[`digits/model/${v.rpc}@${backend}`] = { count: int(6), p50: r() * 30 };
    }
    const models: NodeView['models'] = {};
    if (r() < 0.6) models['digits/model'] = vs.filter(() => r() < 0.6).map((v) => v.rpc);
    nodes.push(
      node(i + 1, {
        role: pick<Role>(['dew', 'fog', 'cloud']),
        publicKey: pick(keys),
        trusted: r() < 0.4,
        online: r() < 0.9,
        paused: r() < 0.1,
        rttMs: r() * 10,
        backends: [backend],
        queue: int(4),
        maxConcurrency: 1 + int(4),
        stats,
        models,
      }),
    );
  }
  const caller = r() < 0.2 ? '' : pick(nodes).id;
  const privacy = pick([undefined, undefined, 'device', pick(nodes).id, pick(keys), 'k-none']);
  const qos = {
    ...(r() < 0.6 ? { accuracy: Math.round(r() * 100) / 100 } : {}),
    ...(r() < 0.6 ? { latencyMs: r() * 30 } : {}),
    ...(privacy !== undefined ? { privacy } : {}),
  };
  const exclude = nodes.filter(() => r() < 0.1).map((n) => n.id);
  return { nodes, req: request({ variants: vs, qos, caller, exclude }) };
}

/** Every compliant (node, variant) pair with its estimate, computed plainly. */
function oracle(nodes: NodeView[], req: PlacementRequest) {
  const { qos } = req;
  const allowedByPrivacy = (n: NodeView) => {
    if (qos.privacy === undefined) return true;
    if (qos.privacy === 'device') return req.caller !== '' && n.id === req.caller;
    if (/^[0-9a-f]{32}$/.test(qos.privacy)) return n.id === qos.privacy;
    return n.publicKey === qos.privacy && n.trusted;
  };
  const callerRtt = nodes.find((n) => n.id === req.caller)?.rttMs ?? 0;
  const pairs: { node: NodeView; v: VariantInfo; est: number }[] = [];
  for (const n of nodes) {
    if (!allowedByPrivacy(n) || !n.online || req.exclude?.includes(n.id)) continue;
    if (n.paused && n.id !== req.caller) continue;
    for (const v of req.variants) {
      const list = n.models['digits/model'];
      if (list && !list.includes(v.rpc)) continue;
      const s = n.stats[`digits/model/${v.rpc}@${n.backends[0]}`];
      const exec = s && s.count >= 3 ? s.p50 : v.latencyMs * backendPrior[n.backends[0]!];
      const net = n.id === req.caller ? 0 : n.rttMs + callerRtt;
      pairs.push({ node: n, v, est: net + exec + (exec * n.queue) / n.maxConcurrency });
    }
  }
  const accurate = pairs.filter((p) => qos.accuracy === undefined || p.v.accuracy >= qos.accuracy);
  const fits = accurate.filter((p) => qos.latencyMs === undefined || p.est <= qos.latencyMs);
  return { pairs, accurate, fits };
}

describe('place, over random fabrics', () => {
  const base = Number(process.env.BRUME_SEED ?? 20261124);
  const cases = process.env.BRUME_SEED ? 1 : Number(process.env.BRUME_SEEDS ?? 5000);

  it(`never breaks privacy or accuracy, and finds a compliant pair when one exists (${cases} fabrics)`, () => {
    let placed = 0;
    for (let k = 0; k < cases; k++) {
      const seed = base + k;
      const { nodes, req } = randomCase(seed);
      const { pairs, accurate, fits } = oracle(nodes, req);
      const replay = `replay: BRUME_SEED=${seed} npx vitest run tests/unit/placement.test.ts`;
      let p: ReturnType<typeof place> | undefined;
      let error: unknown;
      try {
        p = place(nodes, req);
      } catch (e) {
        error = e;
      }
      if (p) {
        placed++;
        const chosen = fits.find((f) => f.node.id === p.node && f.v.rpc === p.rpc);
        expect(chosen, `a decision outside the compliant set; ${replay}`).toBeDefined();
        const bestAccuracy = Math.max(...fits.map((f) => f.v.accuracy));
        expect(chosen!.v.accuracy, `not the most accurate compliant variant; ${replay}`).toBe(
          bestAccuracy,
        );
        expect(p.estimateMs, replay).toBeCloseTo(chosen!.est, 6);
        continue;
      }
      expect(fits, `threw although a compliant pair exists; ${replay}`).toEqual([]);
      if (!(error instanceof QosError)) {
        expect((error as BrumeError).code, replay).toBe('E_UNAVAILABLE');
        expect(req.qos.privacy, replay).toBeUndefined();
        continue;
      }
      if (pairs.length === 0) {
        expect(['privacy', 'accuracy'], replay).toContain(error.constraint);
      } else if (accurate.length === 0) {
        expect(error.constraint, replay).toBe('accuracy');
        expect(error.best, replay).toBe(Math.max(...pairs.map((q) => q.v.accuracy)));
      } else {
        expect(error.constraint, replay).toBe('latencyMs');
        expect(error.best as number, replay).toBeCloseTo(
          Math.min(...accurate.map((q) => q.est)),
          6,
        );
      }
    }
    // The generator must exercise both outcomes, or the property says little.
    expect(placed).toBeGreaterThan(cases / 10);
    expect(placed).toBeLessThan(cases);
  });
});
