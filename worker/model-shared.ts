// SharedWorker entry: one model runner (worker/ort-runner.ts) for every same-origin tab of a
// browser profile, so four tabs hold one copy of each model. Each tab talks to it over its port.
import { exposeChannel } from '../core/exec/channel';
import { createOrtRunner } from './ort-runner';

const scope = self as unknown as {
  onconnect: ((e: MessageEvent) => void) | null;
  navigator: { gpu?: Parameters<typeof createOrtRunner>[0]['gpu'] };
};
const gpu = scope.navigator.gpu;
const runner = createOrtRunner({ shared: true, ...(gpu && { gpu }) });

scope.onconnect = (e) => {
  const port = e.ports[0]!;
  runner.connected();
  exposeChannel(port, runner);
};
