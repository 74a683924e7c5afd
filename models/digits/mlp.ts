/**
 * The dense network the digits models are made of, in plain TypeScript: a stack of fully
 * connected layers with ReLU between them and a softmax at the end. train.ts trains it, onnx.ts
 * writes it as ONNX (and reads it back), evaluate.ts checks the ONNX against `forward` here.
 */

/** One fully connected layer: out = in · w + b, with w stored in×out row-major (ONNX Gemm's B). */
export interface Dense {
  inDim: number;
  outDim: number;
  /** inDim×outDim, row-major. */
  w: Float32Array;
  /** outDim. */
  b: Float32Array;
}

/** Layers in order; ReLU after every layer but the last, softmax after the last. */
export interface Mlp {
  layers: Dense[];
}

/** Mulberry32: a small seeded PRNG, uniform in [0, 1). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Standard normal samples (Box–Muller) from a uniform source. */
export function gaussian(rand: () => number): () => number {
  let spare: number | undefined;
  return () => {
    if (spare !== undefined) {
      const s = spare;
      spare = undefined;
      return s;
    }
    let u = 0;
    while (u === 0) u = rand();
    const v = rand();
    const r = Math.sqrt(-2 * Math.log(u));
    spare = r * Math.sin(2 * Math.PI * v);
    return r * Math.cos(2 * Math.PI * v);
  };
}

/** A network with He-initialised weights and zero biases; `sizes` = [input, hidden..., output]. */
export function createMlp(sizes: readonly number[], rand: () => number): Mlp {
  const normal = gaussian(rand);
  const layers: Dense[] = [];
  for (let l = 0; l + 1 < sizes.length; l++) {
    const inDim = sizes[l]!;
    const outDim = sizes[l + 1]!;
    const w = new Float32Array(inDim * outDim);
    const std = Math.sqrt(2 / inDim);
    for (let i = 0; i < w.length; i++) w[i] = normal() * std;
    layers.push({ inDim, outDim, w, b: new Float32Array(outDim) });
  }
  return { layers };
}

/** Number of trainable values (weights and biases). */
export function paramCount(mlp: Mlp): number {
  let n = 0;
  for (const layer of mlp.layers) n += layer.w.length + layer.b.length;
  return n;
}

/** Layer sizes, input first: [784, 32, 10]. */
export function layerSizes(mlp: Mlp): number[] {
  return [mlp.layers[0]!.inDim, ...mlp.layers.map((l) => l.outDim)];
}

/**
 * out[r] = x[r] · w + b for `rows` rows (row-major), then ReLU unless `relu` is false.
 * Written as a sum of w's rows scaled by x's entries, so zero inputs (most pixels, and every
 * ReLU that is off) cost nothing.
 */
export function denseForward(
  layer: Dense,
  x: Float32Array,
  rows: number,
  out: Float32Array,
  relu: boolean,
): void {
  const { inDim, outDim, w, b } = layer;
  const acc = new Float64Array(outDim);
  for (let r = 0; r < rows; r++) {
    acc.set(b);
    const xo = r * inDim;
    for (let k = 0; k < inDim; k++) {
      const a = x[xo + k]!;
      if (a === 0) continue;
      const wo = k * outDim;
      for (let j = 0; j < outDim; j++) acc[j]! += a * w[wo + j]!;
    }
    const oo = r * outDim;
    for (let j = 0; j < outDim; j++) {
      const v = acc[j]!;
      out[oo + j] = relu && v < 0 ? 0 : v;
    }
  }
}

/** Row-wise softmax in place over `rows` rows of `cols`. */
export function softmaxRows(z: Float32Array, rows: number, cols: number): void {
  for (let r = 0; r < rows; r++) {
    const o = r * cols;
    let max = -Infinity;
    for (let j = 0; j < cols; j++) if (z[o + j]! > max) max = z[o + j]!;
    let sum = 0;
    for (let j = 0; j < cols; j++) {
      const e = Math.exp(z[o + j]! - max);
      z[o + j] = e;
      sum += e;
    }
    for (let j = 0; j < cols; j++) z[o + j]! /= sum;
  }
}

