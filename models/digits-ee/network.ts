/**
 * The early-exit network (BranchyNet-style) in plain TypeScript: a chain of three stages, each a
 * trunk of ReLU layers whose last activation is the stage's *features*, and an exit head (ReLU
 * between its layers, softmax at the end) reading those features. Stage s + 1 reads stage s's
 * features. Split at the stages, it is the three deployable parts: dew (pixels → features + exit
 * 1), fog (features → features + exit 2), cloud (features → exit 3; its trunk may be empty, as
 * the cloud sends nothing further up).
 *
 * train.ts trains it (joint loss over the three exits), ../digits/onnx.ts `partToOnnx` writes each
 * stage as one ONNX file, evaluate.ts and the tests check onnxruntime against `eeForward` here.
 */
import { createMlp, type Dense, denseForward, mulberry32, softmaxRows } from '../digits/mlp';

/** One stage: `trunk` (ReLU after every layer) then `exit` (ReLU between, softmax after last). */
export interface Stage {
  trunk: Dense[];
  exit: Dense[];
}

export interface EeNet {
  stages: Stage[];
}

/** Sizes of one stage: the trunk's layer widths and the exit's (its last is the class count). */
export interface StageShape {
  trunk: number[];
  exit: number[];
}

/** The deployable parts, in order, with the stage each one is. */
export const PARTS = ['dew', 'fog', 'cloud'] as const;
export type Part = (typeof PARTS)[number];

/**
 * Graph input and outputs of each part. The fog's features output cannot share its input's name
 * (an ONNX graph names each value once), so it is `features_out`.
 */
export const PART_IO = {
  dew: { input: 'pixels', features: 'features' },
  fog: { input: 'features', features: 'features_out' },
  cloud: { input: 'features', features: undefined },
} as const satisfies Record<Part, { input: string; features: string | undefined }>;

/** He-initialised stages from `input` values; trunk, then exit, of each stage in order. */
export function createEeNet(input: number, shapes: readonly StageShape[], seed: number): EeNet {
  const rand = mulberry32(seed);
  let width = input;
  const stages: Stage[] = [];
  for (const shape of shapes) {
    const trunk = shape.trunk.length > 0 ? createMlp([width, ...shape.trunk], rand).layers : [];
    const features = shape.trunk.at(-1) ?? width;
    const exit = createMlp([features, ...shape.exit], rand).layers;
    stages.push({ trunk, exit });
    width = features;
  }
  return { stages };
}

/** Width of the features a stage sends up (its last trunk layer's, else its input's). */
export function featureWidth(stage: Stage, inputWidth: number): number {
  return stage.trunk.at(-1)?.outDim ?? inputWidth;
}

/** Applies `layers` to `rows` rows of `x`; ReLU after each, except after the last when `lastLinear`. */
function chain(layers: Dense[], x: Float32Array, rows: number, lastLinear: boolean): Float32Array {
  let a = x;
  layers.forEach((layer, l) => {
    const out = new Float32Array(rows * layer.outDim);
    denseForward(layer, a, rows, out, !(lastLinear && l === layers.length - 1));
    a = out;
  });
  return a;
}

/** One stage on `rows` rows of its input: its features and its exit's class probabilities. */
export function stageForward(
  stage: Stage,
  x: Float32Array,
  rows: number,
): { features: Float32Array; probs: Float32Array } {
  const features = chain(stage.trunk, x, rows, false);
  const probs = chain(stage.exit, features, rows, true);
  softmaxRows(probs, rows, stage.exit.at(-1)!.outDim);
  return { features, probs };
}

/** Every stage in turn on `rows` rows of pixels: per stage, the features and the probabilities. */
export function eeForward(
  net: EeNet,
  x: Float32Array,
  rows: number,
): { features: Float32Array; probs: Float32Array }[] {
  const out: { features: Float32Array; probs: Float32Array }[] = [];
  let input = x;
  for (const stage of net.stages) {
    const r = stageForward(stage, input, rows);
    out.push(r);
    input = r.features;
  }
  return out;
}

/** Trainable values of a stage. */
export function stageParams(stage: Stage): number {
  let n = 0;
  for (const l of [...stage.trunk, ...stage.exit]) n += l.w.length + l.b.length;
  return n;
}

/** "784→32 | exit 32→10" for a stage. */
export function describeStage(stage: Stage, inputWidth: number): string {
  const trunk = [inputWidth, ...stage.trunk.map((l) => l.outDim)].join('→');
  const exitIn = featureWidth(stage, inputWidth);
  const exit = [exitIn, ...stage.exit.map((l) => l.outDim)].join('→');
  return stage.trunk.length > 0 ? `trunk ${trunk}, exit ${exit}` : `exit ${exit}`;
}
