// The squeezenet sample app: the generated model (SqueezeNet 1.1, RANDOM weights) on
// onnxruntime-node, and its Logic in the real runtime (worker_threads) calling it.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { unpackBundle } from '../../core/manifest';
import { createRuntime, type Runtime } from '../../core/runtime';
import { memoryAppSource } from '../../core/sources';
import { onnxMetadata } from '../../models/onnx-writer';
import { ensureModel } from '../../models/squeezenet/generate';
import { CLASSES, MEAN, SEED, SIDE, STD, squeezenet } from '../../models/squeezenet/squeezenet';
import { nodePlatform } from '../../relay/platform';
import { buildLogics } from '../../scripts/build-logics';
import { packApp } from '../../scripts/pack-apps';
import { rgbaImage } from '../apps';

const metrics = JSON.parse(
  readFileSync(new URL('../../models/squeezenet/metrics.json', import.meta.url), 'utf8'),
) as { variants: { v11: { sha256: string; params: number; bytes: number; weights: string } } };

let model: ReturnType<typeof ensureModel>;
let session: ort.InferenceSession;

beforeAll(async () => {
  model = ensureModel();
  session = await ort.InferenceSession.create(model.bytes, { intraOpNumThreads: 1 });
}, 60_000);
afterAll(() => session?.release());

describe('the generated model', () => {
  it('is the model metrics.json describes: same seed, same bytes, labelled random', () => {
    expect(model.sha256).toBe(metrics.variants.v11.sha256);
    expect(model.bytes.length).toBe(metrics.variants.v11.bytes);
    expect(model.params).toBe(metrics.variants.v11.params);
    // torchvision's squeezenet1_1 has 1,235,496 parameters; so does this layout.
    expect(model.params).toBe(1_235_496);
    expect(metrics.variants.v11.weights).toBe('random');
    expect(onnxMetadata(model.bytes)).toMatchObject({ weights: 'random', seed: String(SEED) });
    expect(Buffer.from(squeezenet(SEED + 1).bytes).equals(Buffer.from(model.bytes))).toBe(false);
  });

  it('runs on onnxruntime-node: 1×3×224×224 in, a probability vector over 1,000 classes out', async () => {
    expect(session.inputNames).toEqual(['data']);
    expect(session.outputNames).toEqual(['probs']);
    // Two different inputs (a batch of 2): each row sums to 1, and the rows differ.
    const x = new Float32Array(2 * 3 * SIDE * SIDE);
    for (let i = 0; i < x.length; i++)
      x[i] = i < x.length / 2 ? Math.sin(i / 97) : Math.cos(i / 31);
    const out = await session.run({ data: new ort.Tensor('float32', x, [2, 3, SIDE, SIDE]) });
    const probs = out.probs!;
    expect(probs.dims).toEqual([2, CLASSES]);
    const p = probs.data as Float32Array;
    for (const row of [p.subarray(0, CLASSES), p.subarray(CLASSES)]) {
      let sum = 0;
      for (const v of row) {
        expect(v).toBeGreaterThanOrEqual(0);
        sum += v;
      }
      expect(sum).toBeCloseTo(1, 4);
      // He init keeps the activations alive: not a flat 1/1000 everywhere, not one-hot.
      const max = Math.max(...row);
      expect(max).toBeGreaterThan(2 / CLASSES);
      expect(max).toBeLessThan(0.999);
    }
    expect(p.subarray(0, CLASSES)).not.toEqual(p.subarray(CLASSES));
  });
});

