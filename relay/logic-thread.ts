// worker_threads entry: the same Logic host a tab runs in its Web Worker (core/exec/logic-worker).
import { parentPort } from 'node:worker_threads';
import { serveLogic } from '../core/exec/logic-worker';
import { exposeLogicApi } from './thread-rpc';

if (!parentPort) throw new Error('relay/logic-thread.ts runs as a worker thread');
exposeLogicApi(
  serveLogic((line) => console.log(`[logic] ${line}`)),
  parentPort,
);
