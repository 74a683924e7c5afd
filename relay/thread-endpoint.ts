/**
 * A worker_threads port (the thread's `parentPort`, or the `Worker` seen from the relay) as the
 * Logic channel's endpoint (core/exec/logic-worker.ts), so Node's Logic threads speak the same
 * small id-matched protocol as a tab's Logic workers, with the step's bytes transferred.
 * @example const api = logicWorkerClient(threadEndpoint(worker));   // the relay
 *          exposeLogic(threadEndpoint(parentPort), serveLogic(log)); // the thread
 */
import type { MessagePort, Worker } from 'node:worker_threads';
import type { LogicEndpoint } from '../core/exec/logic-worker';

export function threadEndpoint(port: MessagePort | Worker): LogicEndpoint {
  return {
    postMessage: (message, transfer) => port.postMessage(message, transfer),
    addEventListener: (_type, listener) => {
      port.on('message', (data: unknown) => listener({ data }));
    },
  };
}
