import { decode, encode } from '../codec';
import { AppError, BrumeError, fromWire, LogicFault, QosError, toWire } from '../errors';

/** PROTOCOL.md §3.3. */
export type InvokeResult =
  | { t: 'done'; value: unknown }
  | { t: 'error'; message: string; code?: string }
  | {
      t: 'call';
      service: string;
      rpc: string;
      payload: unknown;
      continuation: string;
      state?: unknown;
    }
  | ({ t: 'ctx'; continuation: string; state?: unknown } & ContextRequest);

/** A Logic's context operation (PROTOCOL.md §3.4), on its own app's context store. */
export type ContextRequest =
  | { op: 'get'; key: string; scope?: 'app' | 'node' }
  | {
      op: 'put';
      key: string;
      value: unknown;
      scope?: 'app' | 'node';
      ttlMs?: number;
      privacy?: string[];
      /** true: the value stays at this site, never pushed to federated sites. */
      local?: boolean;
    }
  | { op: 'delete'; key: string; scope?: 'app' | 'node' };

/** What a get answers a Logic: the value, or that there is none (or it expired). */
export interface ContextReply {
  value?: unknown;
  found?: boolean;
  expired?: boolean;
}

/** What a callee answered, as a continuation sees it. */
export interface CallOutcome {
  value: unknown;
  service: string;
  rpc: string;
}

/** What the host does for a Logic: its calls (the QoS of the request bound in) and its context. */
export interface Dispatch {
  call(service: string, rpc: string, payload: unknown): Promise<CallOutcome>;
  context(request: ContextRequest): Promise<ContextReply>;
}

/** One step of a Logic: export name and request bytes in, InvokeResult bytes out. */
export type Step = (exportName: string, request: Uint8Array) => Promise<Uint8Array>;

export const maxCallsPerRequest = 64;
const abiExports = new Set(['brume_alloc', 'brume_free']);
const contextOps = new Set(['get', 'put', 'delete']);

/** Validates guest output against §3.3; a malformed result is the guest's fault. */
export function parseInvokeResult(bytes: Uint8Array, from: string): InvokeResult {
  let r: unknown;
  try {
    r = decode(bytes);
  } catch (e) {
    throw new LogicFault(
      `"${from}" returned bytes that are not MessagePack: ${(e as Error).message}`,
    );
  }
  const o = r as Record<string, unknown> | null;
  const str = (k: string) => typeof o?.[k] === 'string';
  if (o && o.t === 'done' && 'value' in o) return o as InvokeResult;
  if (o && o.t === 'error' && str('message')) return o as InvokeResult;
  if (
    o &&
    o.t === 'call' &&
    str('service') &&
    str('rpc') &&
    str('continuation') &&
    'payload' in o
  ) {
    return o as InvokeResult;
  }
  if (o && o.t === 'ctx' && str('continuation') && str('key') && contextOps.has(o.op as string)) {
    if (o.op === 'put' && !('value' in o)) {
      throw new LogicFault(`"${from}" asked for a context put without a value`);
    }
    return o as InvokeResult;
  }
  throw new LogicFault(
    `"${from}" returned something that is not an InvokeResult (PROTOCOL.md §3.3)`,
  );
}

/**
 * Invokes `rpc` and follows every `call` through its continuation until `done` or `error`.
 * Continuations may run on any instance: all a guest keeps across a call is in `state`.
 * Context operations (`ctx`) continue the same way and count towards the same limit.
 * @example const value = await invokeLogic(pool.step, 'classify', input, dispatch);
 */
export async function invokeLogic(
  step: Step,
  rpc: string,
  input: unknown,
  dispatch: Dispatch,
): Promise<unknown> {
  let exportName = rpc;
  let request = encode(input);
  // The error the last call answered: a Logic that passes it on passes on the error itself
  // (its class, and a QoS miss's constraint and best figure), whatever it added to the message.
  let calleeError: BrumeError | undefined;
  for (let calls = 0; ; calls++) {
    const result = parseInvokeResult(await step(exportName, request), exportName);
    if (result.t === 'done') return result.value;
    if (result.t === 'error') {
      const e = calleeError;
      if (e instanceof QosError && result.code === e.code) {
        throw new QosError(e.constraint, e.best, result.message);
      }
      if (e && e.code === result.code && e.message === result.message) throw e;
      throw result.code === undefined
        ? new AppError(result.message)
        : fromWire({ code: result.code, message: result.message });
    }
    if (calls >= maxCallsPerRequest) {
      throw new LogicFault(
        `request made more than ${maxCallsPerRequest} calls; stopped (a call loop?)`,
      );
    }
    if (abiExports.has(result.continuation)) {
      throw new LogicFault(
        `"${exportName}" named the ABI function ${result.continuation} as its continuation`,
      );
    }
    let reply: Record<string, unknown>;
    calleeError = undefined;
    if (result.t === 'ctx') {
      const { t: _t, continuation: _c, state: _s, ...request } = result;
      try {
        reply = { ok: true, ...(await dispatch.context(request as ContextRequest)) };
      } catch (e) {
        if (!(e instanceof BrumeError)) throw e;
        reply = { ok: false, error: toWire(e) };
      }
      reply.service = 'context';
      reply.rpc = result.op;
    } else {
      try {
        const outcome = await dispatch.call(result.service, result.rpc, result.payload);
        reply = { ok: true, value: outcome.value, service: outcome.service, rpc: outcome.rpc };
      } catch (e) {
        // Faults of the platform itself (timeouts of this Logic's worker...) are not the callee's.
        if (!(e instanceof BrumeError)) throw e;
        calleeError = e;
        reply = { ok: false, error: toWire(e), service: result.service, rpc: result.rpc };
      }
    }
    if ('state' in result) reply.state = result.state;
    exportName = result.continuation;
    request = encode(reply);
  }
}
