/**
 * Measures the early-exit parts with onnxruntime-node (CPU, one intra-op thread) on the 2,000
 * held-out digits and writes models/digits-ee/metrics.json; prints the tables.
 *
 *   npx tsx models/digits-ee/evaluate.ts
 *
 * - each exit's accuracy alone (every digit through dew → fog → cloud, read at exit k);
 * - the cascade at a sweep of thresholds (cascade.ts SWEEP, both rules, the same threshold at
 *   the dew and the fog): accuracy, share answered at each exit, mean bytes sent up;
 * - the default thresholds: per rule, chosen on the first 1,000 held-out digits (the loosest at
 *   which the answers given at exits 1 and 2 are still right 99% of the time: cascade.ts
 *   chooseDefault), then measured on the other 1,000 digits and on all 2,000;
 * - the baseline: only the cloud, on raw pixels: the whole network runs there (exit 3's
 *   accuracy), and the device sends the 784 pixels up (3,136 bytes as float32, 784 as bytes);
 * - per-part model time for one digit (median of 1,000 runs after 200 warm-up runs).
 * `variants` holds one entry per part in the shape relay/pack.ts fills a model variant from, so
 * the digits-ee app's draft can name this file as its `metrics`.
 * Before measuring, it checks that onnxruntime's outputs equal the TypeScript forward pass
 * (network.ts) of the weights read back from each file.
 */
import { statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { DIGIT_PIXELS, loadDigits } from '../digits/data';
import { onnxToPart } from '../digits/onnx';
import { jsonText } from '../json-text';
import {
  chooseDefault,
  type DefaultChoice,
  exitAccuracies,
  runCascade,
  type SweepRow,
  sweep,
} from './cascade';
import { describeStage, eeForward, PART_IO, PARTS, stageParams } from './network';
import { loadParts, PARTS_DIR, readParts, releaseParts, runAll, runPart } from './parts';

/** Largest |onnxruntime − TypeScript| allowed on any probability or feature. */
const MAX_ABS_DIFF = 1e-3;
/** How often the answers given at exit 1 or 2 must be right, on the digits the defaults are chosen on. */
export const TARGET = 0.99;
const WARMUP = 200;
const RUNS = 1000;
const round = (v: number, d = 4) => Number(v.toFixed(d));

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** Prints rows of cells as an aligned table. */
export function printTable(header: string[], rows: string[][]): void {
  const widths = header.map((h, c) => Math.max(h.length, ...rows.map((r) => r[c]!.length)));
  const line = (cells: string[]) => cells.map((v, c) => v.padStart(widths[c]!)).join('  ');
  console.log(line(header));
  console.log(line(widths.map((w) => '-'.repeat(w))));
  for (const r of rows) console.log(line(r));
}

export function sweepTable(rows: SweepRow[], baseline: { accuracy: number; bytesUp: number }) {
  printTable(
    ['rule', 'threshold', 'accuracy', 'exit 1', 'exit 2', 'exit 3', 'bytes up'],
    [
      ...rows.map((r) => [
        r.rule,
        String(r.threshold),
        r.accuracy.toFixed(4),
        ...r.shares.map((s) => `${(s * 100).toFixed(1)}%`),
        r.bytesUp.toFixed(1),
      ]),
      [
        'cloud only',
        'raw pixels',
        baseline.accuracy.toFixed(4),
        '',
        '',
        '100.0%',
        String(baseline.bytesUp),
      ],
    ],
  );
}

async function main() {
  const { heldout } = loadDigits();
  const bytes = readParts();
  const sessions = await loadParts(bytes);
  const out = await runAll(sessions, heldout.x, heldout.y, heldout.n);

  // onnxruntime against the TypeScript forward pass of the weights read back from the files.
  const net = { stages: PARTS.map((p) => onnxToPart(bytes[p])) };
  const ts = eeForward(net, heldout.x, heldout.n);
  let maxAbsDiff = 0;
  ts.forEach((stage, s) => {
    const pairs: [Float32Array, Float32Array][] = [[stage.probs, out.probs[s]!]];
    if (s < 2) pairs.push([stage.features, out.features[s]!]);
    for (const [a, b] of pairs) {
      if (a.length !== b.length) throw new Error(`${PARTS[s]}: output sizes differ`);
      for (let i = 0; i < a.length; i++) maxAbsDiff = Math.max(maxAbsDiff, Math.abs(a[i]! - b[i]!));
    }
  });
  if (!(maxAbsDiff < MAX_ABS_DIFF)) {
    throw new Error(`onnxruntime and TypeScript differ by ${maxAbsDiff} (> ${MAX_ABS_DIFF})`);
  }

  const accuracy = exitAccuracies(out);
  const widths = out.features.map((f) => f.length / heldout.n);
  const baseline = {
    what: 'only the cloud, on raw pixels: the whole network runs there, the device sends the digit up',
    accuracy: round(accuracy[2]!),
    bytesUp: DIGIT_PIXELS * 4,
    bytesUpUint8: DIGIT_PIXELS,
  };
  const sweepRows = sweep(out);
  const half = heldout.n / 2;
  const defaults: Record<string, unknown> = {};
  const chosen: DefaultChoice[] = [];
  for (const rule of ['entropy', 'top'] as const) {
    const c = chooseDefault(out, rule, TARGET, 0, half);
    chosen.push(c);
    const settings = c.thresholds.map((threshold) => ({ rule, threshold }));
    const rest = runCascade(out, settings, half, heldout.n);
    const all = runCascade(out, settings, 0, heldout.n);
    const restExit3 = exitAccuracies(out, half, heldout.n)[2]!;
    defaults[rule] = {
      dew: { rule, threshold: c.thresholds[0] },
      fog: { rule, threshold: c.thresholds[1] },
      chosenOn: `held-out digits 0-${half - 1}`,
      earlyAnswersRight: TARGET,
      selection: summary(c.chosenOn, c.chosenOn.exit3Accuracy),
      check: { ...summary(rest, restExit3), on: `held-out digits ${half}-${heldout.n - 1}` },
      all: summary(all, accuracy[2]!),
    };
  }

  // Model time per part, one digit per run.
  const latencyMs: Record<string, number> = {};
  const first = await runAll(sessions, heldout.x.subarray(0, DIGIT_PIXELS * 1), heldout.y, 1);
  const inputs = {
    dew: heldout.x.subarray(0, DIGIT_PIXELS),
    fog: first.features[0]!,
    cloud: first.features[1]!,
  };
  for (const p of PARTS) {
    for (let i = 0; i < WARMUP; i++) await runPart(sessions, p, inputs[p], 1);
    const times: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      const t0 = performance.now();
      await runPart(sessions, p, inputs[p], 1);
      times.push(performance.now() - t0);
    }
    latencyMs[p] = round(median(times), 3);
  }
  await releaseParts(sessions);

  // One entry per part, in the shape relay/pack.ts reads a model's variants from (`accuracy`:
  // the part's exit alone, after the parts below it; `latencyMs`: its run() on one digit).
  let width = DIGIT_PIXELS;
  const variants = Object.fromEntries(
    PARTS.map((p, s) => {
      const stage = net.stages[s]!;
      const io = PART_IO[p];
      const entry = {
        file: `${p}.onnx`,
        accuracy: round(accuracy[s]!),
        bytes: statSync(join(PARTS_DIR, `${p}.onnx`)).size,
        architecture: describeStage(stage, width),
        params: stageParams(stage),
        input: { name: io.input, shape: ['N', width] },
        outputs: [
          ...(io.features ? [{ name: io.features, shape: ['N', widths[s]!] }] : []),
          { name: 'probs', shape: ['N', 10] },
        ],
        latencyMs: latencyMs[p],
        weights: 'trained',
      };
      width = widths[s] ?? width;
      return [p, entry];
    }),
  );

  const ortVersion = (
    createRequire(import.meta.url)('onnxruntime-node/package.json') as { version: string }
  ).version;
  const cpu = cpus();
  const metrics = {
    measured:
      `${new Date().toISOString()}, ${cpu[0]?.model.trim() ?? 'unknown CPU'}, ${cpu.length} threads, ` +
      `onnxruntime-node ${ortVersion} (CPU, intraOpNumThreads 1), Node ${process.version}, ` +
      `${heldout.n} held-out digits`,
    variants,
    featureWidths: widths,
    upBytes: out.upBytes,
    exitAccuracy: accuracy.map((a) => round(a)),
    baseline,
    defaultRule: 'entropy',
    defaults,
    sweep: sweepRows.map((r) => ({
      rule: r.rule,
      threshold: r.threshold,
      accuracy: round(r.accuracy),
      shares: r.shares.map((s) => round(s)),
      bytesUp: round(r.bytesUp, 1),
    })),
    maxAbsDiffVsTypeScript: Number(maxAbsDiff.toExponential(2)),
  };
  writeFileSync(join(PARTS_DIR, 'metrics.json'), jsonText(metrics));

  console.log(metrics.measured);
  printTable(
    ['part', 'architecture', 'params', 'bytes', 'exit accuracy alone', 'model ms (1 digit)'],
    PARTS.map((p, s) => {
      const e = variants[p] as { architecture: string; params: number; bytes: number };
      return [
        p,
        e.architecture,
        String(e.params),
        String(e.bytes),
        accuracy[s]!.toFixed(4),
        latencyMs[p]!.toFixed(3),
      ];
    }),
  );
  console.log(`\nThe cascade, the same threshold at the dew and the fog (all ${heldout.n} digits)`);
  sweepTable(sweepRows, baseline);
  console.log(
    `\nDefault thresholds (chosen on digits 0-${half - 1}: the loosest with the answers at exits 1 and 2 right ${TARGET * 100}% of the time)`,
  );
  printTable(
    [
      'rule',
      'dew',
      'fog',
      'digits',
      'accuracy',
      'exit 3 alone',
      'exit 1',
      'exit 2',
      'exit 3',
      'bytes up',
    ],
    chosen.flatMap((c) => {
      const d = defaults[c.rule] as Record<string, ReturnType<typeof summary>>;
      return (['selection', 'check', 'all'] as const).map((k) => [
        c.rule,
        String(c.thresholds[0]),
        String(c.thresholds[1]),
        k,
        d[k]!.accuracy.toFixed(4),
        d[k]!.exit3Accuracy.toFixed(4),
        ...d[k]!.shares.map((s) => `${(s * 100).toFixed(1)}%`),
        d[k]!.bytesUp.toFixed(1),
      ]);
    }),
  );
  console.log(`wrote ${join(PARTS_DIR, 'metrics.json')}`);
}

function summary(r: ReturnType<typeof runCascade>, exit3: number) {
  return {
    accuracy: round(r.accuracy),
    exit3Accuracy: round(exit3),
    shares: r.shares.map((s) => round(s)),
    bytesUp: round(r.bytesUp, 1),
    n: r.n,
  };
}

if (process.argv[1]?.endsWith('evaluate.ts')) await main();
