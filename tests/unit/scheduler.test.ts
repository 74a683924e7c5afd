import { describe, expect, it } from 'vitest';
import { QosError } from '../../core/errors';
import { chooseVariant, type VariantCandidate } from '../../core/scheduler';

const variants: VariantCandidate[] = [
  { rpc: 'small', accuracy: 0.93, estimateMs: 0.4, measured: true },
  { rpc: 'large', accuracy: 0.97, estimateMs: 2.5, measured: false },
];

describe('chooseVariant', () => {
  it('picks the most accurate variant when nothing is asked', () => {
    const d = chooseVariant('model', variants);
    expect(d.rpc).toBe('large');
    expect(d.reason).toMatch(/no latency budget/);
  });

  it('keeps to the latency budget', () => {
    expect(chooseVariant('model', variants, { latencyMs: 1 }).rpc).toBe('small');
    expect(chooseVariant('model', variants, { latencyMs: 3 }).rpc).toBe('large');
  });

  it('never picks a variant below the accuracy asked for', () => {
    expect(chooseVariant('model', variants, { accuracy: 0.95 }).rpc).toBe('large');
    expect(chooseVariant('model', variants, { accuracy: 0.9, latencyMs: 1 }).rpc).toBe('small');
  });

  it('says which constraint failed and the best achievable figure', () => {
    const tooAccurate = () => chooseVariant('model', variants, { accuracy: 0.99 });
    expect(tooAccurate).toThrow(QosError);
    try {
      tooAccurate();
    } catch (e) {
      expect((e as QosError).constraint).toBe('accuracy');
      expect((e as QosError).best).toBe(0.97);
      expect((e as QosError).code).toBe('E_QOS');
    }
    try {
      chooseVariant('model', variants, { accuracy: 0.95, latencyMs: 1 });
      expect.unreachable();
    } catch (e) {
      expect((e as QosError).constraint).toBe('latencyMs');
      expect((e as QosError).best).toBe(2.5);
    }
  });

  it('breaks accuracy ties by speed', () => {
    const tied = [
      { rpc: 'a', accuracy: 0.9, estimateMs: 3, measured: true },
      { rpc: 'b', accuracy: 0.9, estimateMs: 1, measured: true },
    ];
    expect(chooseVariant('m', tied).rpc).toBe('b');
  });
});
