// route(): the one placement rule over a manifest (which model a Logic depends on, the rpc, the
// pin), and a node's own plan agreeing with the relay's placement of that node, before and after
// it has measured itself. The rule against a brute-force oracle is in placement.test.ts.
import { describe, expect, it } from 'vitest';
import { NotFoundError, QosError, UnavailableError } from '../../core/errors';
import { buildManifest, type Manifest, type ManifestDraft } from '../../core/manifest';
import { modelOf, type NodeView, type Route, route, statsKey } from '../../core/placement';
import { createRuntime, type Platform, type Runtime } from '../../core/runtime';
import type { Qos } from '../../core/scheduler';
import { memoryAppSource } from '../../core/sources';
import { id, node } from '../node-view';

const io = {
  inputs: [{ name: 'pixels', type: 'float32' as const, dims: [-1, 784] }],
  outputs: [{ name: 'probs', type: 'float32' as const, dims: [-1, 10] }],
};
const variant = (file: string, accuracy: number, latencyMs: number) => ({
  file,
  accuracy,
  latencyMs,
  params: 1,
  weights: 'trained' as const,
  measured: 'test fixture',
});
const model = { kind: 'model' as const, task: 'digits', ...io };
const files = {
  'classify.wasm': new Uint8Array(8),
  'small.onnx': new Uint8Array(100),
  'large.onnx': new Uint8Array(1000),
  'tiny.onnx': new Uint8Array(10),
};

/** digits: a Logic `classify` (with `logic` merged in), `model` (small, large), and `extra`. */
function app(logic: object = {}, extra: ManifestDraft['services'] = {}): Promise<Manifest> {
  return buildManifest(
    {
      brume: 1,
      name: 'digits',
      version: '1.0.0',
      services: {
        classify: { kind: 'logic', file: 'classify.wasm', rpcs: ['classify', 'prep'], ...logic },
        model: {
          ...model,
          variants: {
            small: variant('small.onnx', 0.94, 0.5),
            large: variant('large.onnx', 0.97, 3),
          },
        },
        ...extra,
      },
    },
    files,
  );
}
const other = { other: { ...model, variants: { tiny: variant('tiny.onnx', 0.5, 0.1) } } };

describe('modelOf: the model a Logic depends on', () => {
  it('is the first declared, else the only model service, else none', async () => {
    expect(modelOf(await app({ models: ['other', 'model'] }, other), 'classify')).toBe('other');
    expect(modelOf(await app(), 'classify')).toBe('model');
    expect(modelOf(await app({}, other), 'classify')).toBeUndefined(); // two: none assumed
    expect(modelOf(await app({ models: [] }), 'classify')).toBeUndefined();
    expect(modelOf(await app({}, other), 'other')).toBe('other'); // a model is its own
    expect(modelOf(await app(), 'nope')).toBeUndefined();
  });
});

