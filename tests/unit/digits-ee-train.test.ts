// The early-exit trainer (models/digits-ee/train.ts) and the stage writer (models/digits/onnx.ts
// partToOnnx): the joint loss's gradients against finite differences, seeded training, and a
// written stage read back and run by onnxruntime-node. Networks here have random weights.
import * as ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { type DigitSet, loadDigits } from '../../models/digits/data';
import { mulberry32 } from '../../models/digits/mlp';
import { onnxToPart, partToOnnx } from '../../models/digits/onnx';
import { createEeNet, type EeNet, eeForward } from '../../models/digits-ee/network';
import { jointPass, RECIPES, train } from '../../models/digits-ee/train';

/** A small three-stage net: 12 inputs, features 6 and 5, a cloud head 5→7→10. */
const SHAPES = [
  { trunk: [6], exit: [10] },
  { trunk: [5], exit: [10] },
  { trunk: [], exit: [7, 10] },
];

/** Σ_s weights[s] · mean over rows of −log p_s(label), from the plain forward pass. */
function jointLoss(net: EeNet, x: Float32Array, labels: number[], weights: number[]): number {
  const rows = labels.length;
  let loss = 0;
  eeForward(net, x, rows).forEach(({ probs }, s) => {
    let ce = 0;
    for (let r = 0; r < rows; r++) ce -= Math.log(probs[r * 10 + labels[r]!]!);
    loss += (weights[s]! * ce) / rows;
  });
  return loss;
}

describe('the early-exit trainer', () => {
  it('computes the gradient of the weighted sum of the exits’ losses (finite differences)', () => {
    const net = createEeNet(12, SHAPES, 5);
    const rand = mulberry32(9);
    const rows = 3;
    const labels = [2, 7, 4];
    const weights = [1, 0.5, 2];
    const x = Float32Array.from({ length: rows * 12 }, () => 0.1 + rand());
    const pass = jointPass(net, 4, weights);
    pass.input.set(x);
    const lossSum = [0, 0, 0];
    pass.run(rows, (r) => labels[r]!, lossSum, [0, 0, 0]);
    // The summed cross-entropies it reports are the plain forward pass's.
    const plain = jointLoss(net, x, labels, [1, 1, 1]) * rows;
    expect(lossSum.reduce((a, b) => a + b, 0)).toBeCloseTo(plain, 3);

    const eps = 1e-3;
    let checked = 0;
    for (const { layer, gw, gb } of pass.slots) {
      for (const [p, g] of [
        [layer.w, gw],
        [layer.b, gb],
      ] as const) {
        for (let i = 0; i < p.length; i++) {
          const keep = p[i]!;
          p[i] = keep + eps;
          const up = jointLoss(net, x, labels, weights);
          p[i] = keep - eps;
          const down = jointLoss(net, x, labels, weights);
          p[i] = keep;
          const numeric = (up - down) / (2 * eps);
          expect(Math.abs(numeric - g[i]!)).toBeLessThanOrEqual(2e-3 + 2e-2 * Math.abs(numeric));
          checked++;
        }
      }
    }
    // Every weight and bias of the six layers (trunk 12→6, 6→5; exits 6→10, 5→10, 5→7→10).
    expect(checked).toBe(
      12 * 6 + 6 + 6 * 5 + 5 + 6 * 10 + 10 + 5 * 10 + 10 + 5 * 7 + 7 + 7 * 10 + 10,
    );
    expect(pass.slots.some(({ gw }) => gw.some((v) => v !== 0))).toBe(true);
  });

  it('trains deterministically from its seed, each exit’s loss falling', () => {
    const { train: all } = loadDigits();
    // Every 16th training digit: the set is stored class by class, so a stride keeps all classes.
    const n = Math.floor(all.n / 16);
    const subset: DigitSet = { x: new Float32Array(n * 784), y: new Uint8Array(n), n };
    for (let i = 0; i < n; i++) {
      subset.x.set(all.x.subarray(i * 16 * 784, (i * 16 + 1) * 784), i * 784);
      subset.y[i] = all.y[i * 16]!;
    }
    const recipe = { ...RECIPES.default!, epochs: 2 };
    const quiet = () => {};
    const a = train(recipe, subset, undefined, quiet);
    const b = train(recipe, subset, undefined, quiet);
    a.net.stages.forEach((stage, s) => {
      [...stage.trunk, ...stage.exit].forEach((layer, l) => {
        const other = [...b.net.stages[s]!.trunk, ...b.net.stages[s]!.exit][l]!;
        expect(Buffer.from(layer.w.buffer).equals(Buffer.from(other.w.buffer))).toBe(true);
        expect(Buffer.from(layer.b.buffer).equals(Buffer.from(other.b.buffer))).toBe(true);
      });
    });
    const first = a.log[0]!.loss;
    const last = a.log.at(-1)!.loss;
    expect(first).toHaveLength(3);
    last.forEach((l, k) => {
      expect(l).toBeLessThan(first[k]!);
    });
    const other = train({ ...recipe, epochs: 1, seed: recipe.seed + 1 }, subset, undefined, quiet);
    expect(other.net.stages[0]!.trunk[0]!.w).not.toEqual(a.net.stages[0]!.trunk[0]!.w);
  });
});

