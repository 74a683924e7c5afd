import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadDigits } from '../../models/digits/data';

const dir = fileURLToPath(new URL('../../models/digits/', import.meta.url));

interface VariantMetrics {
  file: string;
  accuracy: number;
  latencyMs: number;
  params: number;
  bytes: number;
  weights: string;
}
const metrics = JSON.parse(readFileSync(`${dir}metrics.json`, 'utf8')) as {
  measured: string;
  variants: Record<string, VariantMetrics>;
};

const digits = loadDigits();
const { heldout } = digits;
const sessions = new Map<string, ort.InferenceSession>();
const accuracies = new Map<string, number>();

async function heldoutProbs(session: ort.InferenceSession): Promise<Float32Array> {
  const input = new ort.Tensor('float32', heldout.x, [heldout.n, 784]);
  const out = await session.run({ pixels: input });
  const probs = out.probs!;
  expect(probs.dims).toEqual([heldout.n, 10]);
  return probs.data as Float32Array;
}

describe('digits data', () => {
  it('splits 10,000 digits into 8,000 for training and 2,000 held out, 200 per class', () => {
    expect(digits.train.n + heldout.n).toBe(10_000);
    expect(heldout.n).toBe(2000);
    expect(heldout.x.length).toBe(2000 * 784);
    expect(digits.train.x.length).toBe(digits.train.n * 784);
    const perClass = new Array(10).fill(0);
    for (const y of heldout.y) perClass[y]++;
    expect(perClass).toEqual(new Array(10).fill(200));
    // Interleaved: held-out digit i is of class i % 10.
    expect(Array.from(heldout.y.subarray(0, 20))).toEqual(
      Array.from({ length: 20 }, (_, i) => i % 10),
    );
  });

  it('holds pixel values in [0, 1]', () => {
    let min = Infinity;
    let max = -Infinity;
    for (const v of heldout.x) {
      if (v < min) min = v;
      if (v > max) max = v;
    }
    expect(min).toBe(0);
    expect(max).toBe(1);
  });

  it('is deterministic and cached', () => {
    expect(loadDigits()).toBe(digits);
  });
});

describe('digits models', () => {
  const names = Object.keys(metrics.variants);

  beforeAll(async () => {
    for (const name of names) {
      const bytes = readFileSync(`${dir}${metrics.variants[name]!.file}`);
      sessions.set(name, await ort.InferenceSession.create(bytes, { intraOpNumThreads: 1 }));
    }
  });

  afterAll(async () => {
    for (const s of sessions.values()) await s.release();
  });

  it('lists small and large, trained, with their file sizes', () => {
    expect(names).toEqual(expect.arrayContaining(['small', 'large']));
    for (const name of names) {
      const v = metrics.variants[name]!;
      expect(v.weights).toBe('trained');
      expect(v.file).toBe(`${name}.onnx`);
      expect(readFileSync(`${dir}${v.file}`).length).toBe(v.bytes);
      expect(v.accuracy).toBeGreaterThan(0);
      expect(v.accuracy).toBeLessThanOrEqual(1);
      expect(v.latencyMs).toBeGreaterThan(0);
      expect(v.params).toBeGreaterThan(0);
    }
    expect(metrics.measured).toMatch(/2000 held-out digits/);
  });

  it('declares input pixels float32 [N,784] and output probs float32 [N,10]', () => {
    for (const session of sessions.values()) {
      expect(session.inputNames).toEqual(['pixels']);
      expect(session.outputNames).toEqual(['probs']);
      const [input] = session.inputMetadata;
      const [output] = session.outputMetadata;
      expect(input).toMatchObject({ name: 'pixels', isTensor: true, type: 'float32' });
      expect(output).toMatchObject({ name: 'probs', isTensor: true, type: 'float32' });
      if (!input?.isTensor || !output?.isTensor) throw new Error('not tensors');
      expect(input.shape).toEqual(['N', 784]);
      expect(output.shape).toEqual(['N', 10]);
    }
  });

  it('reaches the accuracy metrics.json records on the held-out digits, as probabilities', async () => {
    for (const [name, session] of sessions) {
      const probs = await heldoutProbs(session);
      let correct = 0;
      for (let r = 0; r < heldout.n; r++) {
        let sum = 0;
        let best = 0;
        for (let j = 0; j < 10; j++) {
          const p = probs[r * 10 + j]!;
          expect(p).toBeGreaterThanOrEqual(0);
          sum += p;
          if (p > probs[r * 10 + best]!) best = j;
        }
        expect(Math.abs(sum - 1)).toBeLessThan(1e-5);
        if (best === heldout.y[r]) correct++;
      }
      const accuracy = correct / heldout.n;
      accuracies.set(name, accuracy);
      expect(Math.abs(accuracy - metrics.variants[name]!.accuracy)).toBeLessThanOrEqual(0.002);
    }
  });

  it('has large more accurate than small', async () => {
    for (const name of ['small', 'large']) {
      if (accuracies.has(name)) continue;
      const probs = await heldoutProbs(sessions.get(name)!);
      let correct = 0;
      for (let r = 0; r < heldout.n; r++) {
        let best = 0;
        for (let j = 1; j < 10; j++) if (probs[r * 10 + j]! > probs[r * 10 + best]!) best = j;
        if (best === heldout.y[r]) correct++;
      }
      accuracies.set(name, correct / heldout.n);
    }
    expect(accuracies.get('large')).toBeGreaterThan(accuracies.get('small')!);
    expect(metrics.variants.large!.accuracy).toBeGreaterThan(metrics.variants.small!.accuracy);
  });

  it('answers a batch of one like the same digit inside a larger batch', async () => {
    for (const session of sessions.values()) {
      const one = heldout.x.subarray(784 * 7, 784 * 8);
      const out = await session.run({ pixels: new ort.Tensor('float32', one, [1, 784]) });
      const batch = await heldoutProbs(session);
      const single = out.probs!.data as Float32Array;
      for (let j = 0; j < 10; j++) expect(single[j]!).toBeCloseTo(batch[70 + j]!, 5);
    }
  });
});
