// The committed early-exit parts (models/digits-ee/{dew,fog,cloud}.onnx) in onnxruntime-node:
// their contract with the digits-ee app, and the figures metrics.json records for them.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadDigits } from '../../models/digits/data';
import {
  type ExitOutputs,
  type ExitSetting,
  exitSignal,
  exitTaken,
  runCascade,
} from '../../models/digits-ee/cascade';
import { onnxMetadata } from '../../models/onnx-writer';

const dir = fileURLToPath(new URL('../../models/digits-ee/', import.meta.url));
const PARTS = ['dew', 'fog', 'cloud'] as const;
/** Largest difference allowed between an accuracy measured here and metrics.json's. */
const TOLERANCE = 0.002;

interface Summary {
  accuracy: number;
  shares: number[];
  bytesUp: number;
}
const metrics = JSON.parse(readFileSync(`${dir}metrics.json`, 'utf8')) as {
  measured: string;
  featureWidths: number[];
  exitAccuracy: number[];
  baseline: { accuracy: number; bytesUp: number };
  defaultRule: 'entropy' | 'top';
  defaults: Record<string, { dew: ExitSetting; fog: ExitSetting; all: Summary }>;
  sweep: ({ rule: 'entropy' | 'top'; threshold: number } & Summary)[];
  variants: Record<string, { bytes: number; weights: string; accuracy: number; params: number }>;
};

const { heldout } = loadDigits();
const sessions = {} as Record<(typeof PARTS)[number], ort.InferenceSession>;
let exits: ExitOutputs;

const tensor = (data: Float32Array, rows: number) =>
  new ort.Tensor('float32', data, [rows, data.length / rows]);

beforeAll(async () => {
  for (const p of PARTS) {
    sessions[p] = await ort.InferenceSession.create(readFileSync(`${dir}${p}.onnx`), {
      intraOpNumThreads: 1,
    });
  }
  // dew → fog → cloud on every held-out digit, written out here rather than through parts.ts.
  const n = heldout.n;
  const dew = await sessions.dew.run({ pixels: tensor(heldout.x, n) });
  const fog = await sessions.fog.run({ features: dew.features! });
  const cloud = await sessions.cloud.run({ features: fog.features_out! });
  exits = {
    probs: [dew.probs!, fog.probs!, cloud.probs!].map((t) => t.data as Float32Array),
    labels: heldout.y,
    n,
    upBytes: [dew.features!, fog.features_out!].map((t) => Number(t.dims[1]) * 4),
  };
});

afterAll(async () => {
  for (const p of PARTS) await sessions[p]?.release();
});

function accuracy(probs: Float32Array): number {
  let right = 0;
  for (let r = 0; r < heldout.n; r++) if (exitSignal(probs, r * 10).digit === heldout.y[r]) right++;
  return right / heldout.n;
}

