import { InputError, ModelRunError } from './errors';

/** PROTOCOL.md §4. `data` is little-endian, row-major. */
export type TensorType = 'float32' | 'int32' | 'int64' | 'uint8' | 'bool';
export interface Tensor {
  type: TensorType;
  dims: number[];
  data: Uint8Array;
}
export type TypedArray = Float32Array | Int32Array | BigInt64Array | Uint8Array;

const bytesPer: Record<TensorType, number> = { float32: 4, int32: 4, int64: 8, uint8: 1, bool: 1 };
const ctor = {
  float32: Float32Array,
  int32: Int32Array,
  int64: BigInt64Array,
  uint8: Uint8Array,
  bool: Uint8Array,
} as const;

/** Checks a tensor from a caller or a guest and gives its data as raw bytes. */
export function toTensor(value: unknown, what: string): Tensor {
  const t = value as { type?: unknown; dims?: unknown; data?: unknown } | null;
  if (!t || typeof t !== 'object')
    throw new InputError(`${what}: expected a tensor {type, dims, data}`);
  const type = t.type as TensorType;
  if (!(type in bytesPer)) {
    throw new InputError(
      `${what}.type: "${String(t.type)}" is not one of ${Object.keys(bytesPer).join(', ')}`,
    );
  }
  if (!Array.isArray(t.dims) || !t.dims.every((d) => Number.isInteger(d) && d >= 0)) {
    throw new InputError(`${what}.dims: expected an array of non-negative integers`);
  }
  const data = t.data;
  let bytes: Uint8Array;
  if (data instanceof Uint8Array) bytes = data;
  else if (ArrayBuffer.isView(data))
    bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  else throw new InputError(`${what}.data: expected binary data or a typed array`);
  const count = (t.dims as number[]).reduce((a, b) => a * b, 1);
  if (bytes.byteLength !== count * bytesPer[type]) {
    throw new InputError(
      `${what}: dims [${t.dims}] of ${type} need ${count * bytesPer[type]} bytes, got ${bytes.byteLength}`,
    );
  }
  return { type, dims: t.dims as number[], data: bytes };
}

/** The tensor's elements as a typed array (copied only when the bytes are misaligned). */
export function tensorValues(t: Tensor): TypedArray {
  const C = ctor[t.type];
  const n = t.data.byteLength / bytesPer[t.type];
  if (t.data.byteOffset % bytesPer[t.type] === 0)
    return new C(t.data.buffer as ArrayBuffer, t.data.byteOffset, n);
  // Copied into a buffer of its own. Not with `slice()`: on a Node Buffer (what MessagePack
  // decodes a Buffer body into) it is a view of the same memory, and `.buffer` the whole pool.
  const copy = new Uint8Array(t.data.byteLength);
  copy.set(t.data);
  return new C(copy.buffer, 0, n);
}

export function tensorFrom(type: TensorType, dims: number[], values: TypedArray): Tensor {
  return { type, dims, data: new Uint8Array(values.buffer, values.byteOffset, values.byteLength) };
}

/** Checks `t` against a manifest spec, where -1 is a free dimension. */
export function checkSpec(t: Tensor, spec: { name: string; type: string; dims: number[] }): void {
  const ok =
    t.type === spec.type &&
    t.dims.length === spec.dims.length &&
    spec.dims.every((d, i) => d === -1 || d === t.dims[i]);
  if (!ok) {
    throw new InputError(
      `input "${spec.name}" must be ${spec.type} [${spec.dims.map((d) => (d === -1 ? '?' : d))}], got ${t.type} [${t.dims}]`,
    );
  }
}

/** An onnxruntime tensor as far as Brume reads one (onnxruntime-web and -node alike). */
export interface OrtTensorLike {
  readonly type: string;
  readonly dims: readonly number[];
  readonly data: unknown;
}

/** The Tensor constructor of an onnxruntime build, passed in: core imports no onnxruntime. */
export type OrtTensorClass<T> = new (
  type: TensorType,
  data: TypedArray,
  dims: readonly number[],
) => T;

/** onnxruntime feeds for Brume tensors, made with the runtime's own Tensor class. */
export function toOrtFeeds<T>(
  Tensor: OrtTensorClass<T>,
  inputs: Record<string, Tensor>,
): Record<string, T> {
  const feeds: Record<string, T> = {};
  for (const [name, t] of Object.entries(inputs)) {
    feeds[name] = new Tensor(t.type, tensorValues(t), t.dims);
  }
  return feeds;
}

/**
 * Brume tensors of onnxruntime outputs: views over the outputs' bytes, so copy them before a
 * transfer (an output may live in onnxruntime's own heap). A type Brume does not carry
 * (PROTOCOL.md §4) is a ModelRunError naming the output.
 */
export function fromOrtOutputs(results: Record<string, OrtTensorLike>): Record<string, Tensor> {
  const outputs: Record<string, Tensor> = {};
  for (const [name, t] of Object.entries(results)) {
    const data = t.data;
    if (!(t.type in bytesPer) || !ArrayBuffer.isView(data)) {
      throw new ModelRunError(
        `output "${name}" is ${t.type}: a model's outputs must be one of ${Object.keys(bytesPer).join(', ')}`,
      );
    }
    outputs[name] = {
      type: t.type as TensorType,
      dims: [...t.dims],
      data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
    };
  }
  return outputs;
}
