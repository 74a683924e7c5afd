// The executor end to end in Node: real worker_threads, the real Logic and model files,
// onnxruntime-node. The same core runs in tabs (tests/e2e).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BrumeError, UnavailableError } from '../../core/errors';
import type { Bundle } from '../../core/manifest';
import { createRuntime, type Runtime } from '../../core/runtime';
import { memoryAppSource } from '../../core/sources';
import { loadDigits } from '../../models/digits/data';
import { nodePlatform } from '../../relay/platform';
import { buildLogics } from '../../scripts/build-logics';
import { brokenApp, drawDigit, hopsApp, hostileApp } from '../apps';

let node: Runtime;
let apps: Bundle[];

beforeAll(async () => {
  await buildLogics();
  apps = [await hostileApp(), await brokenApp(), await hopsApp()];
  node = createRuntime(nodePlatform(memoryAppSource(apps)));
  await node.refresh();
}, 120_000);
afterAll(() => node?.close());

async function failure(p: Promise<unknown>): Promise<BrumeError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(BrumeError);
    return e as BrumeError;
  }
  throw new Error('expected the call to fail');
}

describe('runtime in Node', () => {
  it('classifies held-out digits drawn at another size, Logic → Model', async () => {
    const { heldout } = loadDigits();
    let right = 0;
    const n = 200;
    for (let i = 0; i < n; i++) {
      const pixels = drawDigit(heldout.x, i, { width: 70, height: 90, scale: 2, dx: 9, dy: 20 });
      const r = await node.call(
        'hops',
        'classify',
        { width: 70, height: 90, pixels },
        {},
        { pin: { model: 'large' } },
      );
      const v = r.value as { digit: number; confidence: number; variant: string };
      expect(v.variant).toBe('large');
      if (v.digit === heldout.y[i]) right++;
    }
    // The manifest figure is on 28×28 inputs; reframing a 2× drawing costs a little.
    expect(right / n).toBeGreaterThan(0.9);
  });

  it('follows Logic → Logic → Model with continuations', async () => {
    const { heldout } = loadDigits();
    const pixels = drawDigit(heldout.x, 3, { width: 28, height: 28, scale: 1, dx: 0, dy: 0 });
    const r = await node.call(
      'hops',
      'front',
      { width: 28, height: 28, pixels },
      { accuracy: 0.95 },
    );
    const v = r.value as { via: string; hops: number; result: { digit: number; variant: string } };
    expect(v.via).toBe('front');
    expect(v.result.variant).toBe('large');
    expect(r.trace.map((t) => `${t.kind}:${t.service}`)).toEqual([
      'model:model',
      'logic:classify',
      'logic:front',
    ]);
  });

  it('passes a QoS that no variant meets back as a typed error', async () => {
    const pixels = new Uint8Array(28 * 28).fill(255, 300, 400);
    const e = await failure(
      node.call('hops', 'classify', { width: 28, height: 28, pixels }, { accuracy: 0.999 }),
    );
    expect(e.code).toBe('E_QOS');
  });

  it('terminates a Logic that loops forever within twice its budget, and keeps serving', async () => {
    const t0 = performance.now();
    const e = await failure(node.call('hostile', 'loop', {}));
    const took = performance.now() - t0;
    expect(e.code).toBe('E_LOGIC_TIMEOUT');
    expect(took).toBeLessThan(2 * 500 + 1500); // budget 500 ms; the rest is worker start-up
    expect((await node.call('hostile', 'echo', { still: 'alive' })).value).toEqual({
      still: 'alive',
    });
    // The looping Logic's pool replaced its worker and answers (with a timeout) again.
    expect((await failure(node.call('hostile', 'loop', {}))).code).toBe('E_LOGIC_TIMEOUT');
  });

  it('stops a Logic at its memory limit', async () => {
    const e = await failure(node.call('hostile', 'hog', {}));
    expect(e.code).toBe('E_LOGIC_MEMORY');
    expect(e.message).toMatch(/4 MiB/);
    expect((await node.call('hostile', 'echo', [1, 2, 3])).value).toEqual([1, 2, 3]);
  });

  it('reports traps and application errors, then serves from a fresh instance', async () => {
    expect((await failure(node.call('hostile', 'echo', {}, {}, { rpc: 'trap' }))).code).toBe(
      'E_LOGIC_FAULT',
    );
    const app = await failure(node.call('hostile', 'echo', {}, {}, { rpc: 'fail' }));
    expect(app.code).toBe('E_APP');
    expect(app.message).toBe('deliberate failure');
    expect((await node.call('hostile', 'echo', 'ok')).value).toBe('ok');
  });

  it('refuses corrupt and non-conforming modules with clear errors', async () => {
    const corrupt = await failure(node.call('broken', 'logic', {}));
    expect(corrupt.code).toBe('E_LOGIC_LOAD');
    expect(corrupt.message).toMatch(/not valid WebAssembly/);
    const imports = await failure(node.call('broken', 'imports', {}));
    expect(imports.message).toMatch(/env\.fetch/);
    const ownmem = await failure(node.call('broken', 'ownmem', {}));
    expect(ownmem.message).toMatch(/its own memory/);
    const tensor = { type: 'float32', dims: [1, 784], data: new Float32Array(784) };
    const onnx = await failure(node.call('broken', 'model', { inputs: { pixels: tensor } }));
    expect(onnx.code).toBe('E_MODEL_LOAD');
    expect((await node.call('hostile', 'echo', 1)).value).toBe(1);
  });

  it('refuses a file that does not match its manifest hash', async () => {
    const hops = await hopsApp();
    const files = { ...hops.files, 'classify.wasm': hops.files['classify.wasm']!.slice() };
    files['classify.wasm'][100]! ^= 0xff;
    const tampered = createRuntime(
      nodePlatform(memoryAppSource([{ manifest: hops.manifest, files }])),
    );
    await tampered.refresh();
    const pixels = new Uint8Array(28 * 28).fill(255, 300, 400);
    const e = await failure(tampered.call('hops', 'classify', { width: 28, height: 28, pixels }));
    expect(e.code).toBe('E_INTEGRITY');
    expect(e.message).toMatch(/classify\.wasm/);
    tampered.close();
  });
});

