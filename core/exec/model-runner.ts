import { ModelLoadError } from '../errors';
import type { Tensor } from '../tensor';
import type { Reply } from './logic-worker';

/** Execution backends, most preferred first: WebGPU, then WASM in a tab; CPU in Node. */
export type BackendName = 'webgpu' | 'wasm' | 'cpu';

export interface BackendInfo {
  name: BackendName;
  /** WebGPU adapter details, WASM thread count, ... as the platform reports them. */
  detail: string;
}

export interface LoadedModel {
  backend: BackendName;
  inputNames: string[];
  outputNames: string[];
  loadMs: number;
}

export interface RunOutput {
  outputs: Record<string, Tensor>;
  backend: BackendName;
  /** Time inside the runtime's run() alone. */
  ms: number;
  /** Set when the preferred backend failed at run time and the model moved to another. */
  fellBack?: string;
}

/** What a model worker exposes (onnxruntime-web in a tab, onnxruntime-node in Node). */
export interface ModelRunnerApi {
  backends(): Promise<BackendInfo[]>;
  /** Loads `bytes` under `key` (its sha256) on the first backend in `prefer` that works. */
  load(key: string, bytes: Uint8Array, prefer?: BackendName[]): Promise<Reply<LoadedModel>>;
  run(key: string, inputs: Record<string, Tensor>): Promise<Reply<RunOutput>>;
  unload(key: string): Promise<void>;
}

/**
 * Tries each backend in order and returns the first that initializes; if none does, throws one
 * error that lists why each failed (after onnxruntime-web's resolveBackend).
 */
export async function firstWorking<T>(
  what: string,
  candidates: { name: BackendName; init: () => Promise<T> }[],
): Promise<{ name: BackendName; value: T; failures: string[] }> {
  const failures: string[] = [];
  for (const c of candidates) {
    try {
      return { name: c.name, value: await c.init(), failures };
    } catch (e) {
      failures.push(`${c.name}: ${(e as Error).message ?? e}`);
    }
  }
  throw new ModelLoadError(`${what} could not be loaded on any backend (${failures.join('; ')})`);
}
