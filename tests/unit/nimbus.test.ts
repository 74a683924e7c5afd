// placeSession (core/session/nimbus.ts): each step of Nimbus on small hand-built fabrics, then
// seeded random fabrics against a brute-force oracle written from the seed's formulas. The
// property runs BRUME_CASES fabrics (default 3,000) from a fixed seed base; a failure names its
// seed, and `BRUME_SEED=<seed> npx vitest run tests/unit/nimbus.test.ts` replays that one.
import { describe, expect, it } from 'vitest';
import { InputError } from '../../core/errors';
import { transferMs } from '../../core/session/energy';
import {
  CLOUD_EXEC_MS,
  estimate,
  type NimbusChoice,
  type NimbusDevice,
  type NimbusNode,
  type NimbusOptions,
  placeSession,
  queueMs,
  sessionOf,
} from '../../core/session/nimbus';
import { mulberry32 } from '../../models/digits/mlp';

/** A phone at 15 FPS (ε_t 66.7 ms) with the OnePlus 5T's local MobileNetV2, on Wi-Fi. */
const device = (over: Partial<NimbusDevice> = {}): NimbusDevice => ({
  frameBytes: 33_000,
  fps: 15,
  localMs: 154,
  localEnergyMj: 182,
  radioMjPerMs: 1.21,
  ...over,
});
const node = (id: string, over: Partial<NimbusNode> = {}): NimbusNode => ({
  id,
  role: 'fog',
  rttMs: 5,
  bandwidthMbps: 1000,
  execMs: 5,
  queue: { m: 2, b: 1 },
  sessions: [],
  ...over,
});
/** `n` sessions that nothing will break (a wide budget). */
const relaxed = (n: number) =>
  Array.from({ length: n }, () => ({ latencyBudgetMs: 1e6, netMs: 1 }));

describe('energy and latency model', () => {
  it('Lt = d/BW + RTT, L = Lt + exec + q(n+1), B = Lt · w', () => {
    const e = estimate(device(), node('a'));
    expect(transferMs(33_000, 1000)).toBeCloseTo(0.264, 9);
    expect(e.netMs).toBeCloseTo(5.264, 9);
    expect(e.latencyMs).toBeCloseTo(5.264 + 5 + (2 * 1 + 1), 9);
    expect(e.energyMj).toBeCloseTo(5.264 * 1.21, 9);
  });
  it("shares the node's bandwidth among its sessions and the new one, and queues it last", () => {
    const e = estimate(device(), node('a', { sessions: relaxed(2) }));
    expect(e.netMs).toBeCloseTo(5 + 0.264 * 3, 9);
    expect(e.latencyMs).toBeCloseTo(5 + 0.264 * 3 + 5 + (2 * 3 + 1), 9);
  });
  it('a fitted queue never goes below zero', () => {
    expect(queueMs(node('a', { queue: { m: 1, b: -5 } }), 2)).toBe(0);
  });
  it('records the placed session with its budget and network part', () => {
    const c = placeSession(device({ fps: 20 }), [node('a')]);
    expect(sessionOf(device({ fps: 20 }), c)).toEqual({ latencyBudgetMs: 50, netMs: c.netMs });
  });
});

