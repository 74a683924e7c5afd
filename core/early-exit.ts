/**
 * Exit heads (PROTOCOL.md §2.1 `exit`, §4): after a model with an exit head runs, the host reads
 * the first row of the head's output as a probability vector and says whether the caller may stop
 * there — its top probability (`confidence`) and its softmax entropy normalised to [0, 1] by
 * log(classes) (`entropy`). Rule `entropy`: taken when entropy ≤ threshold; `top`: when confidence
 * ≥ threshold; `off`: never. A call may override the manifest's head with its payload's `exit`.
 * @example
 * const head = exitHead(svc.exit, payload.exit); // InputError naming `exit.threshold` if bad
 * judgeExit(head, new Float32Array([0.9, 0.05, 0.05]));
 * // { taken: false, confidence: 0.9, entropy: 0.3607… } (entropy rule, threshold 0.2)
 */
import { z } from 'zod';
import { InputError, ModelRunError } from './errors';
import { describeIssues } from './issues';
import { type ExitHead, exitRule, exitThreshold } from './manifest-schema';
import { MAX_EXIT_SERVICES } from './protocol';
import { type Tensor, tensorValues } from './tensor';

/** What the host adds to a model's result: `{ outputs, exit }`. */
export interface ExitVerdict {
  taken: boolean;
  /** The top probability of the first row. */
  confidence: number;
  /** Softmax entropy of the first row over log(classes): 0 certain, 1 uniform. */
  entropy: number;
}

const override = z
  .strictObject({
    rule: exitRule.optional(),
    threshold: exitThreshold.optional(),
    off: z.boolean().optional(),
  })
  .optional();

/**
 * The head a call runs with: the manifest's, with the call's `exit` override (hostile: checked,
 * an InputError naming `exit.<field>` when it is not `{ rule?, threshold?, off? }`).
 */
export function exitHead(manifest: ExitHead, callOverride: unknown): ExitHead {
  const r = override.safeParse(callOverride, { reportInput: true });
  if (!r.success) throw new InputError(describeIssues(r.error, ['exit'], { whole: 'exit' }));
  const o = r.data;
  if (!o) return manifest;
  return {
    output: manifest.output,
    rule: o.rule ?? manifest.rule,
    threshold: o.threshold ?? manifest.threshold,
    ...((o.off ?? manifest.off) === true && { off: true }),
  };
}

/**
 * The verdict on `row` (one row of probabilities, at least one class). Values are taken as they
 * are, clamped to [0, 1], and normalised by their sum when it is positive; a row that is not a
 * distribution (NaN, all zeros) is never taken, with confidence 0 and entropy 1.
 */
export function judgeExit(head: ExitHead, row: ArrayLike<number>): ExitVerdict {
  const n = row.length;
  let sum = 0;
  let top = 0;
  for (let i = 0; i < n; i++) {
    const p = clamp01(row[i]!);
    sum += p;
    if (p > top) top = p;
  }
  if (!(sum > 0) || n === 0) return { taken: false, confidence: 0, entropy: 1 };
  let h = 0;
  for (let i = 0; i < n; i++) {
    const p = clamp01(row[i]!) / sum;
    if (p > 0) h -= p * Math.log(p);
  }
  const entropy = n > 1 ? Math.min(1, h / Math.log(n)) : 0;
  const confidence = top / sum;
  const taken =
    head.off !== true &&
    (head.rule === 'entropy' ? entropy <= head.threshold : confidence >= head.threshold);
  return { taken, confidence, entropy };
}

function clamp01(x: number): number {
  return x > 0 ? (x < 1 ? x : 1) : 0; // NaN → 0
}

/** Runs of a model service with an exit head, and how many took the exit (PROTOCOL.md §5.2). */
export interface ExitCount {
  calls: number;
  taken: number;
}

/**
 * A node's exit heads at work: judges a model's result and counts, per `app/modelService`, runs
 * and exits taken since start (what the heartbeat reports). At most MAX_EXIT_SERVICES services
 * are counted, as the heartbeat carries no more.
 */
export class ExitTally {
  private readonly counts = new Map<string, ExitCount>();

  /** The verdict of `head` on the first row of its output in `outputs`, counted under `key`. */
  judge(key: string, head: ExitHead, outputs: Record<string, Tensor>): ExitVerdict {
    const t = Object.hasOwn(outputs, head.output) ? outputs[head.output] : undefined;
    if (t?.type !== 'float32') {
      throw new ModelRunError(
        `model service "${key}" gave no float32 output "${head.output}" for its exit head`,
      );
    }
    const values = tensorValues(t) as Float32Array;
    const last = t.dims.length > 0 ? t.dims[t.dims.length - 1]! : values.length;
    const row = values.subarray(
      0,
      t.dims.length > 1 ? Math.min(last, values.length) : values.length,
    );
    const verdict = judgeExit(head, row);
    let count = this.counts.get(key);
    if (!count && this.counts.size < MAX_EXIT_SERVICES) {
      count = { calls: 0, taken: 0 };
      this.counts.set(key, count);
    }
    if (count) {
      count.calls++;
      if (verdict.taken) count.taken++;
    }
    return verdict;
  }

  /** A copy of the counts, by `app/modelService`. */
  snapshot(): Record<string, ExitCount> {
    const out: Record<string, ExitCount> = {};
    for (const [k, v] of this.counts) out[k] = { ...v };
    return out;
  }
}
