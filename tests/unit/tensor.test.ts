import { describe, expect, it } from 'vitest';
import {
  fromOrtOutputs,
  type TypedArray,
  tensorFrom,
  tensorValues,
  toOrtFeeds,
  toTensor,
} from '../../core/tensor';

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

describe('tensor values', () => {
  it('reads a tensor whose bytes sit at any offset of a Node Buffer, as MessagePack leaves them', () => {
    const values = Float32Array.from({ length: 10 }, (_, i) => i / 7);
    const bytes = new Uint8Array(values.buffer);
    // A pooled Buffer with other data around the tensor, at an offset no float32 can start at.
    for (const offset of [0, 1, 2, 3, 65]) {
      const pool = Buffer.alloc(256, 0xab);
      pool.set(bytes, offset);
      const data = pool.subarray(offset, offset + bytes.byteLength);
      const t = toTensor({ type: 'float32', dims: [10], data }, 'x');
      expect(Array.from(tensorValues(t) as Float32Array), `offset ${offset}`).toEqual(
        Array.from(values),
      );
    }
  });
});