describe('placeSession: the steps', () => {
  it('1. drops nodes whose RTT is at or beyond the frame budget', () => {
    const c = placeSession(device({ fps: 20 }), [
      node('far', { rttMs: 50, execMs: 0, queue: { m: 0, b: 0 } }),
      node('near', { rttMs: 20 }),
    ]);
    expect(c).toMatchObject({ node: 'near', via: 'edge' });
    expect(c.counts).toMatchObject({ beyondRtt: 1, fitting: 1 });
  });

  it('2. refuses a node whose session of least slack would break with one more client', () => {
    // q(3) = 30: A (20 + 5 + 30 ≤ 100) still fits, B (10 + 5 + 30 > 30) would not.
    const sessions = [
      { latencyBudgetMs: 100, netMs: 20 },
      { latencyBudgetMs: 30, netMs: 10 },
    ];
    const busy = node('busy', { queue: { m: 10, b: 0 }, sessions });
    const c = placeSession(device(), [busy]);
    expect(c).toMatchObject({ node: null, via: 'local' });
    expect(c.counts.full).toBe(1);
    expect(c.reason).toContain('1 full');
    // The new device alone would fit there: greedy, with no look-ahead, takes it.
    expect(placeSession(device(), [busy], { variant: 'greedy' }).node).toBe('busy');
    // Exactly at its budget is still within it.
    const edge = [
      { latencyBudgetMs: 100, netMs: 20 },
      { latencyBudgetMs: 45, netMs: 10 },
    ];
    expect(placeSession(device(), [{ ...busy, sessions: edge }]).node).toBe('busy');
  });

  it('2. samples κ candidates with the injected random, after the look-ahead', () => {
    const nodes = [
      node('a', { execMs: 20 }),
      node('full', { queue: { m: 40, b: 0 }, sessions: [{ latencyBudgetMs: 66, netMs: 1 }] }),
      node('b', { execMs: 10 }),
      node('c', { execMs: 1 }),
    ];
    const first = placeSession(device(), nodes, { kappa: 1, random: () => 0 });
    expect(first.node).toBe('a');
    expect(first.counts).toMatchObject({ full: 1, sampledOut: 2, fitting: 1 });
    expect(placeSession(device(), nodes, { kappa: 1, random: () => 0.999 }).node).toBe('c');
    expect(placeSession(device(), nodes, { kappa: 5, random: () => 0 }).node).toBe('c');
    expect(placeSession(device(), nodes, { kappa: 1, variant: 'greedy' }).node).toBe('c');
    // Uniform: with κ = 1 each of the three that pass the look-ahead is chosen about a third of the time.
    const random = mulberry32(3);
    const chosen: Record<string, number> = {};
    for (let i = 0; i < 3000; i++) {
      const id = placeSession(device(), nodes, { kappa: 1, random }).node!;
      chosen[id] = (chosen[id] ?? 0) + 1;
    }
    expect(Object.keys(chosen).sort()).toEqual(['a', 'b', 'c']);
    for (const n of Object.values(chosen)) expect(Math.abs(n - 1000)).toBeLessThan(150);
    // A random outside [0, 1) still samples a candidate.
    for (const bad of [1, 7, -1, Number.NaN])
      expect(['a', 'b', 'c']).toContain(
        placeSession(device(), nodes, { kappa: 2, random: () => bad }).node,
      );
  });

  it('3. trades latency for load: Nimbus spreads, greedy takes the fastest', () => {
    // fast: L ≈ 41.2 ms with 30 of its 66.7 sessions; idle: L ≈ 46.3 ms with none.
    const fast = node('fast', {
      rttMs: 1,
      execMs: 1,
      queue: { m: 1, b: 0 },
      sessions: relaxed(30),
    });
    const idle = node('idle', { rttMs: 20, execMs: 25, queue: { m: 1, b: 0 } });
    const n = placeSession(device(), [fast, idle]);
    const g = placeSession(device(), [fast, idle], { variant: 'greedy' });
    expect(n.node).toBe('idle');
    expect(g.node).toBe('fast');
    expect(g.latencyMs).toBeLessThan(n.latencyMs);
    expect(n.score).toBeCloseTo((0.7 * n.latencyMs) / (1000 / 15), 9);
    // With β = 0 Nimbus is greedy in its choice.
    expect(placeSession(device(), [fast, idle], { beta: 0 }).node).toBe('fast');
  });

  it('3. drops a node whose upload costs the energy of running locally, unless charging', () => {
    const far = node('far', { rttMs: 45 }); // L ≈ 53.3 ms, B ≈ 54.8 mJ
    const d = device({ localEnergyMj: 50 });
    const c = placeSession(d, [far]);
    expect(c).toMatchObject({ node: null, via: 'local', latencyMs: 154, energyMj: 50 });
    expect(c.counts.overEnergy).toBe(1);
    expect(placeSession({ ...d, charging: true }, [far])).toMatchObject({
      node: 'far',
      energyBudgetMj: Number.POSITIVE_INFINITY,
    });
    expect(placeSession({ ...d, energyBudgetMj: 60 }, [far]).node).toBe('far');
  });

  it('3. drops a node too slow for the frame budget', () => {
    const c = placeSession(device(), [node('slow', { execMs: 70 })]);
    expect(c.counts).toMatchObject({ overLatency: 1, fitting: 0 });
    expect(c.node).toBeNull();
  });

  it('prefers a node on mains to an equal one on battery, not to a much faster one', () => {
    const mains = node('mains');
    const battery = node('battery', { onBattery: true });
    expect(placeSession(device(), [battery, mains]).node).toBe('mains');
    const quick = node('quick', { onBattery: true, rttMs: 1, execMs: 1 });
    const slow = node('slow', { rttMs: 30, execMs: 20 });
    expect(placeSession(device(), [slow, quick]).node).toBe('quick');
    // γ = 0: battery ignored, the tie goes to the id.
    expect(placeSession(device(), [mains, battery], { gamma: 0 }).node).toBe('battery');
  });

  it('4. fails over to the nearest cloud that fits; clouds are never Core candidates', () => {
    const cloud = (id: string, rttMs: number) =>
      node(id, {
        role: 'cloud',
        rttMs,
        execMs: CLOUD_EXEC_MS,
        queue: { m: 0, b: 0 },
        bandwidthMbps: 300,
      });
    const slowEdge = node('edge', { execMs: 100 });
    const c = placeSession(device(), [slowEdge, cloud('c40', 40), cloud('c20', 20)]);
    expect(c).toMatchObject({ node: 'c20', via: 'cloud' });
    expect(c.latencyMs).toBeCloseTo(20 + 0.88 + 5, 9);
    // A fitting edge node wins over a nearer cloud.
    const edge = node('edge', { rttMs: 10, execMs: 20 });
    expect(placeSession(device(), [cloud('c1', 1), edge]).node).toBe('edge');
    // The nearest cloud over the energy budget: local, with the reason.
    const local = placeSession(device({ localEnergyMj: 10 }), [slowEdge, cloud('c20', 20)]);
    expect(local).toMatchObject({ node: null, via: 'local' });
    expect(local.reason).toMatch(/cloud c20 needs/);
    expect(placeSession(device(), []).reason).toMatch(/no cloud within RTT/);
  });

  it('skips nodes with figures it cannot compute with, and never chooses them', () => {
    const bad = [
      node('nan', { rttMs: Number.NaN, execMs: 0 }),
      node('neg', { bandwidthMbps: -1 }),
      node('zero', { bandwidthMbps: 0 }),
      node('inf', { execMs: Number.POSITIVE_INFINITY }),
      node('sess', { sessions: [{ latencyBudgetMs: Number.NaN, netMs: 0 }] }),
      { ...node('noqueue'), queue: undefined } as unknown as NimbusNode,
    ];
    const c = placeSession(device(), [...bad, node('ok', { execMs: 40 })]);
    expect(c.node).toBe('ok');
    expect(c.counts.invalid).toBe(bad.length);
  });

  it('refuses device figures that are not usable numbers, naming the field', () => {
    for (const [field, value] of [
      ['fps', 0],
      ['fps', Number.NaN],
      ['frameBytes', -1],
      ['localEnergyMj', Number.POSITIVE_INFINITY],
      ['latencyBudgetMs', 0],
      ['radioMjPerMs', '1'],
    ] as const) {
      const d = { ...device(), [field]: value } as NimbusDevice;
      expect(() => placeSession(d, [node('a')])).toThrow(InputError);
      expect(() => placeSession(d, [node('a')])).toThrow(field);
    }
    expect(() => placeSession(device(), [], { kappa: 1.5 })).toThrow(/kappa/);
    expect(() => placeSession(device(), [], { alpha: Number.NaN })).toThrow(/alpha/);
    expect(() => placeSession(device(), [], { beta: -1 })).toThrow(/beta/);
    expect(() => placeSession(device(), [], { gamma: Number.POSITIVE_INFINITY })).toThrow(/gamma/);
  });
});

