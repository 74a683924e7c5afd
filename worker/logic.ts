// Web Worker entry: one Logic instance behind comlink (PROTOCOL.md §3). The main thread's
// LogicPool owns the watchdog; this side only runs guest code.
import * as Comlink from 'comlink';
import type { LogicWorkerApi } from '../core/exec/logic-worker';
import { serveLogic } from '../core/exec/logic-worker';

const api = serveLogic((line) => console.log(`[logic] ${line}`));

const exposed: LogicWorkerApi = {
  load: api.load,
  async step(exportName, request) {
    const reply = await api.step(exportName, request);
    return reply.ok ? Comlink.transfer(reply, [reply.value.buffer]) : reply;
  },
};
Comlink.expose(exposed);
