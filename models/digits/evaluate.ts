/**
 * Measures the digits models with onnxruntime-node (CPU, one intra-op thread) on the 2,000
 * held-out digits and writes models/digits/metrics.json.
 *
 *   npx tsx models/digits/evaluate.ts
 *
 * Per variant: accuracy on the held-out set; single-digit latency (median of 1,000 runs after
 * 200 warm-up runs, one digit per run); throughput with the whole held-out set as one batch;
 * parameter count and file size. Before measuring, it checks that onnxruntime's output equals the
 * TypeScript forward pass (mlp.ts) of the weights read back from the file's initializers.
 */
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { cpus } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as ort from 'onnxruntime-node';
import { DIGIT_CLASSES, DIGIT_PIXELS, loadDigits } from './data';
import { argmax, forward, layerSizes, paramCount } from './mlp';
import { INPUT_NAME, OUTPUT_NAME, onnxToMlp } from './onnx';

const HERE = dirname(fileURLToPath(import.meta.url));
const VARIANTS = ['small', 'large'] as const;
const LATENCY_WARMUP = 200;
const LATENCY_RUNS = 1000;
const BATCH_WARMUP = 3;
const BATCH_RUNS = 20;
/** Largest |onnxruntime − TypeScript| allowed on any probability. */
const MAX_ABS_DIFF = 1e-4;

const SESSION_OPTIONS: ort.InferenceSession.SessionOptions = {
  intraOpNumThreads: 1,
  interOpNumThreads: 1,
  executionMode: 'sequential',
  graphOptimizationLevel: 'all',
};

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

function quantile(values: number[], q: number): number {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))]!;
}

const round = (v: number, digits: number) => Number(v.toFixed(digits));

async function main() {
  const { heldout } = loadDigits();
  const ortVersion = (
    createRequire(import.meta.url)('onnxruntime-node/package.json') as { version: string }
  ).version;
  const cpu = cpus();
  const measured =
    `${new Date().toISOString()}, ${cpu[0]?.model.trim() ?? 'unknown CPU'}, ${cpu.length} threads, ` +
    `onnxruntime-node ${ortVersion} (CPU, intraOpNumThreads 1), Node ${process.version}, ` +
    `${heldout.n} held-out digits`;
  const variants: Record<string, unknown> = {};
  const rows: string[][] = [];

  for (const name of VARIANTS) {
    const file = `${name}.onnx`;
    const path = join(HERE, file);
    const bytes = readFileSync(path);
    const mlp = onnxToMlp(bytes);
    const session = await ort.InferenceSession.create(bytes, SESSION_OPTIONS);

    // Accuracy: the whole held-out set in one batch.
    const all = new ort.Tensor('float32', heldout.x, [heldout.n, DIGIT_PIXELS]);
    const probs = (await session.run({ [INPUT_NAME]: all }))[OUTPUT_NAME]!.data as Float32Array;
    let correct = 0;
    for (let r = 0; r < heldout.n; r++) {
      if (argmax(probs, r * DIGIT_CLASSES, DIGIT_CLASSES) === heldout.y[r]) correct++;
    }
    const accuracy = correct / heldout.n;

    // onnxruntime against the TypeScript forward pass of the same weights, on every held-out digit.
    const ts = forward(mlp, heldout.x, heldout.n);
    let maxAbsDiff = 0;
    for (let i = 0; i < ts.length; i++) {
      maxAbsDiff = Math.max(maxAbsDiff, Math.abs(ts[i]! - probs[i]!));
    }
    if (!(maxAbsDiff < MAX_ABS_DIFF)) {
      throw new Error(
        `${file}: onnxruntime and TypeScript differ by ${maxAbsDiff} (> ${MAX_ABS_DIFF})`,
      );
    }

    // Single-digit latency: a different held-out digit each run, tensors made beforehand.
    const singles = Array.from(
      { length: heldout.n },
      (_, r) =>
        new ort.Tensor('float32', heldout.x.subarray(r * DIGIT_PIXELS, (r + 1) * DIGIT_PIXELS), [
          1,
          DIGIT_PIXELS,
        ]),
    );
    for (let i = 0; i < LATENCY_WARMUP; i++) {
      await session.run({ [INPUT_NAME]: singles[i % heldout.n]! });
    }
    const times: number[] = [];
    for (let i = 0; i < LATENCY_RUNS; i++) {
      const input = singles[i % heldout.n]!;
      const t0 = performance.now();
      await session.run({ [INPUT_NAME]: input });
      times.push(performance.now() - t0);
    }
    const latencyMs = median(times);

    // Throughput: the whole held-out set as one batch.
    for (let i = 0; i < BATCH_WARMUP; i++) await session.run({ [INPUT_NAME]: all });
    const batchTimes: number[] = [];
    for (let i = 0; i < BATCH_RUNS; i++) {
      const t0 = performance.now();
      await session.run({ [INPUT_NAME]: all });
      batchTimes.push(performance.now() - t0);
    }
    const batchMs = median(batchTimes);
    await session.release();

    const params = paramCount(mlp);
    const size = statSync(path).size;
    const architecture = layerSizes(mlp).join('→');
    variants[name] = {
      file,
      accuracy: round(accuracy, 4),
      latencyMs: round(latencyMs, 3),
      params,
      bytes: size,
      weights: 'trained',
      architecture,
      latencyP90Ms: round(quantile(times, 0.9), 3),
      batch: heldout.n,
      batchMs: round(batchMs, 3),
      throughputPerSec: Math.round((heldout.n / batchMs) * 1000),
      maxAbsDiffVsTypeScript: Number(maxAbsDiff.toExponential(2)),
    };
    rows.push([
      name,
      architecture,
      String(params),
      String(size),
      accuracy.toFixed(4),
      latencyMs.toFixed(3),
      quantile(times, 0.9).toFixed(3),
      String(Math.round((heldout.n / batchMs) * 1000)),
      maxAbsDiff.toExponential(1),
    ]);
  }

  const metrics = { measured, variants };
  writeFileSync(join(HERE, 'metrics.json'), `${JSON.stringify(metrics, null, 2)}\n`);

  const header = [
    'variant',
    'architecture',
    'params',
    'bytes',
    'accuracy',
    'latency ms (median)',
    'p90 ms',
    `digits/s (batch ${heldout.n})`,
    'max |ort-ts|',
  ];
  const widths = header.map((h, c) => Math.max(h.length, ...rows.map((r) => r[c]!.length)));
  const line = (cells: string[]) => cells.map((v, c) => v.padEnd(widths[c]!)).join('  ');
  console.log(measured);
  console.log(line(header));
  console.log(line(widths.map((w) => '-'.repeat(w))));
  for (const r of rows) console.log(line(r));
  console.log(`wrote ${join(HERE, 'metrics.json')}`);
}

await main();