describe('placeSession: sessions placed one by one', () => {
  it('with the look-ahead, every placed session stays within its budget as nodes fill', () => {
    const random = mulberry32(7);
    const nodes = [
      node('t1', { queue: { m: 15, b: 1 }, execMs: 12, bandwidthMbps: 300 }),
      node('t2', { queue: { m: 4, b: 1 }, execMs: 4, rttMs: 8 }),
      node('cloud', { role: 'cloud', rttMs: 30, execMs: 5, queue: { m: 0, b: 0 } }),
    ];
    let broken = 0;
    for (const variant of ['nimbus', 'greedy'] as const) {
      const fabric = nodes.map((n) => ({ ...n, sessions: [] as NimbusNode['sessions'] }));
      for (let i = 0; i < 40; i++) {
        const d = device({ fps: 12 + random() * 6 });
        const c = placeSession(d, fabric, { variant });
        const placed = fabric.find((n) => n.id === c.node);
        if (placed && placed.role !== 'cloud') placed.sessions.push(sessionOf(d, c));
      }
      const over = fabric.flatMap((n) =>
        n.sessions.filter(
          (s) => s.netMs + n.execMs + queueMs(n, n.sessions.length) > s.latencyBudgetMs,
        ),
      );
      if (variant === 'nimbus') expect(over).toEqual([]);
      else broken = over.length;
      expect(fabric[0]!.sessions.length + fabric[1]!.sessions.length).toBeGreaterThan(4);
    }
    // Without the look-ahead the same arrivals overfill a node: the test can tell them apart.
    expect(broken).toBeGreaterThan(0);
  });
});

