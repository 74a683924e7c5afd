// Web Worker entry: this tab's own model runner (worker/ort-runner.ts), where a SharedWorker for
// every same-origin tab (worker/model-shared.ts) is not available or not wanted.
import { exposeChannel } from '../core/exec/channel';
import { createOrtRunner } from './ort-runner';

const gpu = (navigator as unknown as { gpu?: Parameters<typeof createOrtRunner>[0]['gpu'] }).gpu;
const runner = createOrtRunner({ shared: false, ...(gpu && { gpu }) });
runner.connected();
exposeChannel(self, runner);
