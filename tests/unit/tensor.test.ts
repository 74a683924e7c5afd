import { describe, expect, it } from 'vitest';
import { fromOrtOutputs, type TypedArray, tensorFrom, toOrtFeeds } from '../../core/tensor';

/** A stand-in for onnxruntime's Tensor class: it keeps what it was made with. */
class FakeOrtTensor {
  constructor(
    readonly type: string,
    readonly data: TypedArray,
    readonly dims: readonly number[],
  ) {}
}

describe('onnxruntime tensor glue', () => {
  it('makes feeds with the runtime class and reads outputs back as the same bytes', () => {
    const input = tensorFrom('float32', [1, 3], new Float32Array([1, 2.5, -3]));
    const feeds = toOrtFeeds(FakeOrtTensor, { x: input });
    expect(feeds.x).toBeInstanceOf(FakeOrtTensor);
    expect([...(feeds.x!.data as Float32Array)]).toEqual([1, 2.5, -3]);
    const back = fromOrtOutputs(feeds);
    expect(back.x).toEqual(input);
  });

  it('refuses an output type Brume does not carry, naming the output', () => {
    expect(() => fromOrtOutputs({ y: { type: 'string', dims: [1], data: ['a'] } })).toThrow(
      /output "y" is string/,
    );
  });
});
