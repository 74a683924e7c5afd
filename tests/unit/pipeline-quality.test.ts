/** Seed 001 Algorithm 1 with 19 sources and two qualities (its §VII), and per-request levels. */
import { describe, expect, it } from 'vitest';
import { InputError, QosError } from '../../core/errors';
import {
  applyQuality,
  chooseDistribution,
  chooseLevel,
  LevelStats,
} from '../../core/pipeline/quality';
import type { QualityLevel } from '../../core/pipeline/schema';

const lvl = (value: number, accuracy: number, latencyMs: number): QualityLevel => ({
  value,
  accuracy,
  latencyMs,
  measured: 'test figures',
});

/** §VII: AP50 of YOLOv4-512 64.9%, of YOLOv4-416 62.7%; 416p is the faster. */
const yolo = [lvl(512, 0.649, 40), lvl(416, 0.627, 25)];

function qosError(f: () => unknown): QosError {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(QosError);
    return e as QosError;
  }
  throw new Error('no QosError');
}

describe('Algorithm 1 with 19 sources', () => {
  it('never chooses a distribution below a_min, and otherwise the fastest', () => {
    for (let aMin = 0.6; aMin <= 0.649; aMin += 0.001) {
      const d = chooseDistribution(yolo, 19, aMin);
      expect(d.accuracy).toBeGreaterThanOrEqual(aMin);
      expect(d.counts[0]! + d.counts[1]!).toBe(19);
      // The fastest acceptable: one more source at 416p would fall below a_min (or none is left).
      if (d.counts[0]! > 0) {
        const more = ((d.counts[0]! - 1) * 0.649 + (d.counts[1]! + 1) * 0.627) / 19;
        expect(more).toBeLessThan(aMin);
      }
    }
    expect(chooseDistribution(yolo, 19, 0.5).counts).toEqual([0, 19]); // the seed's default a_min
    expect(chooseDistribution(yolo, 19, 0.649).counts).toEqual([19, 0]);
  });

  it('takes a slower distribution when it is < 10 ms slower and ≥ 20 points more accurate', () => {
    const levels = [lvl(512, 0.95, 30), lvl(416, 0.5, 24)];
    const d = chooseDistribution(levels, 19, 0.5);
    expect(d.counts).not.toEqual([0, 19]); // the fastest, all at 416p, lost to the override
    const fastest = { latencyMs: 24, accuracy: 0.5 };
    expect(d.accuracy - fastest.accuracy).toBeGreaterThanOrEqual(0.2);
    expect(d.latencyMs - fastest.latencyMs).toBeLessThan(10);
    // Without the override's margin (11 ms slower per source at 512p: the 20 points cost ≥ 10 ms).
    const slow = [lvl(512, 0.95, 35 + 24), lvl(416, 0.5, 24)];
    expect(chooseDistribution(slow, 19, 0.5).counts).toEqual([0, 19]);
  });

  it('refuses the joining source when a_min cannot be met, naming the best achievable', () => {
    const e = qosError(() => chooseDistribution(yolo, 19, 0.7));
    expect(e.constraint).toBe('accuracy');
    expect(e.best).toBeCloseTo(0.649, 6);
    expect(e.message).toContain('refused');
  });

  it('bounds the number of distributions it scans', () => {
    const many = Array.from({ length: 16 }, (_, i) => lvl(i, 0.5, 1));
    expect(() => chooseDistribution(many, 64, 0)).toThrow(InputError);
  });
});

describe('quality levels of one request', () => {
  const ocr = [lvl(320, 0.8, 150), lvl(480, 0.88, 250), lvl(640, 0.93, 400), lvl(960, 0.95, 900)];

  it('chooses the fastest level meeting qos.accuracy', () => {
    expect(chooseLevel(ocr, {}).level.value).toBe(320);
    expect(chooseLevel(ocr, { accuracy: 0.85 }).level.value).toBe(480);
    expect(chooseLevel(ocr, { accuracy: 0.93 }).level.value).toBe(640);
  });

  it('refuses with the best achievable accuracy, or the fastest latency that meets it', () => {
    const e = qosError(() => chooseLevel(ocr, { accuracy: 0.99 }));
    expect([e.constraint, e.best]).toEqual(['accuracy', 0.95]);
    const t = qosError(() => chooseLevel(ocr, { accuracy: 0.9, latencyMs: 300 }));
    expect([t.constraint, t.best]).toEqual(['latencyMs', 400]);
  });

  it('takes exactly 20 points as 20 points (0.7 − 0.5 is 0.19999999999999996 in binary)', () => {
    expect(chooseLevel([lvl(1, 0.5, 20), lvl(2, 0.7, 25)]).level.value).toBe(2);
    expect(chooseLevel([lvl(1, 0.5, 20), lvl(2, 0.69, 25)]).level.value).toBe(1);
  });

  it('never trades a level within qos.latencyMs for one past it', () => {
    // Without a budget the override takes B (8 ms slower, 25 points more accurate); with 100 ms,
    // only A fits, and A is what the call gets rather than a refusal.
    const levels = [lvl(1, 0.6, 95), lvl(2, 0.85, 103)];
    expect(chooseLevel(levels).level.value).toBe(2);
    expect(chooseLevel(levels, { latencyMs: 100 }).level.value).toBe(1);
  });

  it('re-evaluates as measured figures replace the declared ones', () => {
    const stats = new LevelStats();
    // 320 measures slower here than 480 is declared: 480 becomes the fastest, and is chosen.
    for (let i = 0; i < 3; i++) stats.record(320, 255);
    expect(chooseLevel(ocr, {}, stats).level.value).toBe(480); // 250 ms declared < 255 measured
    expect(chooseLevel(ocr, {}, stats).measured).toBe(false);
    // Two samples do not count yet.
    const few = new LevelStats();
    few.record(320, 999);
    few.record(320, 999);
    expect(chooseLevel(ocr, {}, few).level.value).toBe(320);
  });

  it("writes the level into the input, keeps a caller's own level, and refuses one that is not a level", () => {
    const q = { field: 'side', levels: ocr };
    const a = applyQuality(q, { width: 2 }, { accuracy: 0.9 });
    expect(a.input).toEqual({ width: 2, side: 640 });
    expect(applyQuality(q, { side: 960 }, {}).choice.level.value).toBe(960);
    expect(() => applyQuality(q, { side: 500 }, {})).toThrow('input.side must be one of');
    expect(() => applyQuality(q, [1, 2], {})).toThrow(InputError);
  });
});
