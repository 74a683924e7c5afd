import * as Comlink from 'comlink';
import { logicWorkerClient } from '../core/exec/logic-worker';
import type { ModelRunnerApi } from '../core/exec/model-runner';
import type { Platform } from '../core/runtime';
import { httpAppSource } from '../core/sources';

/** Workers and sources of a browser tab, for createRuntime(). */
export function browserPlatform(relay: string): Platform {
  const modelWorker = new Worker(new URL('../worker/model.ts', import.meta.url), {
    type: 'module',
    name: 'brume-model',
  });
  return {
    source: httpAppSource(relay, (url) => fetch(url)),
    models: Comlink.wrap<ModelRunnerApi>(modelWorker) as unknown as ModelRunnerApi,
    backendOrder: ['webgpu', 'wasm'],
    spawnLogicWorker() {
      const worker = new Worker(new URL('../worker/logic.ts', import.meta.url), {
        type: 'module',
        name: 'brume-logic',
      });
      return { api: logicWorkerClient(worker), terminate: () => worker.terminate() };
    },
  };
}
