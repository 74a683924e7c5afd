// worker_threads entry: the same Logic host a tab runs in its Web Worker (core/exec/logic-worker).
import { parentPort } from 'node:worker_threads';
import { exposeLogic, serveLogic } from '../core/exec/logic-worker';
import { threadEndpoint } from './thread-endpoint';

if (!parentPort) throw new Error('relay/logic-thread.ts runs as a worker thread');
exposeLogic(
  threadEndpoint(parentPort),
  serveLogic((line) => console.log(`[logic] ${line}`)),
);
