import { fromWire, toWire, type WireError } from '../errors';

/**
 * The part of a Worker, a worker's `self`, a MessagePort (a SharedWorker's port) or a
 * worker_threads port that a channel uses. `start` is there for a MessagePort, which delivers
 * nothing to `addEventListener` listeners until started.
 */
export interface Endpoint {
  postMessage(message: unknown, transfer: ArrayBuffer[]): void;
  addEventListener(type: 'message', listener: (ev: { data: unknown }) => void): void;
  start?(): void;
}

/** Host → worker: call `op` with `args`. */
interface Ask {
  id: number;
  op: string;
  args: unknown[];
}

/** Worker → host: what the call of that id answered, or the error it threw. */
interface Answer {
  id: number;
  value?: unknown;
  error?: WireError;
}

/** The buffers to transfer (not copy) with a message: a call's arguments, or its answer. */
export type Transfers = (op: string, data: unknown) => ArrayBuffer[];
const copyAll: Transfers = () => [];

type AsyncApi<Api> = {
  [K in keyof Api]: Api[K] extends ((...args: infer A) => Promise<infer R>) | undefined
    ? (...args: A) => Promise<R>
    : never;
};

/**
 * The host side of `api`'s methods `ops`, reached over `endpoint`: one small message each way
 * per call, answers matched by id. Both the Logic and the Model workers use it, in a tab and in
 * Node: it does what comlink did here, without the id strings, argument wrapping and a listener
 * added and removed per call. An error the worker throws comes back as the same typed error
 * (core/errors.ts). A call whose answer never comes (the worker was terminated) stays pending:
 * its owner's watchdog settles it.
 * @example const runner = channelClient<ModelRunnerApi>(worker, ['load', 'run'] as const);
 */
export function channelClient<Api extends object>(
  endpoint: Endpoint,
  ops: readonly (keyof Api & string)[],
  transfer: Transfers = copyAll,
): AsyncApi<Api> {
  let next = 1;
  const waiting = new Map<number, { resolve(v: unknown): void; reject(e: Error): void }>();
  endpoint.addEventListener('message', (ev) => {
    const { id, value, error } = ev.data as Answer;
    const w = waiting.get(id);
    if (!w) return;
    waiting.delete(id);
    if (error) w.reject(fromWire(error));
    else w.resolve(value);
  });
  endpoint.start?.();
  const api: Record<string, (...args: unknown[]) => Promise<unknown>> = {};
  for (const op of ops) {
    api[op] = (...args) =>
      new Promise((resolve, reject) => {
        const id = next++;
        waiting.set(id, { resolve, reject });
        endpoint.postMessage({ id, op, args } satisfies Ask, transfer(op, args));
      });
  }
  return api as AsyncApi<Api>;
}

/** The worker side: answers `channelClient` calls with `api`'s methods. */
export function exposeChannel<Api extends object>(
  endpoint: Endpoint,
  api: Api,
  transfer: Transfers = copyAll,
): void {
  const methods = api as Record<string, unknown>;
  endpoint.addEventListener('message', (ev) => {
    const { id, op, args } = ev.data as Ask;
    const method = methods[op];
    const answered =
      typeof method === 'function'
        ? Promise.resolve().then(() => method.apply(api, args) as unknown)
        : Promise.reject(new TypeError(`this worker has no ${op}()`));
    answered.then(
      (value) => endpoint.postMessage({ id, value } satisfies Answer, transfer(op, value)),
      (e) => endpoint.postMessage({ id, error: toWire(e) } satisfies Answer, []),
    );
  });
  endpoint.start?.();
}