describe('the squeezenet app in the runtime', () => {
  let node: Runtime;
  let outDir: string;
  beforeAll(async () => {
    await buildLogics({ only: ['squeezenet'] });
    outDir = mkdtempSync(join(tmpdir(), 'brume-squeezenet-'));
    const { outPath } = await packApp(
      fileURLToPath(new URL('../../logics/squeezenet/brume.json', import.meta.url)),
      join(outDir, 'squeezenet.brume'),
    );
    const bundle = await unpackBundle(new Uint8Array(readFileSync(outPath)));
    expect(bundle.manifest.services.model).toMatchObject({
      variants: { v11: { weights: 'random' } },
    });
    node = createRuntime(nodePlatform(memoryAppSource([bundle])));
    await node.refresh();
  }, 180_000);
  afterAll(() => {
    node?.close();
    if (outDir) rmSync(outDir, { recursive: true, force: true });
  });

  it("classify answers the model's top 5 for the Logic's own tensor", async () => {
    const input = { width: 320, height: 240, pixels: rgbaImage(320, 240) };
    const pre = (await node.call('squeezenet', 'classify', input, {}, { rpc: 'preprocess' }))
      .value as { data: Uint8Array };
    expect(pre.data.byteLength).toBe(3 * SIDE * SIDE * 4);
    const tensor = new Float32Array(pre.data.slice().buffer);
    // ImageNet normalization: 0 and 255 map to −mean/std and (1 − mean)/std, about [−2.1, 2.7].
    expect(tensor.reduce((a, b) => Math.min(a, b))).toBeGreaterThan(-2.2);
    expect(tensor.reduce((a, b) => Math.max(a, b))).toBeLessThan(2.7);
    const direct = await session.run({
      data: new ort.Tensor('float32', tensor, [1, 3, SIDE, SIDE]),
    });
    const p = direct.probs!.data as Float32Array;
    const expected = [...p.keys()].sort((a, b) => p[b]! - p[a]!).slice(0, 5);

    const r = await node.call('squeezenet', 'classify', input);
    const v = r.value as { top: { class: number; p: number }[]; variant: string; weights: string };
    expect(v.weights).toBe('random');
    expect(v.variant).toBe('v11');
    expect(v.top.map((t) => t.class)).toEqual(expected);
    for (const t of v.top) expect(t.p).toBeCloseTo(p[t.class]!, 5);
  }, 60_000);

  it('preprocess is a centre crop, bilinear resize and ImageNet normalization, planar RGB', async () => {
    const [width, height] = [300, 200];
    const pixels = rgbaImage(width, height);
    const pre = (
      await node.call(
        'squeezenet',
        'classify',
        { width, height, pixels },
        {},
        { rpc: 'preprocess' },
      )
    ).value as { data: Uint8Array };
    const got = new Float32Array(pre.data.slice().buffer);
    // The same rule, written out plainly: the centre square of 0.875 × the shorter side.
    const crop = Math.min(width, height) * 0.875;
    const step = crop / SIDE;
    const at = (x: number, y: number, c: number) => pixels[(y * width + x) * 4 + c]!;
    let worst = 0;
    for (let ty = 0; ty < SIDE; ty += 7) {
      for (let tx = 0; tx < SIDE; tx += 5) {
        const sy = (height - crop) / 2 + (ty + 0.5) * step - 0.5;
        const sx = (width - crop) / 2 + (tx + 0.5) * step - 0.5;
        const y0 = Math.min(Math.max(Math.floor(sy), 0), height - 1);
        const x0 = Math.min(Math.max(Math.floor(sx), 0), width - 1);
        const y1 = Math.min(y0 + 1, height - 1);
        const x1 = Math.min(x0 + 1, width - 1);
        const fy = Math.min(Math.max(sy - y0, 0), 1);
        const fx = Math.min(Math.max(sx - x0, 0), 1);
        for (let c = 0; c < 3; c++) {
          const top = at(x0, y0, c) * (1 - fx) + at(x1, y0, c) * fx;
          const bottom = at(x0, y1, c) * (1 - fx) + at(x1, y1, c) * fx;
          const v = (top * (1 - fy) + bottom * fy) / 255;
          const want = (v - MEAN[c]!) / STD[c]!;
          worst = Math.max(worst, Math.abs(got[c * SIDE * SIDE + ty * SIDE + tx]! - want));
        }
      }
    }
    expect(worst).toBeLessThan(1e-4);
  });

  it('refuses pixels that are not width × height × 4 bytes, naming the field', async () => {
    const input = { width: 10, height: 10, pixels: new Uint8Array(300) };
    await expect(node.call('squeezenet', 'classify', input)).rejects.toThrow(
      /input\.pixels: expected 400 bytes/,
    );
  });
});
