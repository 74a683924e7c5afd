/**
 * The hub's bounds: what one node, one client address and the whole relay may hold at once (calls
 * in flight, bytes kept for them, bytes queued on a socket, sockets, time to join). Each is an
 * option of createHub/createRelay and a flag of `brume start`; each refusal is an E_LIMIT error
 * that names the limit and its value.
 * @example const counts = new CallCounts(); counts.add(call); callRefusal(limits, counts, target, bytes);
 */
import type { IncomingMessage } from 'node:http';
import { type BrumeError, LimitError, RateLimitError, UnavailableError } from '../core/errors';

export interface HubLimits {
  /** Calls forwarded to one node and not answered yet; also calls one node waits on through the relay. */
  callsPerNode: number;
  /** Calls in flight through the relay, from nodes and HTTP callers together. */
  callsInFlight: number;
  /** Bytes of call input the relay keeps for calls in flight (to place them again if a node is lost). */
  callBytes: number;
  /** Bytes queued on one node's socket: calls to it are refused above this; it is closed if it stays above. */
  nodeBufferedBytes: number;
  /** A socket that has not joined within this is closed. */
  joinTimeoutMs: number;
  /** Node sockets open from one client address. */
  connsPerAddress: number;
  /** Node sockets open in all. */
  conns: number;
  /** Sessions one node has open as their caller (PROTOCOL.md §5.9). */
  sessionsPerNode: number;
  /** Sessions open on the relay in all. */
  sessions: number;
  /** Sessions one node serves: the relay places no more on it (PROTOCOL.md §5.9). */
  sessionsServed: number;
}

const MiB = 1024 * 1024;

export const defaultLimits: HubLimits = {
  callsPerNode: 64,
  callsInFlight: 4096,
  callBytes: 256 * MiB,
  // Above the largest frame (16 MiB), so one big call to a reading node is never refused.
  nodeBufferedBytes: 32 * MiB,
  joinTimeoutMs: 10_000,
  // Generous: a school or an office shows many tabs behind one address.
  connsPerAddress: 256,
  conns: 10_000,
  sessionsPerNode: 16,
  sessions: 10_000,
  sessionsServed: 64,
};

/** What the counts need of a call in flight. */
export interface InFlight {
  target: string;
  caller: string;
  bytes: number;
}

/**
 * Counts the calls in flight per executing node, per calling node and in bytes. The table of
 * calls (core/pending.ts) tells it of every call that enters and leaves, however it leaves, so
 * the counts stay true.
 */
export class CallCounts {
  private readonly perNode = new Map<string, number>();
  size = 0;
  bytes = 0;

  add(call: InFlight): void {
    this.bump(`t:${call.target}`, 1);
    if (call.caller) this.bump(`c:${call.caller}`, 1);
    this.size++;
    this.bytes += call.bytes;
  }

  remove(call: InFlight): void {
    this.bump(`t:${call.target}`, -1);
    if (call.caller) this.bump(`c:${call.caller}`, -1);
    this.size--;
    this.bytes -= call.bytes;
  }

  /** Calls node `id` runs for the relay now. */
  running(id: string): number {
    return this.perNode.get(`t:${id}`) ?? 0;
  }

  /** Calls node `id` asked the relay to run elsewhere and still waits on. */
  asked(id: string): number {
    return this.perNode.get(`c:${id}`) ?? 0;
  }

  private bump(key: string, by: number): void {
    const n = (this.perNode.get(key) ?? 0) + by;
    if (n > 0) this.perNode.set(key, n);
    else this.perNode.delete(key);
  }
}

