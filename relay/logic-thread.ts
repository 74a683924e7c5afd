// worker_threads entry: the same Logic host a tab runs in its Web Worker (core/exec/logic-worker).
import { parentPort } from 'node:worker_threads';
import * as Comlink from 'comlink';
import nodeEndpoint from 'comlink/dist/esm/node-adapter.mjs';
import { serveLogic } from '../core/exec/logic-worker';

if (!parentPort) throw new Error('relay/logic-thread.ts runs as a worker thread');
Comlink.expose(
  serveLogic((line) => console.log(`[logic] ${line}`)),
  nodeEndpoint(parentPort),
);
