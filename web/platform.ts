import { channelClient } from '../core/exec/channel';
import { logicWorkerClient } from '../core/exec/logic-worker';
import { type ModelRunnerApi, modelRunnerOps } from '../core/exec/model-runner';
import type { Platform } from '../core/runtime';
import { httpAppSource } from '../core/sources';

export interface BrowserPlatformOptions {
  /**
   * One model runner for every same-origin tab (a SharedWorker), so tabs of one profile load each
   * model once; default true. A dedicated worker where SharedWorker is missing or this is false.
   */
  sharedModels?: boolean;
}

/**
 * Workers and sources of a browser tab, for createRuntime(). Models run where measured fastest
 * (worker/ort-runner.ts): `backendOrder` is what is tried and timed, not a preference.
 * @example const runtime = createRuntime(browserPlatform(location.origin));
 */
export function browserPlatform(relay: string, o: BrowserPlatformOptions = {}): Platform {
  return {
    source: httpAppSource(relay, (url) => fetch(url)),
    models: modelRunner(o.sharedModels ?? true),
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

function modelRunner(shared: boolean): ModelRunnerApi {
  if (shared && typeof SharedWorker === 'function') {
    try {
      const worker = new SharedWorker(new URL('../worker/model-shared.ts', import.meta.url), {
        type: 'module',
        name: 'brume-model',
      });
      return modelRunnerClient(worker.port);
    } catch (e) {
      // A context that refuses SharedWorker (e.g. a sandboxed frame): this tab's own worker.
      console.warn(`[brume] shared model runner unavailable (${(e as Error).message})`);
    }
  }
  const worker = new Worker(new URL('../worker/model.ts', import.meta.url), {
    type: 'module',
    name: 'brume-model',
  });
  return modelRunnerClient(worker);
}

function modelRunnerClient(endpoint: Worker | MessagePort): ModelRunnerApi {
  return channelClient<ModelRunnerApi>(endpoint, modelRunnerOps);
}