// ---- the oracle: the seed's formulas written out again, over every node ----
interface Case {
  device: NimbusDevice;
  nodes: NimbusNode[];
  options: NimbusOptions;
}
function randomCase(seed: number): Case {
  const r = mulberry32(seed);
  const pick = <T>(xs: readonly T[]) => xs[Math.floor(r() * xs.length)]!;
  const device: NimbusDevice = {
    frameBytes: Math.round(1000 + r() * 200_000),
    fps: 5 + r() * 55,
    localMs: 50 + r() * 200,
    localEnergyMj: 20 + r() * 400,
    radioMjPerMs: pick([1.21, 2.5]),
    ...(r() < 0.2 && { charging: true }),
    ...(r() < 0.2 && { energyBudgetMj: r() * 300 }),
    ...(r() < 0.2 && { latencyBudgetMs: 10 + r() * 150 }),
  };
  const nodes: NimbusNode[] = [];
  const count = Math.floor(r() * 13);
  for (let i = 0; i < count; i++) {
    const sessions = Array.from({ length: Math.floor(r() * 10) }, () => ({
      latencyBudgetMs: 20 + r() * 180,
      netMs: r() * 50,
    }));
    nodes.push({
      id: `n${i}`,
      role: pick(['dew', 'fog', 'fog', 'cloud'] as const),
      rttMs: r() * 80,
      bandwidthMbps: 10 + r() * 5000,
      execMs: r() * 40,
      queue: { m: r() < 0.15 ? 0 : r() * 5, b: -2 + r() * 12 },
      sessions,
      ...(r() < 0.3 && { onBattery: true }),
    });
  }
  const options: NimbusOptions = r() < 0.3 ? { variant: 'greedy' } : {};
  return { device, nodes, options };
}

