import { createGuest, type GuestOptions, type LogicGuest } from '../abi/guest';
import { LogicLoadError, toWire, type WireError } from '../errors';

/** Replies cross the worker boundary as data: named errors keep their code (comlink would drop it). */
export type Reply<T> = { ok: true; value: T } | { ok: false; error: WireError };

/** What a Logic worker exposes (over comlink in a tab, worker_threads in Node). */
export interface LogicWorkerApi {
  /** Instantiates the compiled module; answers the instantiate time in ms. */
  load(module: WebAssembly.Module, options: Omit<GuestOptions, 'log'>): Promise<Reply<number>>;
  step(exportName: string, request: Uint8Array): Promise<Reply<Uint8Array>>;
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
    async step(exportName, request) {
      try {
        return { ok: true, value: (guest ?? instantiate()).step(exportName, request) };
      } catch (e) {
        guest = undefined;
        return { ok: false, error: toWire(e) };
      }
    },
  };
}

/**
 * The part of a Web Worker (or its `self`, or a MessagePort) a Logic channel uses. A tab's Logic
 * worker speaks this instead of comlink: one small message each way per step, replies matched by
 * id, the step's bytes transferred both ways (comlink adds an id string, argument wrapping and
 * proxy bookkeeping to every call, on the hot path of every Logic step).
 */
export interface LogicEndpoint {
  postMessage(message: unknown, transfer: ArrayBuffer[]): void;
  addEventListener(type: 'message', listener: (ev: { data: unknown }) => void): void;
}

/** Host → worker. */
type ToLogicWorker =
  | { id: number; op: 'load'; module: WebAssembly.Module; options: Omit<GuestOptions, 'log'> }
  | { id: number; op: 'step'; name: string; request: Uint8Array };

/** Worker → host: the reply to the message of that id. */
interface FromLogicWorker {
  id: number;
  reply: Reply<unknown>;
}

/**
 * The host side of a Logic worker reached over `endpoint`. A reply that never comes (the worker
 * was terminated) leaves its promise pending: the pool's watchdog settles the step.
 * @example const api = logicWorkerClient(new Worker(url, { type: 'module' }));
 */
export function logicWorkerClient(endpoint: LogicEndpoint): LogicWorkerApi {
  let next = 1;
  const waiting = new Map<number, (reply: Reply<unknown>) => void>();
  endpoint.addEventListener('message', (ev) => {
    const { id, reply } = ev.data as FromLogicWorker;
    const resolve = waiting.get(id);
    if (!resolve) return;
    waiting.delete(id);
    resolve(reply);
  });
  const ask = <T>(message: ToLogicWorker, transfer: ArrayBuffer[]) =>
    new Promise<Reply<T>>((resolve) => {
      waiting.set(message.id, resolve as (reply: Reply<unknown>) => void);
      endpoint.postMessage(message, transfer);
    });
  return {
    load: (module, options) => ask({ id: next++, op: 'load', module, options }, []),
    step: (name, request) =>
      ask({ id: next++, op: 'step', name, request }, [request.buffer as ArrayBuffer]),
  };
}

/** The worker side: answers `logicWorkerClient` messages with `api`. */
export function exposeLogic(endpoint: LogicEndpoint, api: LogicWorkerApi): void {
  endpoint.addEventListener('message', (ev) => {
    const m = ev.data as ToLogicWorker;
    const replied = m.op === 'load' ? api.load(m.module, m.options) : api.step(m.name, m.request);
    replied.then((reply: Reply<unknown>) => {
      const out = reply.ok && reply.value instanceof Uint8Array ? [reply.value.buffer] : [];
      endpoint.postMessage({ id: m.id, reply } satisfies FromLogicWorker, out as ArrayBuffer[]);
    });
  });
}
