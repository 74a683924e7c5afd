import { createGuest, type GuestOptions, type LogicGuest } from '../abi/guest';
import { LogicLoadError, toWire, UnsupportedError, type WireError } from '../errors';
import { channelClient, type Endpoint, exposeChannel, type Transfers } from './channel';

/** Replies cross the worker boundary as data, so a guest's error keeps its code and details. */
export type Reply<T> = { ok: true; value: T } | { ok: false; error: WireError };

/** What a Logic worker exposes (over core/exec/channel.ts: a Web Worker in a tab, a thread in Node). */
export interface LogicWorkerApi {
  /** Instantiates the compiled module; answers the instantiate time in ms. */
  load(module: WebAssembly.Module, options: Omit<GuestOptions, 'log'>): Promise<Reply<number>>;
  /**
   * One invocation step. `holdMs` (bench only, a node's `holdMs`): the worker first blocks that
   * long without using the CPU (Atomics.wait), so one worker serves about 1000/holdMs calls/s.
   */
  step(exportName: string, request: Uint8Array, holdMs?: number): Promise<Reply<Uint8Array>>;
}

/** The longest hold a step may ask (a bench's per-request delay, not a way to stall a worker). */
export const MAX_HOLD_MS = 60_000;

/** Blocks this worker `ms` without spinning; where it cannot (no SharedArrayBuffer), it fails. */
function hold(ms: number): void {
  if (!(ms > 0)) return;
  if (typeof SharedArrayBuffer === 'undefined' || typeof Atomics === 'undefined') {
    throw new UnsupportedError('holdMs needs SharedArrayBuffer and Atomics.wait in the worker');
  }
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, Math.min(ms, MAX_HOLD_MS));
}

/**
 * The worker side: holds one instance and replaces it after any fault, so a guest whose state a
 * trap may have corrupted never serves another request.
 */
export function serveLogic(log: (line: string) => void = console.log): LogicWorkerApi {
  let module: WebAssembly.Module | undefined;
  let options: Omit<GuestOptions, 'log'> | undefined;
  let guest: LogicGuest | undefined;
  const instantiate = () => {
    if (!module || !options) throw new LogicLoadError('Logic worker used before load()');
    guest = createGuest(module, { ...options, log });
    return guest;
  };
  return {
    async load(m, o) {
      module = m;
      options = o;
      try {
        const t0 = performance.now();
        instantiate();
        return { ok: true, value: performance.now() - t0 };
      } catch (e) {
        return { ok: false, error: toWire(e) };
      }
    },
    async step(exportName, request, holdMs) {
      try {
        if (holdMs !== undefined) hold(holdMs);
        return { ok: true, value: (guest ?? instantiate()).step(exportName, request) };
      } catch (e) {
        guest = undefined;
        return { ok: false, error: toWire(e) };
      }
    },
  };
}

/** A step's bytes are transferred both ways, never copied. */
const stepRequest: Transfers = (op, args) =>
  op === 'step' ? [((args as unknown[])[1] as Uint8Array).buffer as ArrayBuffer] : [];
const stepReply: Transfers = (op, reply) => {
  const r = reply as Reply<unknown>;
  return op === 'step' && r.ok && r.value instanceof Uint8Array
    ? [r.value.buffer as ArrayBuffer]
    : [];
};

/**
 * The host side of a Logic worker reached over `endpoint` (core/exec/channel.ts). A reply that
 * never comes (the worker was terminated) leaves its promise pending: the pool's watchdog
 * settles the step.
 * @example const api = logicWorkerClient(new Worker(url, { type: 'module' }));
 */
export function logicWorkerClient(endpoint: Endpoint): LogicWorkerApi {
  return channelClient<LogicWorkerApi>(endpoint, ['load', 'step'], stepRequest);
}

/** The worker side: answers `logicWorkerClient` calls with `api`. */
export function exposeLogic(endpoint: Endpoint, api: LogicWorkerApi): void {
  exposeChannel(endpoint, api, stepReply);
}
