/**
 * Node ↔ node frames over a WebRTC data channel (PROTOCOL.md §5.4): calls and their answers, a
 * fog's context changes to its dews, and chunks: a message over one chunk is cut into `chunk`
 * frames (a data-channel message over ~256 KB closes the channel) and put together again by a
 * Reassembler whose memory per link is bounded.
 * @example for (const c of chunk(id, bytes)) channel.send(encodeFrame(c));
 *          const whole = reassembler.add(frame); // undefined until the last chunk
 */
import { z } from 'zod';
import { ProtocolError } from '../errors';
import { contextToPeer } from './context';
import { bin, callFields, error, frameLimits, id, resultFields } from './fields';

/** Node ↔ node over a data channel: calls and their answers, chunked past one chunk. */
export const peerFrame = z.discriminatedUnion('t', [
  z.object({
    t: z.literal('call'),
    ...callFields,
    /** From a dew to its parent fog: serve only if you meet the QoS yourself, else refuse. */
    probe: z.boolean().optional(),
  }),
  z.object({ t: z.literal('result'), ...resultFields }),
  z.object({ t: z.literal('error'), id, error }),
  contextToPeer,
  z.object({
    t: z.literal('chunk'),
    id,
    seq: z.number().int().nonnegative(),
    last: z.boolean(),
    data: bin,
  }),
]);

export type PeerFrame = z.infer<typeof peerFrame>;

/** Splits a payload into data-channel chunks (a message over ~256 KB closes a channel). */
export const chunkBytes = 64 * 1024;
export function* chunk(id: number, bytes: Uint8Array): Generator<PeerFrame> {
  const n = Math.max(1, Math.ceil(bytes.byteLength / chunkBytes));
  for (let seq = 0; seq < n; seq++) {
    const data = bytes.subarray(seq * chunkBytes, (seq + 1) * chunkBytes);
    yield { t: 'chunk', id, seq, last: seq === n - 1, data };
  }
}
export interface ReassemblerLimits {
  /** Bytes of one message; default the frame limit (16 MiB). */
  maxBytes?: number;
  /** Messages partly received at once on one link; default 4. */
  maxPartials?: number;
  /** Bytes held for partly received messages on one link; default 32 MiB. */
  maxPartialBytes?: number;
  /** A partial message with no chunk for this long is dropped; default 30 000 ms. */
  staleMs?: number;
  /** The clock, in ms (tests move it by hand). */
  now?: () => number;
}

interface Partial {
  next: number;
  size: number;
  bufs: Uint8Array[];
  lastAt: number;
}

/**
 * Reassembles chunks per id, in order. What one link may hold is bounded: the bytes of a message,
 * the number of messages partly received and their bytes together; a partial message that stops
 * getting chunks is dropped. A gap or a limit passed is a ProtocolError naming it.
 */
export class Reassembler {
  private readonly parts = new Map<number, Partial>();
  private held = 0;
  private readonly limits: Required<ReassemblerLimits>;
  constructor(limits: ReassemblerLimits | number = {}) {
    const l = typeof limits === 'number' ? { maxBytes: limits } : limits;
    this.limits = {
      maxBytes: l.maxBytes ?? frameLimits.maxBytes,
      maxPartials: l.maxPartials ?? 4,
      maxPartialBytes: l.maxPartialBytes ?? 32 * 1024 * 1024,
      staleMs: l.staleMs ?? 30_000,
      now: l.now ?? (() => performance.now()),
    };
  }

  /** Bytes held now for messages partly received. */
  get bytes(): number {
    return this.held;
  }

  /** Messages partly received now. */
  get partials(): number {
    return this.parts.size;
  }

  /** Answers the whole payload when `c` completes one, else undefined. */
  add(c: Extract<PeerFrame, { t: 'chunk' }>): Uint8Array | undefined {
    const { maxBytes, maxPartials, maxPartialBytes } = this.limits;
    const now = this.limits.now();
    this.dropStale(now);
    let p = this.parts.get(c.id);
    if (!p) {
      if (c.seq === 0 && !c.last && this.parts.size >= maxPartials) {
        throw new ProtocolError(
          `message ${c.id} would be partial message ${this.parts.size + 1} on this link (limit ${maxPartials})`,
        );
      }
      p = { next: 0, size: 0, bufs: [], lastAt: now };
    }
    if (c.seq !== p.next) {
      this.drop(c.id);
      throw new ProtocolError(
        `chunk ${c.seq} of message ${c.id} arrived where ${p.next} was expected`,
      );
    }
    const n = c.data.byteLength;
    if (p.size + n > maxBytes) {
      this.drop(c.id);
      throw new ProtocolError(`message ${c.id} exceeds ${maxBytes} bytes`);
    }
    const wouldHold = this.held + n;
    if (!c.last && wouldHold > maxPartialBytes) {
      this.drop(c.id);
      throw new ProtocolError(
        `partial messages on this link would hold ${wouldHold} bytes (limit ${maxPartialBytes})`,
      );
    }
    if (c.last) this.drop(c.id); // before its size grows: `held` counts what was added
    p.next++;
    p.size += n;
    p.lastAt = now;
    p.bufs.push(c.data.slice());
    if (!c.last) {
      this.held += n;
      this.parts.set(c.id, p);
      return undefined;
    }
    const out = new Uint8Array(p.size);
    let at = 0;
    for (const b of p.bufs) {
      out.set(b, at);
      at += b.byteLength;
    }
    return out;
  }

  /** Drops partial messages (their link dropped). */
  clear(): void {
    this.parts.clear();
    this.held = 0;
  }

  private drop(id: number): void {
    const p = this.parts.get(id);
    if (!p) return;
    this.parts.delete(id);
    this.held -= p.size;
  }

  // A sender that stopped mid-message will not finish it: its bytes are not kept for ever.
  private dropStale(now: number): void {
    for (const [id, p] of this.parts) {
      if (now - p.lastAt > this.limits.staleMs) this.drop(id);
    }
  }
}