function oracle({ device: d, nodes, options }: Case) {
  const greedy = options.variant === 'greedy';
  const [alpha, beta] = greedy ? [1, 0] : [0.7, 0.3];
  const epsT = d.latencyBudgetMs ?? 1000 / d.fps;
  const epsB = d.charging ? Number.POSITIVE_INFINITY : (d.energyBudgetMj ?? d.localEnergyMj);
  const q = (n: NimbusNode, k: number) => Math.max(0, n.queue.m * k + n.queue.b);
  const figures = (n: NimbusNode) => {
    const k = n.sessions.length;
    const net = (d.frameBytes * 8 * (k + 1)) / (n.bandwidthMbps * 1000) + n.rttMs;
    const L = net + n.execMs + q(n, k + 1);
    return {
      k,
      L,
      B: net * d.radioMjPerMs,
      fits: n.rttMs < epsT && L < epsT && net * d.radioMjPerMs < epsB,
    };
  };
  const scored = nodes
    .filter((n) => n.role !== 'cloud')
    .filter(
      (n) =>
        greedy ||
        n.sessions.every(
          (s) => s.netMs + n.execMs + q(n, n.sessions.length + 1) <= s.latencyBudgetMs,
        ),
    )
    .map((n) => ({ n, ...figures(n) }))
    .filter((x) => x.fits)
    .map((x) => ({
      ...x,
      score:
        (alpha * x.L) / epsT +
        (beta > 0 && x.k > 0 ? (beta * x.k * x.n.queue.m) / (epsT - x.n.queue.b) : 0) +
        (x.n.onBattery ? 0.2 : 0),
    }));
  const clouds = nodes.filter((n) => n.role === 'cloud' && n.rttMs < epsT);
  const nearest = Math.min(...clouds.map((c) => c.rttMs));
  return { scored, clouds: clouds.filter((c) => c.rttMs === nearest), fits: figures };
}

function check(seed: number): NimbusChoice['via'] {
  const replay = `seed ${seed} (replay: BRUME_SEED=${seed} npx vitest run tests/unit/nimbus.test.ts)`;
  const c = randomCase(seed);
  const choice = placeSession(c.device, c.nodes, c.options);
  const o = oracle(c);
  if (o.scored.length > 0) {
    const min = Math.min(...o.scored.map((x) => x.score));
    const chosen = o.scored.find((x) => x.n.id === choice.node);
    expect(choice.via, replay).toBe('edge');
    expect(chosen, `${replay}: chose ${choice.node}, which does not meet both`).toBeDefined();
    expect(chosen!.score, replay).toBeCloseTo(min, 9);
    expect(choice.score, replay).toBeCloseTo(min, 9);
    expect(choice.latencyMs, replay).toBeCloseTo(chosen!.L, 9);
    expect(choice.energyMj, replay).toBeCloseTo(chosen!.B, 9);
  } else if (o.clouds.length > 0 && o.fits(o.clouds[0]!).fits) {
    expect(choice.via, replay).toBe('cloud');
    expect(
      o.clouds.map((x) => x.id),
      replay,
    ).toContain(choice.node);
  } else {
    expect(choice, replay).toMatchObject({ via: 'local', node: null });
  }
  return choice.via;
}

describe('placeSession against a brute-force oracle', () => {
  const replaying = process.env.BRUME_SEED !== undefined;
  const base = Number(process.env.BRUME_SEED ?? 20261202);
  const cases = Number(process.env.BRUME_CASES ?? (replaying ? 1 : 3000));
  it(`chooses a least-score node meeting both constraints, in ${cases} random fabrics`, () => {
    const via = { edge: 0, cloud: 0, local: 0 };
    for (let i = 0; i < cases; i++) {
      via[check(base + i)]++;
    }
    // The fabrics exercise every outcome, or the property proves little.
    if (!replaying) for (const n of Object.values(via)) expect(n).toBeGreaterThan(cases / 50);
  });
});