describe('digits-ee parts', () => {
  it('declare the inputs and outputs the digits-ee app is written against', () => {
    const [f1, f2] = metrics.featureWidths as [number, number];
    const shape = (s: ort.InferenceSession, io: 'inputMetadata' | 'outputMetadata') =>
      s[io].map((m) => (m.isTensor ? [m.name, m.type, m.shape] : [m.name]));
    expect(shape(sessions.dew, 'inputMetadata')).toEqual([['pixels', 'float32', ['N', 784]]]);
    expect(shape(sessions.dew, 'outputMetadata')).toEqual([
      ['features', 'float32', ['N', f1]],
      ['probs', 'float32', ['N', 10]],
    ]);
    expect(shape(sessions.fog, 'inputMetadata')).toEqual([['features', 'float32', ['N', f1]]]);
    expect(shape(sessions.fog, 'outputMetadata')).toEqual([
      ['features_out', 'float32', ['N', f2]],
      ['probs', 'float32', ['N', 10]],
    ]);
    expect(shape(sessions.cloud, 'inputMetadata')).toEqual([['features', 'float32', ['N', f2]]]);
    expect(shape(sessions.cloud, 'outputMetadata')).toEqual([['probs', 'float32', ['N', 10]]]);
    // Features sent up are far smaller than the digit itself.
    for (const f of [f1, f2]) {
      expect(f).toBeGreaterThan(0);
      expect(f).toBeLessThanOrEqual(64);
    }
  });

  it('are trained parts whose files match metrics.json and name their part', () => {
    for (const p of PARTS) {
      const bytes = readFileSync(`${dir}${p}.onnx`);
      const v = metrics.variants[p]!;
      expect(bytes.length).toBe(v.bytes);
      expect(v.weights).toBe('trained');
      expect(v.accuracy).toBe(metrics.exitAccuracy[PARTS.indexOf(p)]);
      expect(v.params).toBeGreaterThan(0);
      expect(onnxMetadata(bytes)).toMatchObject({ part: p, exit: String(PARTS.indexOf(p) + 1) });
    }
    expect(metrics.measured).toMatch(/2000 held-out digits/);
  });

  it('give probability rows at every exit', () => {
    for (const probs of exits.probs) {
      expect(probs.length).toBe(heldout.n * 10);
      for (let r = 0; r < heldout.n; r++) {
        let sum = 0;
        for (let j = 0; j < 10; j++) sum += probs[r * 10 + j]!;
        expect(Math.abs(sum - 1)).toBeLessThan(1e-5);
      }
    }
  });

  it('reach the exit accuracies metrics.json records, rising from exit 1 to exit 3', () => {
    const measured = exits.probs.map(accuracy);
    measured.forEach((a, k) => {
      expect(Math.abs(a - metrics.exitAccuracy[k]!)).toBeLessThanOrEqual(TOLERANCE);
    });
    expect(measured[2]!).toBeGreaterThan(measured[0]!);
    expect(measured[1]!).toBeGreaterThanOrEqual(measured[0]!);
    expect(metrics.baseline.accuracy).toBe(metrics.exitAccuracy[2]);
    expect(metrics.baseline.bytesUp).toBe(784 * 4);
  });

  it('reproduce the sweep and the default thresholds of metrics.json', () => {
    expect(metrics.sweep.length).toBeGreaterThan(10);
    for (const row of metrics.sweep) {
      const s = { rule: row.rule, threshold: row.threshold };
      const r = runCascade(exits, [s, s]);
      expect(Math.abs(r.accuracy - row.accuracy)).toBeLessThanOrEqual(TOLERANCE);
      r.shares.forEach((share, k) => {
        expect(Math.abs(share - row.shares[k]!)).toBeLessThanOrEqual(0.005);
      });
      expect(Math.abs(r.bytesUp - row.bytesUp)).toBeLessThanOrEqual(2);
    }
    const d = metrics.defaults[metrics.defaultRule]!;
    const r = runCascade(exits, [d.dew, d.fog]);
    expect(Math.abs(r.accuracy - d.all.accuracy)).toBeLessThanOrEqual(TOLERANCE);
    // The defaults keep most of the accuracy of exit 3 while most requests leave early and
    // send up far fewer bytes than the raw digit.
    expect(r.accuracy).toBeGreaterThanOrEqual(metrics.exitAccuracy[2]! - 0.01);
    expect(r.shares[0]!).toBeGreaterThan(0.5);
    expect(r.bytesUp).toBeLessThan(metrics.baseline.bytesUp / 10);
  });

  it('answer a digit alone like the same digit inside the batch', async () => {
    const r = 7;
    const dew = await sessions.dew.run({
      pixels: tensor(heldout.x.slice(r * 784, (r + 1) * 784), 1),
    });
    const fog = await sessions.fog.run({ features: dew.features! });
    const cloud = await sessions.cloud.run({ features: fog.features_out! });
    [dew, fog, cloud].forEach((out, k) => {
      const single = out.probs!.data as Float32Array;
      for (let j = 0; j < 10; j++) expect(single[j]!).toBeCloseTo(exits.probs[k]![r * 10 + j]!, 5);
    });
  });
});

describe('the exit rule', () => {
  const uniform = new Float32Array(10).fill(0.1);
  const sure = Float32Array.from({ length: 10 }, (_, j) => (j === 3 ? 1 : 0));
  const mixed = Float32Array.from([0.7, 0.3, 0, 0, 0, 0, 0, 0, 0, 0]);

  it('reads the digit, top probability and normalised entropy of a probability row', () => {
    expect(exitSignal(uniform)).toMatchObject({ top: expect.closeTo(0.1, 6) });
    expect(exitSignal(uniform).entropy).toBeCloseTo(1, 6);
    expect(exitSignal(sure)).toEqual({ digit: 3, top: 1, entropy: 0 });
    const h = -(0.7 * Math.log(0.7) + 0.3 * Math.log(0.3)) / Math.log(10);
    expect(exitSignal(mixed).digit).toBe(0);
    expect(exitSignal(mixed).entropy).toBeCloseTo(h, 6);
  });

  it('takes an exit by entropy ≤ threshold or top ≥ threshold, and never when off', () => {
    const s = exitSignal(mixed);
    expect(exitTaken(s, { rule: 'entropy', threshold: s.entropy })).toBe(true);
    expect(exitTaken(s, { rule: 'entropy', threshold: s.entropy - 1e-3 })).toBe(false);
    expect(exitTaken(s, { rule: 'top', threshold: 0.7 - 1e-6 })).toBe(true);
    expect(exitTaken(s, { rule: 'top', threshold: 0.71 })).toBe(false);
    expect(exitTaken(exitSignal(sure), { rule: 'top', threshold: 0, off: true })).toBe(false);
  });

  it('sends every request to exit 3 when both exits are off, with both feature vectors up', () => {
    const off = { rule: 'entropy' as const, threshold: 1, off: true };
    const r = runCascade(exits, [off, off]);
    expect(r.shares).toEqual([0, 0, 1]);
    expect(r.bytesUp).toBe(exits.upBytes[0]! + exits.upBytes[1]!);
    expect(r.accuracy).toBeCloseTo(accuracy(exits.probs[2]!), 10);
    const all = { rule: 'top' as const, threshold: 0 };
    expect(runCascade(exits, [all, all]).shares).toEqual([1, 0, 0]);
  });
});