describe('a Logic call the node cannot serve within the QoS', () => {
  it('goes to `remote`, and a request hops across nodes', async () => {
    // A small node (no room for the large model) and a big one; the small one's Logic calls
    // the model at accuracy 0.96, which only the big one can give.
    const hops: string[] = [];
    const big = createRuntime(nodePlatform(memoryAppSource(apps)));
    const small = createRuntime(nodePlatform(memoryAppSource(apps)), {
      maxModelBytes: 500_000,
      remote: async (app, service, rpc, input, qos) => {
        hops.push(`${app}/${service}`);
        return big.call(app, service, input, qos, rpc ? { rpc } : {});
      },
    });
    await small.refresh();
    await big.refresh();
    try {
      const { heldout } = loadDigits();
      const pixels = drawDigit(heldout.x, 0, { width: 28, height: 28, scale: 1, dx: 0, dy: 0 });
      const input = { width: 28, height: 28, pixels };
      const r = await small.call('hops', 'classify', input, { accuracy: 0.96 });
      expect(hops).toEqual(['hops/model']);
      expect((r.value as { variant: string }).variant).toBe('large');
      expect(r.trace.map((t) => `${t.service}:${t.rpc}`)).toEqual([
        'model:large',
        'classify:classify',
      ]);
      // What it can serve itself stays here.
      await small.call('hops', 'classify', input, { accuracy: 0.9 });
      expect(hops).toHaveLength(1);
    } finally {
      small.close();
      big.close();
    }
  });
});

describe('a transient failure to fetch a Logic', () => {
  it('is not kept: the next call fetches and compiles it again', async () => {
    const source = memoryAppSource(apps);
    let failNext = true;
    const flaky = {
      ...source,
      blob: async (sha256: string) => {
        if (failNext) {
          failNext = false;
          throw new UnavailableError('the relay is restarting');
        }
        return source.blob(sha256);
      },
    };
    const runtime = createRuntime(nodePlatform(flaky));
    try {
      await runtime.refresh();
      const first = await failure(runtime.call('hostile', 'echo', 'hi', {}, { rpc: 'echo' }));
      expect(first.code).toBe('E_UNAVAILABLE');
      expect((await runtime.call('hostile', 'echo', 'hi', {}, { rpc: 'echo' })).value).toBe('hi');
    } finally {
      runtime.close();
    }
  });
});