/** Class probabilities for `rows` inputs (row-major, rows×inDim): rows×outDim. */
export function forward(mlp: Mlp, x: Float32Array, rows: number): Float32Array {
  let a = x;
  const last = mlp.layers.length - 1;
  mlp.layers.forEach((layer, l) => {
    const out = new Float32Array(rows * layer.outDim);
    denseForward(layer, a, rows, out, l < last);
    a = out;
  });
  softmaxRows(a, rows, mlp.layers[last]!.outDim);
  return a;
}

/** Index of the largest of `cols` values starting at `offset`. */
export function argmax(v: ArrayLike<number>, offset: number, cols: number): number {
  let best = 0;
  for (let j = 1; j < cols; j++) if (v[offset + j]! > v[offset + best]!) best = j;
  return best;
}

/**
 * Backward pass of one layer over `rows` rows: adds nothing, overwrites `gW`/`gB` with the
 * gradients of the loss for `dOut` (the delta at this layer's pre-activation output, rows×outDim)
 * given its input `a` (rows×inDim). When `dIn` is given, writes there the delta at the
 * pre-activation of the layer that produced `a`, through that layer's ReLU (a > 0 exactly where
 * it was on); leave `dIn` out for the network's input.
 */
export function denseBackward(
  layer: Dense,
  a: Float32Array,
  dOut: Float32Array,
  rows: number,
  gW: Float32Array,
  gB: Float32Array,
  dIn?: Float32Array,
): void {
  const { inDim, outDim, w } = layer;
  gW.fill(0);
  gB.fill(0);
  for (let r = 0; r < rows; r++) {
    const ao = r * inDim;
    const dr = r * outDim;
    for (let j = 0; j < outDim; j++) gB[j]! += dOut[dr + j]!;
    for (let k = 0; k < inDim; k++) {
      const av = a[ao + k]!;
      if (av === 0) {
        if (dIn) dIn[ao + k] = 0;
        continue;
      }
      const wo = k * outDim;
      let s = 0;
      for (let j = 0; j < outDim; j++) {
        const dv = dOut[dr + j]!;
        gW[wo + j]! += av * dv;
        s += w[wo + j]! * dv;
      }
      if (dIn) dIn[ao + k] = s;
    }
  }
}

/** Adam's moment decay rates and denominator guard, as the digits trainers use them. */
export const ADAM = { beta1: 0.9, beta2: 0.999, epsilon: 1e-8 } as const;

/**
 * One AdamW step on parameters `p` with gradient `g` and moments `m`, `v` (updated in place);
 * `c1`, `c2` are the bias corrections 1 − β^t; `weightDecay` is decoupled (0 for biases).
 */
export function adamStep(
  p: Float32Array,
  g: Float32Array,
  m: Float32Array,
  v: Float32Array,
  lr: number,
  c1: number,
  c2: number,
  weightDecay: number,
): void {
  const decay = 1 - lr * weightDecay;
  for (let i = 0; i < p.length; i++) {
    const gi = g[i]!;
    const mi = ADAM.beta1 * m[i]! + (1 - ADAM.beta1) * gi;
    const vi = ADAM.beta2 * v[i]! + (1 - ADAM.beta2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    p[i] = p[i]! * decay - (lr * (mi / c1)) / (Math.sqrt(vi / c2) + ADAM.epsilon);
  }
}

/** Learning rate at `step` (1-based): linear warm-up over `warmup` steps, then cosine to lrMin. */
export function learningRate(
  step: number,
  warmup: number,
  totalSteps: number,
  lr: number,
  lrMin: number,
): number {
  return step <= warmup
    ? (lr * step) / warmup
    : lrMin +
        0.5 * (lr - lrMin) * (1 + Math.cos((Math.PI * (step - warmup)) / (totalSteps - warmup)));
}