describe('a stage written as ONNX', () => {
  it('reads back to the same weights and runs in onnxruntime like the TypeScript pass', async () => {
    const net = createEeNet(12, SHAPES, 3);
    const rand = mulberry32(4);
    const rows = 5;
    let x: Float32Array = Float32Array.from({ length: rows * 12 }, () => rand());
    const ts = eeForward(net, x, rows);
    const names = [
      { input: 'pixels', features: 'features' },
      { input: 'features', features: 'features_out' },
      { input: 'features', features: undefined },
    ];
    for (let s = 0; s < 3; s++) {
      const stage = net.stages[s]!;
      const io = names[s]!;
      const bytes = partToOnnx(stage, {
        inputName: io.input,
        ...(io.features && { featuresName: io.features }),
        graphName: `test_${s}`,
        docString: 'random weights, for a test',
        producerName: 'tests/unit/digits-ee-train.test.ts',
      });
      const back = onnxToPart(bytes);
      expect(back.trunk.map((l) => [l.inDim, l.outDim, Array.from(l.w), Array.from(l.b)])).toEqual(
        stage.trunk.map((l) => [l.inDim, l.outDim, Array.from(l.w), Array.from(l.b)]),
      );
      expect(back.exit.map((l) => Array.from(l.w))).toEqual(stage.exit.map((l) => Array.from(l.w)));
      const session = await ort.InferenceSession.create(bytes);
      try {
        const width = x.length / rows;
        const out = await session.run({ [io.input]: new ort.Tensor('float32', x, [rows, width]) });
        expect(session.outputNames).toEqual(io.features ? [io.features, 'probs'] : ['probs']);
        const probs = out.probs!.data as Float32Array;
        for (let i = 0; i < probs.length; i++) expect(probs[i]!).toBeCloseTo(ts[s]!.probs[i]!, 5);
        if (io.features) {
          const f = out[io.features]!.data as Float32Array;
          for (let i = 0; i < f.length; i++) expect(f[i]!).toBeCloseTo(ts[s]!.features[i]!, 5);
          x = f;
        }
      } finally {
        await session.release();
      }
    }
  });

  it('refuses a features output on a stage without a trunk', () => {
    const net = createEeNet(12, SHAPES, 3);
    expect(() =>
      partToOnnx(net.stages[2]!, {
        inputName: 'features',
        featuresName: 'features_out',
        graphName: 'g',
        docString: '',
        producerName: 'test',
      }),
    ).toThrow(/features need a trunk/);
  });
});
