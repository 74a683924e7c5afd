import { ModelLoadError } from '../errors';
import type { Tensor } from '../tensor';
import type { PoolNow } from './logic-pool';
import type { Reply } from './logic-worker';
import type { ScaleEvent } from './scaler';

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
  /** How `backend` was chosen, with the figures it was chosen by (runners that measure). */
  choice?: BackendChoice;
}

/**
 * How a model's backend was chosen. `measured`: a few warm runs on each backend here, the faster
 * kept; `remembered`: measured before for this model, these backends and this adapter; `forced`:
 * the caller named the backend (key `sha@webgpu`); `only`: one backend to try.
 */
export interface BackendChoice {
  how: 'measured' | 'remembered' | 'forced' | 'only';
  /** Engine time (ms) of each timed warm run, per backend measured. */
  samples: Partial<Record<BackendName, number[]>>;
  /** Backends that failed to load or run while measured, and why. */
  failures: string[];
}

/** A model runner's own account of itself (tests and benchmarks read it on window.brumeDebug). */
export interface RunnerInfo {
  /** One runner for every same-origin tab (a SharedWorker), or this tab's own. */
  shared: boolean;
  /** Tabs (ports) that connected to it. */
  clients: number;
  /** Models turned into sessions (a second tab asking for a loaded model adds none). */
  loads: number;
  /** load() calls answered, from every tab. */
  loadCalls: number;
  /** Models timed on several backends (none for a remembered choice). */
  measurements: number;
  models: { key: string; backend: BackendName; choice?: BackendChoice }[];
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
  /**
   * Loads `bytes` under `key` (its sha256) on the first backend in `prefer` that works. `scale`:
   * the sessions a runner that pools them may hold for it (onnxruntime-node; a tab's runner keeps
   * one session per model and ignores it, PROTOCOL.md §3.2).
   */
  load(
    key: string,
    bytes: Uint8Array,
    prefer?: BackendName[],
    scale?: ModelScale,
  ): Promise<Reply<LoadedModel>>;
  run(key: string, inputs: Record<string, Tensor>): Promise<Reply<RunOutput>>;
  unload(key: string): Promise<void>;
  /** What the runner holds and did; runners that keep no account leave it out. */
  info?(): Promise<RunnerInfo>;
  /** In-process runners that pool sessions: each pool now, by runner key. */
  pools?(): Record<string, PoolNow>;
  /** In-process runners that pool sessions: tells `listener` of every grow and shrink. */
  listenScale?(listener: (e: ScaleEvent) => void): () => void;
}

/** How many sessions a pooling runner may hold for one model (core/exec/loader.ts decides). */
export interface ModelScale {
  /** `app/service`, for scale events. */
  name: string;
  /** Sessions at most (≥ 1). */
  max: number;
  /** A full idle period before one session retires (core/exec/scaler.ts). */
  idleMs: number;
}

/** The methods a model worker answers over core/exec/channel.ts (a tab's dedicated or shared one). */
export const modelRunnerOps = ['backends', 'load', 'run', 'unload', 'info'] as const;

/** The median of `xs` (not empty): the figure backends are compared by. */
export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/**
 * The backend with the lowest median among those measured; a tie goes to the earlier in `order`.
 * Undefined when none was measured.
 * @example fastest({ webgpu: [4.1, 3.9], wasm: [0.06, 0.05] }, ['webgpu', 'wasm']); // 'wasm'
 */
export function fastest(
  samples: Partial<Record<BackendName, number[]>>,
  order: readonly BackendName[],
): BackendName | undefined {
  let best: BackendName | undefined;
  let bestMs = Number.POSITIVE_INFINITY;
  for (const b of order) {
    const s = samples[b];
    if (!s?.length) continue;
    const m = median(s);
    if (m < bestMs) {
      best = b;
      bestMs = m;
    }
  }
  return best;
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
