/**
 * The Logic worker API (core/exec/logic-worker.ts) across a worker_threads port, in place of
 * comlink: one message each way per request, `{ id, m, a }` and `{ id, r }` (or `{ id, e }` when
 * the method threw), one listener for all requests in flight and no per-call proxy, UUID or
 * listener. Both ends are this file: the thread exposes, the platform calls (relay/platform.ts).
 * @example exposeLogicApi(serveLogic(log), parentPort);          // in the thread
 *          const api = logicApiOver(worker); await api.step('classify', bytes);
 */
import type { MessagePort, Worker } from 'node:worker_threads';
import { fromWire, toWire, type WireError } from '../core/errors';
import type { LogicWorkerApi } from '../core/exec/logic-worker';

type Method = keyof LogicWorkerApi;
interface Request {
  id: number;
  m: Method;
  a: unknown[];
}
type Response = { id: number; r: unknown } | { id: number; e: WireError };

/** Answers requests from the platform with `api`, on the thread's `parentPort`. */
export function exposeLogicApi(api: LogicWorkerApi, port: MessagePort): void {
  port.on('message', (msg: Request) => {
    const method = api[msg.m] as (...a: unknown[]) => Promise<unknown>;
    method(...msg.a).then(
      (r) => port.postMessage({ id: msg.id, r } satisfies Response),
      (e: unknown) => port.postMessage({ id: msg.id, e: toWire(e) } satisfies Response),
    );
  });
}

/**
 * The API of the thread `worker` exposes. A request whose thread dies is never answered here:
 * the caller (spawnLogicThread) fails what is in flight when the thread exits.
 */
export function logicApiOver(worker: Worker): LogicWorkerApi & { pending(): number } {
  const waiting = new Map<number, { resolve(v: unknown): void; reject(e: unknown): void }>();
  let next = 0;
  worker.on('message', (msg: Response) => {
    const w = waiting.get(msg.id);
    if (!w) return;
    waiting.delete(msg.id);
    if ('e' in msg) w.reject(fromWire(msg.e));
    else w.resolve(msg.r);
  });
  // A dead thread answers nothing: its requests are dropped here (their callers are failed by
  // the exit handler), so the table does not hold them.
  worker.once('exit', () => waiting.clear());
  const request = <T>(m: Method, a: unknown[]) =>
    new Promise<T>((resolve, reject) => {
      const id = next++;
      waiting.set(id, { resolve: resolve as (v: unknown) => void, reject });
      worker.postMessage({ id, m, a } satisfies Request);
    });
  return {
    load: (module, options) => request('load', [module, options]),
    step: (name, bytes) => request('step', [name, bytes]),
    pending: () => waiting.size,
  };
}
