// Web Worker entry: one Logic instance (PROTOCOL.md §3), reached over core/exec/logic-worker's
// channel. The main thread's LogicPool owns the watchdog; this side only runs guest code.
import { exposeLogic, serveLogic } from '../core/exec/logic-worker';

exposeLogic(
  self,
  serveLogic((line) => console.log(`[logic] ${line}`)),
);
