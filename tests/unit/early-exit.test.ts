// The exit-head rule (core/early-exit.ts): confidence and normalised entropy of a row, each rule,
// `off`, a call's override (checked field by field), and rows that are not distributions.
import { describe, expect, it } from 'vitest';
import { exitHead, judgeExit } from '../../core/early-exit';
import { InputError } from '../../core/errors';
import type { ExitHead } from '../../core/manifest';

const entropyHead: ExitHead = { output: 'probs', rule: 'entropy', threshold: 0.2 };
const topHead: ExitHead = { output: 'probs', rule: 'top', threshold: 0.9 };

/** Shannon entropy over log(n), computed plainly. */
function normalisedEntropy(p: number[]): number {
  return -p.reduce((h, x) => (x > 0 ? h + x * Math.log(x) : h), 0) / Math.log(p.length);
}

describe('judgeExit', () => {
  it('gives the top probability and the entropy over log(classes)', () => {
    const row = [0.7, 0.2, 0.1, 0];
    const v = judgeExit(entropyHead, new Float32Array(row));
    expect(v.confidence).toBeCloseTo(0.7, 6);
    expect(v.entropy).toBeCloseTo(normalisedEntropy(row), 6);
    expect(judgeExit(entropyHead, [1, 0, 0]).entropy).toBe(0);
    expect(judgeExit(entropyHead, [0.25, 0.25, 0.25, 0.25]).entropy).toBeCloseTo(1, 12);
  });

  it('takes the exit by entropy at or under the threshold, by top at or over it', () => {
    const sure = [0.97, 0.01, 0.01, 0.01];
    const unsure = [0.4, 0.3, 0.2, 0.1];
    expect(judgeExit(entropyHead, sure).taken).toBe(true);
    expect(judgeExit(entropyHead, unsure).taken).toBe(false);
    expect(judgeExit(topHead, sure).taken).toBe(true);
    expect(judgeExit(topHead, unsure).taken).toBe(false);
    // The boundary itself is taken, on both rules.
    expect(judgeExit({ ...topHead, threshold: 0.4 }, unsure).taken).toBe(true);
    const h = judgeExit(entropyHead, unsure).entropy;
    expect(judgeExit({ ...entropyHead, threshold: h }, unsure).taken).toBe(true);
    // Threshold 0 on entropy: only a certain row; 1 on top: only a certain row.
    expect(judgeExit({ ...entropyHead, threshold: 0 }, sure).taken).toBe(false);
    expect(judgeExit({ ...topHead, threshold: 1 }, [1, 0]).taken).toBe(true);
  });

  it('never takes an exit that is off, and still reports the figures', () => {
    const v = judgeExit({ ...topHead, threshold: 0, off: true }, [1, 0, 0]);
    expect(v).toEqual({ taken: false, confidence: 1, entropy: 0 });
  });

  it('normalises a row that does not sum to 1 and never takes one that is not a distribution', () => {
    expect(judgeExit(topHead, [2, 2]).confidence).toBeCloseTo(0.5, 12); // clamped to 1 each
    expect(judgeExit(topHead, [0.45, 0.05]).confidence).toBeCloseTo(0.9, 6);
    const none = { taken: false, confidence: 0, entropy: 1 };
    expect(judgeExit({ ...topHead, threshold: 0 }, [0, 0, 0])).toEqual(none);
    expect(judgeExit({ ...topHead, threshold: 0 }, [Number.NaN, Number.NaN])).toEqual(none);
    expect(judgeExit({ ...topHead, threshold: 0 }, [])).toEqual(none);
    expect(judgeExit(entropyHead, [-1, 1, Number.POSITIVE_INFINITY])).toMatchObject({
      confidence: 0.5,
    });
  });
});

describe('exitHead', () => {
  it('is the manifest’s head without an override, and the override field by field', () => {
    expect(exitHead(entropyHead, undefined)).toBe(entropyHead);
    expect(exitHead(entropyHead, { threshold: 0.5 })).toEqual({ ...entropyHead, threshold: 0.5 });
    expect(exitHead(entropyHead, { rule: 'top', threshold: 0.8 })).toEqual({
      output: 'probs',
      rule: 'top',
      threshold: 0.8,
    });
    expect(exitHead(entropyHead, { off: true })).toEqual({ ...entropyHead, off: true });
    // A call may turn back on an exit the manifest turned off.
    expect(exitHead({ ...topHead, off: true }, { off: false })).toEqual(topHead);
  });

  it.each([
    [{ threshold: 2 }, 'exit.threshold must be at most 1'],
    [{ threshold: -0.1 }, 'exit.threshold must be at least 0'],
    [{ threshold: '0.5' }, 'exit.threshold'],
    [{ rule: 'margin' }, 'exit.rule'],
    [{ off: 'yes' }, 'exit.off'],
    [{ output: 'features' }, 'exit.output is not a known field'],
    ['entropy', 'exit'],
    [[0.5], 'exit'],
  ])('refuses the override %j, naming %s', (override, field) => {
    let error: unknown;
    try {
      exitHead(entropyHead, override);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(InputError);
    expect((error as InputError).code).toBe('E_INPUT');
    expect((error as Error).message.startsWith(field), (error as Error).message).toBe(true);
  });
});
