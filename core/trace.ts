/**
 * Trace ids: one id, made where a request first enters the fabric (a page call, an HTTP call),
 * travels with it through the relay, peers and a Logic's nested calls, and is logged by every
 * relay that handles it. Its form is W3C Trace Context's trace-id (32 lowercase hex, not all
 * zeros), so an HTTP caller's `traceparent` carries it in and out (PROTOCOL.md §5.3, §6).
 * @example const id = traceIdOf(req.headers.traceparent) ?? newTraceId();
 *          reply.header('traceparent', traceparent(id));
 */
import { InputError } from './errors';

export const TRACE_ID = /^[0-9a-f]{32}$/;
const ZERO_ID = '0'.repeat(32);

/** A fresh random trace id. */
export function newTraceId(): string {
  return randomHex(16);
}

/** Whether `v` is a trace id: 32 lowercase hex digits, not all zeros. */
export function isTraceId(v: unknown): v is string {
  return typeof v === 'string' && TRACE_ID.test(v) && v !== ZERO_ID;
}

/** A trace id given by page code: checked where it enters, named by field. */
export function parseTraceId(v: unknown, field = 'traceId'): string {
  if (!isTraceId(v)) {
    throw new InputError(`${field} must be 32 lowercase hex digits, not all zeros`);
  }
  return v;
}

// version "-" trace-id "-" parent-id "-" trace-flags (W3C Trace Context §3.2).
const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$/;

/**
 * The trace id of a `traceparent` header, or undefined when there is none or it is not valid: a
 * bad header is ignored, never an error (W3C Trace Context: the receiver starts a new trace).
 */
export function traceIdOf(header: string | string[] | undefined): string | undefined {
  if (typeof header !== 'string' || header.length > 512) return undefined;
  const m = TRACEPARENT.exec(header.trim());
  if (!m) return undefined;
  const [, version, traceId, parentId, , rest] = m;
  // Version ff is invalid; version 00 has nothing after the flags; later versions may.
  if (version === 'ff' || (version === '00' && rest !== undefined)) return undefined;
  if (traceId === ZERO_ID || parentId === '0'.repeat(16)) return undefined;
  return traceId;
}

/** A `traceparent` for an answer: this trace, a new span id of the relay's, sampled. */
export function traceparent(traceId: string): string {
  return `00-${traceId}-${randomHex(8)}-01`;
}

function randomHex(bytes: number): string {
  const b = crypto.getRandomValues(new Uint8Array(bytes));
  // All zeros is not a valid id; one in 2^64 at worst, so one more draw settles it.
  if (b.every((x) => x === 0)) return randomHex(bytes);
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}
