/**
 * Encoding what the relay sends back: a node's answer or a caller's input that arrived within
 * the limits may still not leave (MessagePack's encoder stops at depth 100, and a result plus
 * the relay's own fields may pass the frame limit). Each such failure is a typed error naming
 * the field, for whoever waits on it.
 * @example const bytes = encodeOutgoing({ t: 'result', id, value, rpc, ms, node });
 */
import { encode } from '../core/codec';
import { CodecError, LimitError } from '../core/errors';
import { encodeFrame, frameLimits, type ToNode } from '../core/protocol';

/** The part of each frame a peer supplied, named in errors (the rest is the relay's own). */
const carried: Partial<Record<ToNode['t'], string>> = {
  call: 'input',
  result: 'value',
  'ctx-catchup': 'ops',
};

/** Encodes a frame to a node; throws a CodecError or an E_LIMIT BrumeError naming the field. */
export function encodeOutgoing(frame: ToNode, maxBytes = frameLimits.maxBytes): Uint8Array {
  const field = carried[frame.t] ?? 'frame';
  let bytes: Uint8Array;
  try {
    bytes = encodeFrame(frame);
  } catch (e) {
    throw new CodecError(`the ${field} of a "${frame.t}" cannot be encoded: ${reason(e)}`);
  }
  if (bytes.byteLength > maxBytes) {
    throw new LimitError(
      `the ${field} of a "${frame.t}" makes a frame of ${bytes.byteLength} bytes, over the ${maxBytes}-byte frame limit`,
    );
  }
  return bytes;
}

/** Encodes an HTTP answer as MessagePack; throws a CodecError naming what failed. */
export function encodeAnswer(body: unknown, maxBytes = frameLimits.maxBytes): Uint8Array {
  let bytes: Uint8Array;
  try {
    bytes = encode(body);
  } catch (e) {
    throw new CodecError(`the answer cannot be encoded as MessagePack: ${reason(e)}`);
  }
  if (bytes.byteLength > maxBytes) {
    throw new LimitError(
      `the answer is ${bytes.byteLength} bytes, over the ${maxBytes}-byte limit`,
    );
  }
  return bytes;
}

/**
 * A WebSocket close reason: at most 123 bytes of UTF-8 (ws throws past that), cut between
 * characters, since a reason may quote what a node sent.
 */
export function closeReason(reason: string): string {
  let out = '';
  let bytes = 0;
  for (const ch of reason) {
    bytes += Buffer.byteLength(ch);
    if (bytes > 123) break;
    out += ch;
  }
  return out;
}

/** How deep an answer may nest, in JSON as in MessagePack (whose encoder stops at 100). */
export const MAX_DEPTH = 100;

/**
 * Checks that JSON can carry an HTTP answer as it is: no binary (JSON would turn bytes into an
 * object of numbers) and no nesting past MAX_DEPTH (JSON.stringify would overflow the stack on a
 * deep enough value). Throws a CodecError naming the first field that cannot go.
 */
export function checkJson(body: unknown): void {
  // Iterative: the value may be nested far deeper than the stack allows recursion.
  const stack: Visit[] = [{ v: body, depth: 0 }];
  while (stack.length) {
    const at = stack.pop()!;
    const { v, depth } = at;
    if (v === null || typeof v !== 'object') continue;
    if (ArrayBuffer.isView(v) || v instanceof ArrayBuffer) {
      throw new CodecError(
        `${pathOf(at)} holds binary data, which JSON cannot carry: ask for MessagePack (Accept: application/msgpack)`,
      );
    }
    if (depth >= MAX_DEPTH) {
      throw new CodecError(`${pathOf(at)} is nested past the depth limit of ${MAX_DEPTH}`);
    }
    for (const [key, child] of Object.entries(v))
      stack.push({ v: child, depth: depth + 1, key, up: at });
  }
}

interface Visit {
  v: unknown;
  depth: number;
  key?: string;
  up?: Visit;
}

/** `value.outputs.probs.data`: the field a visit stands for (paths built only for errors). */
function pathOf(at: Visit): string {
  const keys: string[] = [];
  for (let n: Visit | undefined = at; n?.key !== undefined; n = n.up) keys.push(n.key);
  return keys.length ? keys.reverse().join('.').slice(0, 200) : 'the answer';
}

/** The encoder's message, or "too deep" for the stack overflow a deep enough value causes. */
function reason(e: unknown): string {
  if (e instanceof RangeError) return `nested past the encoder's depth (${e.message})`;
  return e instanceof Error ? e.message : String(e);
}