describe('route', () => {
  const caller = id(1);
  const at = (m: Manifest, service: string, over: Partial<Parameters<typeof route>[2]> = {}) =>
    route(m, [node(1), node(2, { rttMs: 5 })], { service, qos: {}, caller, ...over });

  it('runs a Logic’s rpc and pins the variant of the model it depends on; a model’s rpc is its variant', async () => {
    const m = await app();
    expect(at(m, 'classify')).toMatchObject({
      node: caller,
      rpc: 'classify',
      pin: { model: 'large' },
      variant: 'large',
      estimateMs: 3,
    });
    expect(at(m, 'classify', { rpc: 'prep' })).toMatchObject({ rpc: 'prep', variant: 'large' });
    // A model service called directly: its rpc names the variant (none: placement picks one).
    const direct = at(m, 'model');
    expect(direct).toMatchObject({ rpc: 'large', variant: 'large' });
    expect(direct.pin).toBeUndefined();
    expect(at(m, 'model', { rpc: 'small' })).toMatchObject({ rpc: 'small', variant: 'small' });
    expect(() => at(m, 'model', { rpc: 'huge' })).toThrow(/no variant "huge" \(it has: /);
  });

  it('judges a Logic by the model it declares, not by the first in the manifest', async () => {
    const m = await app({ models: ['other'] }, other);
    expect(at(m, 'classify')).toMatchObject({ variant: 'tiny', pin: { other: 'tiny' } });
    expect(qosOf(() => at(m, 'classify', { qos: { accuracy: 0.9 } }))).toMatchObject({
      constraint: 'accuracy',
      best: 0.5,
    });
    // None declared among two models: the Logic alone, 1 ms until measured, accuracy 1.
    const alone = at(await app({}, other), 'classify');
    expect(alone).toMatchObject({ rpc: 'classify', variant: '', estimateMs: 1 });
    expect(alone.pin).toBeUndefined();
  });

  it('keeps to one variant and to trusted nodes when asked, and names an unknown service', async () => {
    const m = await app();
    expect(at(m, 'classify', { variant: 'small' })).toMatchObject({ pin: { model: 'small' } });
    expect(() => at(m, 'classify', { trustedOnly: true })).toThrow(UnavailableError);
    expect(at(m, 'classify', { exclude: [caller] }).node).toBe(id(2));
    expect(() => at(m, 'nope')).toThrow(NotFoundError);
    expect(() => at(m, 'nope')).toThrow('no service "nope" in app "digits"');
    expect(() => at(m, 'constructor')).toThrow(NotFoundError);
  });
});

function qosOf(f: () => unknown): QosError {
  try {
    f();
  } catch (e) {
    if (e instanceof QosError) return e;
    throw e;
  }
  throw new Error('expected a QosError');
}

// ——— A node's plan and the relay's placement of that node: the same rule, the same figures. ———

/** A node with no Logic workers and no models loaded: plan() needs neither. */
function runtime(manifest: Manifest): Runtime {
  const platform: Platform = {
    source: memoryAppSource([]),
    spawnLogicWorker: () => {
      throw new Error('no Logic runs in this test');
    },
    models: {
      backends: async () => [{ name: 'cpu', detail: 'test' }],
      load: () => Promise.reject(new Error('no model loads in this test')),
      run: () => Promise.reject(new Error('no model runs in this test')),
      unload: async () => {},
    },
    backendOrder: ['cpu'],
  };
  const rt = createRuntime(platform, { id: id(7), maxModelBytes: 10_000 });
  rt.install(manifest);
  return rt;
}

/** What the relay knows of `rt` from its heartbeat (core/fabric.ts sendBeat) and its caps. */
function asTheRelaySeesIt(rt: Runtime, load = { queue: 0, maxConcurrency: 1 }): NodeView {
  const stats: NodeView['stats'] = {};
  for (const [k, v] of Object.entries(rt.stats.all())) stats[k] = { count: v.count, p50: v.p50 };
  return node(7, { rttMs: 12, backends: ['cpu'], stats, models: rt.runnable(), ...load });
}

async function agree(rt: Runtime, m: Manifest, service: string, qos: Qos, load?: NodeView) {
  const view = load ?? asTheRelaySeesIt(rt);
  const ask = { service, qos, caller: rt.id };
  let relay: Route | QosError;
  try {
    relay = route(m, [view, node(8, { online: false })], ask);
  } catch (e) {
    relay = e as QosError;
  }
  const now = { queue: view.queue, maxConcurrency: view.maxConcurrency };
  const local = await rt.plan('digits', service, qos, undefined, now).catch((e: unknown) => e);
  if (relay instanceof QosError) {
    expect(local).toBeInstanceOf(QosError);
    const e = local as QosError;
    expect({ constraint: e.constraint, best: e.best }).toEqual({
      constraint: relay.constraint,
      best: relay.best,
    });
    return relay;
  }
  const { node: _, ...plan } = relay;
  expect(local).toEqual(plan);
  return relay;
}

describe('a node’s plan and the relay’s placement of that node agree', () => {
  const asks: Qos[] = [
    {},
    { accuracy: 0.95 },
    { latencyMs: 1 },
    { latencyMs: 0.1 },
    { accuracy: 0.99 },
    { accuracy: 0.95, latencyMs: 2 },
  ];

  it('before any measurement: the manifest’s figures × the same backend prior', async () => {
    const m = await app();
    const rt = runtime(m);
    for (const qos of [...asks, { privacy: 'device' }]) {
      await agree(rt, m, 'classify', qos);
      await agree(rt, m, 'model', qos);
    }
    const r = (await agree(rt, m, 'model', {})) as Route;
    expect(r).toMatchObject({ variant: 'large', estimateMs: 3 * 0.6 }); // cpu prior
    expect((await agree(rt, m, 'model', { latencyMs: 1 })) as Route).toMatchObject({
      variant: 'small',
    });
  });

  it('after measurements: the node’s own figures, once there are three, on both sides', async () => {
    const m = await app();
    const rt = runtime(m);
    const record = (key: string, ms: number, times: number) => {
      for (let i = 0; i < times; i++) rt.stats.record(key, ms);
    };
    record(statsKey('digits', 'model', 'large', 'cpu'), 0.5, 2); // two: not yet
    expect(((await agree(rt, m, 'model', { latencyMs: 1 })) as Route).variant).toBe('small');
    record(statsKey('digits', 'model', 'large', 'cpu'), 0.5, 1);
    record(statsKey('digits', 'classify', 'classify', 'logic'), 0.25, 3);
    for (const qos of asks) {
      await agree(rt, m, 'classify', qos);
      await agree(rt, m, 'model', qos);
    }
    const r = (await agree(rt, m, 'classify', { latencyMs: 1 })) as Route;
    expect(r).toMatchObject({ variant: 'large', estimateMs: 0.75 });
    // Busy: each request ahead costs one execution per slot, on both sides.
    const busy = asTheRelaySeesIt(rt, { queue: 3, maxConcurrency: 2 });
    const queued = (await agree(rt, m, 'classify', {}, busy)) as Route;
    expect(queued.estimateMs).toBeCloseTo(0.75 * 2.5);
  });

  it('on a Logic that depends on no model, and on variants the node cannot hold', async () => {
    const m = await app({ models: [] });
    const rt = runtime(m);
    expect(((await agree(rt, m, 'classify', {})) as Route).variant).toBe('');
    const big = await app(
      {},
      { model: { ...model, variants: { huge: variant('tiny.onnx', 1, 1) } } },
    );
    const bigFiles = {
      ...big,
      files: { ...big.files, 'tiny.onnx': { ...big.files['tiny.onnx']!, size: 1e6 } },
    };
    const small = runtime(bigFiles);
    expect(await agree(small, bigFiles, 'classify', {})).toMatchObject({ constraint: 'accuracy' });
  });
});
