/**
 * A worker_threads port (the thread's `parentPort`, or the `Worker` seen from the relay) as a
 * channel's endpoint (core/exec/channel.ts), so Node's Logic threads speak the same small
 * id-matched protocol as a tab's Logic workers, with the step's bytes transferred.
 * @example const api = logicWorkerClient(threadEndpoint(worker));   // the relay
 *          exposeLogic(threadEndpoint(parentPort), serveLogic(log)); // the thread
 */
import type { MessagePort, Worker } from 'node:worker_threads';
import type { Endpoint } from '../core/exec/channel';

export function threadEndpoint(port: MessagePort | Worker): Endpoint {
  return {
    postMessage: (message, transfer) => port.postMessage(message, transfer),
    addEventListener: (_type, listener) => {
      port.on('message', (data: unknown) => listener({ data }));
    },
  };
}