/** Why a call may not go to `target` now, or undefined when it may. */
export function callRefusal(
  limits: HubLimits,
  table: CallCounts,
  target: { id: string; buffered: number },
  bytes: number,
): LimitError | undefined {
  const short = target.id.slice(0, 8);
  if (table.size >= limits.callsInFlight)
    return new LimitError(
      `the relay has ${table.size} calls in flight (limit ${limits.callsInFlight}): try again shortly`,
    );
  if (table.running(target.id) >= limits.callsPerNode)
    return new LimitError(
      `node ${short} has ${table.running(target.id)} calls in flight (limit ${limits.callsPerNode})`,
    );
  if (target.buffered > limits.nodeBufferedBytes)
    return new LimitError(
      `node ${short} has ${target.buffered} bytes waiting to be sent (limit ${limits.nodeBufferedBytes})`,
    );
  if (table.bytes + bytes > limits.callBytes)
    return new LimitError(
      `calls in flight hold ${table.bytes} bytes and this one ${bytes} (limit ${limits.callBytes})`,
    );
  return undefined;
}

/** Why node `caller` may not ask for one more call through the relay, or undefined. */
export function askRefusal(
  limits: HubLimits,
  table: CallCounts,
  caller: string,
): LimitError | undefined {
  const n = table.asked(caller);
  if (n < limits.callsPerNode) return undefined;
  return new LimitError(
    `node ${caller.slice(0, 8)} waits on ${n} calls through the relay (limit ${limits.callsPerNode})`,
  );
}

/**
 * A rough size of a decoded value, in bytes (binaries and strings by length, a few bytes per
 * item): what the relay holds for a call, without encoding it a second time. Bounded by the
 * decoder's own limits on what it accepted.
 */
export function sizeOf(value: unknown, depth = 0): number {
  if (value instanceof Uint8Array) return value.byteLength + 5;
  if (ArrayBuffer.isView(value)) return value.byteLength + 5;
  if (typeof value === 'string') return value.length + 5;
  if (value === null || typeof value !== 'object' || depth > 64) return 9;
  let n = 5;
  if (Array.isArray(value)) for (const v of value) n += sizeOf(v, depth + 1);
  else for (const [k, v] of Object.entries(value)) n += k.length + 5 + sizeOf(v, depth + 1);
  return n;
}

/** Node sockets per client address and in all, counted from accept to close. */
export class Admission {
  private readonly perAddress = new Map<string, number>();
  total = 0;
  constructor(private readonly limits: HubLimits) {}

  /** Why this upgrade is refused (HTTP 503 when the relay is full, 429 per address), or undefined. */
  refusal(req: IncomingMessage): BrumeError | undefined {
    const address = addressOf(req);
    if (this.total >= this.limits.conns)
      return new UnavailableError(
        `the relay has ${this.total} node sockets open (limit ${this.limits.conns})`,
      );
    const n = this.perAddress.get(address) ?? 0;
    if (n >= this.limits.connsPerAddress)
      return new RateLimitError(
        `${address} has ${n} node sockets open (limit ${this.limits.connsPerAddress} per address)`,
      );
    return undefined;
  }

  /** Counts a socket in; answers the function that counts it out (once). */
  admit(req: IncomingMessage): () => void {
    const address = addressOf(req);
    this.perAddress.set(address, (this.perAddress.get(address) ?? 0) + 1);
    this.total++;
    let out = false;
    return () => {
      if (out) return;
      out = true;
      this.total--;
      const n = (this.perAddress.get(address) ?? 1) - 1;
      if (n > 0) this.perAddress.set(address, n);
      else this.perAddress.delete(address);
    };
  }
}

/** The peer address of the TCP connection (a proxy's forwarding headers are not believed). */
function addressOf(req: IncomingMessage): string {
  return req.socket.remoteAddress ?? 'unknown';
}

/**
 * A token bucket: `burst` at first and at most, refilled at `perSecond`; `take()` answers whether
 * one more is allowed now (and spends it). For per-socket rates (frames, forwarded signals).
 */
export function tokenBucket(burst: number, perSecond: number): { take(): boolean } {
  let tokens = burst;
  let filledAt = performance.now();
  return {
    take() {
      const now = performance.now();
      tokens = Math.min(burst, tokens + ((now - filledAt) / 1000) * perSecond);
      filledAt = now;
      if (tokens < 1) return false;
      tokens -= 1;
      return true;
    },
  };
}
