import { Decoder, Encoder } from '@msgpack/msgpack';
import { CodecError } from './errors';

/** Upper bounds for decoding bytes that came from a guest or the network. */
export interface DecodeLimits {
  maxBytes: number;
  maxStrLength: number;
  maxBinLength: number;
  maxArrayLength: number;
  maxMapLength: number;
}

export const defaultLimits: DecodeLimits = {
  maxBytes: 64 * 1024 * 1024,
  maxStrLength: 1024 * 1024,
  maxBinLength: 64 * 1024 * 1024,
  maxArrayLength: 1_000_000,
  maxMapLength: 100_000,
};

const encoder = new Encoder({ ignoreUndefined: true });

/** MessagePack-encodes a value; typed arrays other than Uint8Array go as their raw bytes. */
export function encode(value: unknown): Uint8Array {
  return encoder.encode(normalize(value));
}

/** Decodes MessagePack within `limits`; anything malformed or oversized is a CodecError. */
export function decode(bytes: Uint8Array, limits: DecodeLimits = defaultLimits): unknown {
  if (bytes.byteLength > limits.maxBytes) {
    throw new CodecError(
      `message of ${bytes.byteLength} bytes exceeds the ${limits.maxBytes}-byte limit`,
    );
  }
  const decoder = new Decoder({ ...limits, maxExtLength: 0, useBigInt64: false });
  try {
    return decoder.decode(bytes);
  } catch (e) {
    throw new CodecError(`invalid MessagePack: ${(e as Error).message}`, { cause: e });
  }
}

// msgpack has no typed arrays; send them as bin (little-endian, as every Brume host is).
function normalize(value: unknown): unknown {
  if (value === null || typeof value !== 'object') return value;
  if (value instanceof Uint8Array) return value;
  if (ArrayBuffer.isView(value)) {
    return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
  }
  if (value instanceof ArrayBuffer) return new Uint8Array(value);
  if (Array.isArray(value)) return value.map(normalize);
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) out[k] = normalize(v);
  return out;
}
