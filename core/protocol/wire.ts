/**
 * Frames to bytes and back (PROTOCOL.md §5): MessagePack under the frame limits, then the schema
 * of the direction they travel in. Anything malformed is a ProtocolError naming the problem,
 * because the other end may be hostile.
 * @example ws.send(encodeFrame({ t: 'schedule', id: 7, app: 'digits', service: 'classify', qos: {} }));
 *          const msg = decodeFrame(bytes, 'toRelay'); // throws ProtocolError on anything else
 */
import type { z } from 'zod';
import { decode, encode } from '../codec';
import { ProtocolError } from '../errors';
import { describeIssues } from '../issues';
import { frameLimits } from './fields';
import { type PeerFrame, peerFrame } from './peer';
import { type ToNode, type ToRelay, toNode, toRelay } from './relay';

const schemas = { toRelay, toNode, peer: peerFrame };
type Direction = keyof typeof schemas;
type Frame<D extends Direction> = z.infer<(typeof schemas)[D]>;

export function encodeFrame(frame: ToRelay | ToNode | PeerFrame): Uint8Array {
  return encode(frame);
}

/** Decodes and validates one frame; anything malformed is a ProtocolError naming the problem. */
export function decodeFrame<D extends Direction>(bytes: Uint8Array, direction: D): Frame<D> {
  let raw: unknown;
  try {
    raw = decode(bytes, frameLimits);
  } catch (e) {
    throw new ProtocolError(`undecodable frame: ${(e as Error).message}`);
  }
  const parsed = schemas[direction].safeParse(raw, { reportInput: true });
  if (!parsed.success) {
    const t = (raw as { t?: unknown } | null)?.t;
    const what = describeIssues(parsed.error, [], { max: 3, whole: 'the frame' });
    throw new ProtocolError(
      `invalid ${typeof t === 'string' ? `"${t.slice(0, 32)}" ` : ''}frame: ${what}`,
    );
  }
  return parsed.data as Frame<D>;
}
