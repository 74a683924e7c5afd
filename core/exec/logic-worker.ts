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
