import { describe, expect, it } from 'vitest';
import { fastest, median } from '../../core/exec/model-runner';

describe('choosing a backend by measurement', () => {
  it('keeps the backend with the lower median, not the lower mean or minimum', () => {
    // One lucky WebGPU run and one slow WASM outlier: the medians still say WASM.
    const samples = { webgpu: [0.01, 4, 4.2, 3.9, 4.1], wasm: [0.05, 0.06, 9, 0.05, 0.06] };
    expect(fastest(samples, ['webgpu', 'wasm'])).toBe('wasm');
  });

  it('breaks a tie by the order asked, skips backends not measured, and answers none for none', () => {
    expect(fastest({ webgpu: [1, 2], wasm: [2, 1] }, ['webgpu', 'wasm'])).toBe('webgpu');
    expect(fastest({ webgpu: [1, 2], wasm: [2, 1] }, ['wasm', 'webgpu'])).toBe('wasm');
    expect(fastest({ wasm: [3] }, ['webgpu', 'wasm'])).toBe('wasm');
    expect(fastest({ webgpu: [] }, ['webgpu', 'wasm'])).toBeUndefined();
  });

  it('takes the middle sample, or the mean of the two middle ones', () => {
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 3, 2])).toBe(2.5);
  });
});
