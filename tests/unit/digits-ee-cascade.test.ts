// The early-exit cascade on hand-made exit outputs (models/digits-ee/cascade.ts), and the bench's
// sweep rows with given tier latencies (tests/bench/early-exit.ts sweepRows).
import { describe, expect, it } from 'vitest';
import {
  chooseDefault,
  type ExitOutputs,
  exitAccuracies,
  runCascade,
  SWEEP,
  sweep,
} from '../../models/digits-ee/cascade';
import { sweepRows } from '../bench/early-exit';

/** A row of 10 probabilities with `top` on `digit` and the rest spread evenly. */
function row(digit: number, top: number): number[] {
  return Array.from({ length: 10 }, (_, j) => (j === digit ? top : (1 - top) / 9));
}

/**
 * 100 digits, all labelled 3. Exit 1: digits 0–79 right and sure (0.9995), 80–89 unsure (0.6,
 * wrong), 90–99 wrong and fairly sure (0.97). Exit 2: 80–89 right and sure, 90–99 wrong at 0.75.
 * Exit 3: all right at 0.9.
 */
function outputs(): ExitOutputs {
  const n = 100;
  const e1: number[] = [];
  const e2: number[] = [];
  const e3: number[] = [];
  for (let r = 0; r < n; r++) {
    e1.push(...(r < 80 ? row(3, 0.9995) : r < 90 ? row(5, 0.6) : row(8, 0.97)));
    e2.push(...(r < 90 ? row(3, 0.9995) : row(1, 0.75)));
    e3.push(...row(3, 0.9));
  }
  return {
    probs: [e1, e2, e3].map((p) => Float32Array.from(p)),
    labels: new Uint8Array(n).fill(3),
    n,
    upBytes: [256, 128],
  };
}

describe('the early-exit cascade', () => {
  it('answers each digit at the first exit whose rule is met, counting the bytes sent up', () => {
    const out = outputs();
    const r = runCascade(out, [
      { rule: 'top', threshold: 0.98 },
      { rule: 'top', threshold: 0.8 },
    ]);
    expect(r.shares).toEqual([0.8, 0.1, 0.1]);
    expect(r.exitAccuracy).toEqual([1, 1, 1]);
    expect(r.accuracy).toBe(1);
    expect(r.bytesUp).toBeCloseTo((20 * 256 + 10 * 128) / 100, 10);
    // A range of rows: only the unsure and the wrong ones.
    const tail = runCascade(
      out,
      [
        { rule: 'top', threshold: 0.5 },
        { rule: 'entropy', threshold: 1 },
      ],
      80,
      100,
    );
    expect(tail).toMatchObject({ n: 20, shares: [1, 0, 0], accuracy: 0, bytesUp: 0 });
    expect(exitAccuracies(out)).toEqual([0.8, 0.9, 1]);
  });

  it('sweeps both rules over every threshold', () => {
    const rows = sweep(outputs());
    expect(rows).toHaveLength(SWEEP.entropy.length + SWEEP.top.length);
    expect(rows.filter((r) => r.rule === 'top').map((r) => r.threshold)).toEqual(SWEEP.top);
    for (const r of rows) expect(r.shares.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 10);
  });

  it('chooses as defaults the loosest thresholds whose early answers meet the target', () => {
    const out = outputs();
    const top = chooseDefault(out, 'top', 0.99);
    // Dew: 0.95 would take the sure-but-wrong digits 90–99; fog: 0.7 the wrong ones there.
    expect(top.thresholds).toEqual([0.98, 0.8]);
    expect(top.chosenOn).toMatchObject({ accuracy: 1, shares: [0.8, 0.1, 0.1], exit3Accuracy: 1 });
    // A lower target lets the wrong digits out early, and the cascade loses them.
    const loose = chooseDefault(out, 'top', 0.85);
    expect(loose.thresholds[0]).toBeLessThan(0.98);
    expect(loose.chosenOn.accuracy).toBeLessThan(1);
    // On the sure rows alone, everything may leave at the dew.
    expect(chooseDefault(out, 'entropy', 0.99, 0, 80).chosenOn.shares[0]).toBe(1);
  });
});

describe('the early-exit bench rows', () => {
  it('times each row from the shares and the tiers, against the cloud alone on raw pixels', () => {
    const latency = { dewMs: 1, fogMs: 2, cloudMs: 4, hopMs: 10 };
    const rows = sweepRows(outputs(), latency, { rule: 'top', dew: 0.98, fog: 0.8 });
    const def = rows.find((r) => r.label.startsWith('default'))!;
    expect(def.shares).toEqual([0.8, 0.1, 0.1]);
    // dew + 20% (hop + fog) + 10% (hop + cloud)
    expect(def.ms).toBeCloseTo(1 + 0.2 * 12 + 0.1 * 14, 10);
    const base = rows.at(-1)!;
    expect(base).toMatchObject({
      rule: 'cloud only',
      bytesUp: 3136,
      accuracy: 1,
      shares: [0, 0, 1],
    });
    expect(base.ms).toBe(17);
    expect(sweepRows(outputs(), { ...latency, cloudOnlyMs: 30 }).at(-1)!.ms).toBe(30);
    // Every digit to exit 3 through the tiers: both hops, every part.
    const all = rows.find((r) => r.label === 'top 1')!;
    expect(all.ms).toBeCloseTo(1 + 12 + 14, 10);
  });
});
