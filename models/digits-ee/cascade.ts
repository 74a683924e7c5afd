/**
 * The early-exit cascade on precomputed exit outputs, pure (no I/O): the exit rule, a cascade
 * run over a set of digits, the threshold sweep and the choice of default thresholds. Used by
 * evaluate.ts (metrics.json), tests/unit/digits-ee-model.test.ts and tests/bench/early-exit.ts.
 *
 * Rule per exit (the same one the digits-ee host applies, PROTOCOL §2.1): from the exit's class
 * probabilities, `top` = the largest probability and `entropy` = the softmax entropy divided by
 * ln(classes), in [0, 1]. Rule `entropy`: the request leaves when entropy ≤ threshold; `top`:
 * when top ≥ threshold; `off`: never leaves there. The last exit always answers.
 */
import { judgeExit } from '../../core/early-exit';
import type { ExitHead } from '../../core/manifest-schema';

export type ExitRule = ExitHead['rule'];

/** An exit's rule as a manifest's `exit` head has it, without the output's name. */
export type ExitSetting = Omit<ExitHead, 'output'>;

export interface ExitSignal {
  digit: number;
  top: number;
  /** Normalised softmax entropy, in [0, 1]. */
  entropy: number;
}

/** Digit, top probability and normalised entropy of the `cols` probabilities at `offset`. */
export function exitSignal(probs: ArrayLike<number>, offset = 0, cols = 10): ExitSignal {
  const row = Array.from({ length: cols }, (_, j) => probs[offset + j]!);
  let digit = 0;
  for (let j = 1; j < cols; j++) if (row[j]! > row[digit]!) digit = j;
  // The host's own measure (core/early-exit.ts), so the sweep judges exactly as digits-ee runs.
  const { confidence, entropy } = judgeExit(measureOnly, row);
  return { digit, top: confidence, entropy };
}

const measureOnly: ExitHead = { output: 'probs', rule: 'top', threshold: 1 };

/** Whether a request leaves at an exit with `signal` under `setting`. */
export function exitTaken(signal: ExitSignal, setting: ExitSetting): boolean {
  if (setting.off) return false;
  return setting.rule === 'entropy'
    ? signal.entropy <= setting.threshold
    : signal.top >= setting.threshold;
}

/** Each exit's outputs on the same n digits, with their labels. */
export interface ExitOutputs {
  /** Per exit (dew, fog, cloud), n×10 class probabilities. */
  probs: Float32Array[];
  labels: Uint8Array;
  n: number;
  /** Bytes sent up when a request leaves exit k without an answer (dew→fog, fog→cloud). */
  upBytes: number[];
}

export interface CascadeResult {
  accuracy: number;
  /** Share of the requests answered at each exit. */
  shares: number[];
  /** Accuracy of the answers given at each exit (null when none left there). */
  exitAccuracy: (number | null)[];
  /** Mean bytes sent up per request. */
  bytesUp: number;
  n: number;
}

/** Runs the cascade over rows [from, to) of `out` with one setting per exit but the last. */
export function runCascade(
  out: ExitOutputs,
  settings: readonly ExitSetting[],
  from = 0,
  to = out.n,
): CascadeResult {
  const exits = out.probs.length;
  const counts = new Array<number>(exits).fill(0);
  const right = new Array<number>(exits).fill(0);
  let bytes = 0;
  for (let r = from; r < to; r++) {
    for (let k = 0; k < exits; k++) {
      const signal = exitSignal(out.probs[k]!, r * 10);
      if (k === exits - 1 || exitTaken(signal, settings[k]!)) {
        counts[k]!++;
        if (signal.digit === out.labels[r]) right[k]!++;
        break;
      }
      bytes += out.upBytes[k]!;
    }
  }
  const n = to - from;
  return {
    accuracy: right.reduce((a, b) => a + b, 0) / n,
    shares: counts.map((c) => c / n),
    exitAccuracy: counts.map((c, k) => (c > 0 ? right[k]! / c : null)),
    bytesUp: bytes / n,
    n,
  };
}

/** Accuracy of each exit alone over rows [from, to). */
export function exitAccuracies(out: ExitOutputs, from = 0, to = out.n): number[] {
  return out.probs.map((p) => {
    let right = 0;
    for (let r = from; r < to; r++) if (exitSignal(p, r * 10).digit === out.labels[r]) right++;
    return right / (to - from);
  });
}

/** The thresholds the sweep tries, per rule (the same threshold at the dew and the fog). */
export const SWEEP: Record<ExitRule, number[]> = {
  entropy: [0, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1],
  top: [1, 0.9999, 0.999, 0.99, 0.98, 0.95, 0.9, 0.8, 0.7, 0.6, 0.5, 0],
};

export interface SweepRow extends CascadeResult {
  rule: ExitRule;
  threshold: number;
}

/** The cascade at every threshold of `SWEEP`, both rules, the same threshold at both tiers. */
export function sweep(out: ExitOutputs, from = 0, to = out.n): SweepRow[] {
  const rows: SweepRow[] = [];
  for (const rule of ['entropy', 'top'] as const) {
    for (const threshold of SWEEP[rule]) {
      const s = { rule, threshold };
      rows.push({ rule, threshold, ...runCascade(out, [s, s], from, to) });
    }
  }
  return rows;
}

export interface DefaultChoice {
  rule: ExitRule;
  /** Thresholds at the dew and at the fog. */
  thresholds: [number, number];
  /** The accuracy the answers given early must reach on the rows they were chosen on. */
  target: number;
  chosenOn: CascadeResult & { exit3Accuracy: number };
}

/**
 * Default thresholds, chosen on rows [from, to): at the dew, the loosest threshold of
 * `SWEEP[rule]` up to which (every stricter one too) the digits answered at exit 1 are right at
 * least `target` of the time; then, on the digits that go on, the same at the fog. A target on
 * the early answers themselves, rather than on the cascade's total, since the three exits are
 * within a point of each other and a total within a tolerance would let almost every digit leave
 * at the dew.
 */
export function chooseDefault(
  out: ExitOutputs,
  rule: ExitRule,
  target: number,
  from = 0,
  to = out.n,
): DefaultChoice {
  const chosen: number[] = [];
  for (let k = 0; k < 2; k++) {
    let pick = SWEEP[rule][0]!;
    for (const t of SWEEP[rule]) {
      const settings: ExitSetting[] = chosen.map((c) => ({ rule, threshold: c }));
      settings.push({ rule, threshold: t });
      if (settings.length < 2) settings.push({ rule, threshold: t, off: true });
      const r = runCascade(out, settings, from, to);
      const acc = r.exitAccuracy[k];
      if (acc !== null && acc !== undefined && acc < target) break;
      pick = t;
    }
    chosen.push(pick);
  }
  const thresholds: [number, number] = [chosen[0]!, chosen[1]!];
  const r = runCascade(
    out,
    thresholds.map((threshold) => ({ rule, threshold })),
    from,
    to,
  );
  const exit3Accuracy = exitAccuracies(out, from, to).at(-1)!;
  return { rule, thresholds, target, chosenOn: { ...r, exit3Accuracy } };
}
