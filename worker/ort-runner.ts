/**
 * Models on onnxruntime-web, for a dedicated worker (worker/model.ts) or one SharedWorker for
 * every same-origin tab (worker/model-shared.ts). At a model's first load it is timed on each
 * backend that is there (a few warm runs with inputs of its shape), the faster is kept, and the
 * choice is remembered in IndexedDB per model, backends and adapter, so a reload does not time it
 * again. A model that fails to *run* on WebGPU (unimplemented operators) moves to WASM and stays.
 * @example exposeChannel(self, createOrtRunner({ shared: false }));
 */
import { createStore, get, set, type UseStore } from 'idb-keyval';
import type * as Ort from 'onnxruntime-web';
import { ModelLoadError, ModelRunError, toWire } from '../core/errors';
import type { Reply } from '../core/exec/logic-worker';
import {
  type BackendChoice,
  type BackendInfo,
  type BackendName,
  fastest,
  firstWorking,
  type LoadedModel,
  type ModelRunnerApi,
  type RunnerInfo,
} from '../core/exec/model-runner';
import { fromOrtOutputs, type Tensor, toOrtFeeds } from '../core/tensor';

interface GpuAdapterLike {
  info?: { vendor?: string; architecture?: string; description?: string; device?: string };
}
interface GpuLike {
  requestAdapter(): Promise<GpuAdapterLike | null>;
}

export interface OrtRunnerOptions {
  /** Served to every same-origin tab (reported by info()). */
  shared: boolean;
  /** navigator.gpu, where there is one. */
  gpu?: GpuLike;
  /** Where choices are remembered; default the `brume-backends` IndexedDB database. */
  store?: UseStore;
  /** Timed runs per backend (after two untimed ones); at least 3, so the figures count. */
  runs?: number;
  /** Stop timing a backend after this long once it has 3 runs (a slow backend stays cheap). */
  budgetMs?: number;
}

export type OrtRunner = ModelRunnerApi & {
  info(): Promise<RunnerInfo>;
  /** A tab connected (SharedWorker). */
  connected(): void;
};

interface Loaded {
  session: Ort.InferenceSession;
  backend: BackendName;
  bytes: Uint8Array;
  choice?: BackendChoice;
}

/** What is remembered per model, backends and adapter. */
interface Remembered {
  backend: BackendName;
  samples: Partial<Record<BackendName, number[]>>;
}

export function createOrtRunner(o: OrtRunnerOptions): OrtRunner {
  const runs = Math.max(3, o.runs ?? 5);
  const budgetMs = o.budgetMs ?? 2_000;
  const store = o.store ?? createStore('brume-backends', 'choices');
  const adapter: Promise<GpuAdapterLike | null> = o.gpu
    ? o.gpu.requestAdapter().catch(() => null)
    : Promise.resolve(null);
  // The WebGPU build carries a 28 MB wasm; without an adapter the 14 MB WASM-only build does.
  const ort: Promise<typeof Ort> = adapter.then(async (a) => {
    const m = a ? await import('onnxruntime-web') : await import('onnxruntime-web/wasm');
    if (!self.crossOriginIsolated) m.env.wasm.numThreads = 1;
    return m;
  });
  const sessions = new Map<string, Loaded>();
  // One load per key, whichever tab asks first; the others wait for it.
  const loading = new Map<string, Promise<Reply<LoadedModel>>>();
  const counts = { clients: 0, loads: 0, loadCalls: 0, measurements: 0 };
  const wasmOnlyKey = (key: string) => `brume:wasm-only:${key.split('@')[0]}`;
  let list: Promise<BackendInfo[]> | undefined;
  // The backend that won the latest choice: reported first (the relay places by backends[0]).
  let preferred: BackendName | undefined;

  // onnxruntime-web's WebGPU build runs one session at a time, whatever its backend ("Session
  // already started"): there, runs from any tab or a measurement take turns. The WASM-only build
  // runs each to its end synchronously.
  let gpuTurn: Promise<unknown> = Promise.resolve();
  const turns = adapter.then(Boolean);
  async function inTurn<T>(f: () => Promise<T>): Promise<T> {
    if (!(await turns)) return f();
    const p = gpuTurn.then(f, f);
    gpuTurn = p.catch(() => {});
    return p;
  }

  async function createSession(bytes: Uint8Array, backend: BackendName) {
    const m = await ort;
    return m.InferenceSession.create(bytes, {
      executionProviders: [backend === 'webgpu' ? 'webgpu' : 'wasm'],
      graphOptimizationLevel: 'all',
    });
  }

  function detected(): Promise<BackendInfo[]> {
    list ??= (async () => {
      const a = await adapter;
      const m = await ort;
      const out: BackendInfo[] = [];
      if (a) {
        const i = a.info ?? {};
        const detail = [i.vendor, i.architecture, i.device, i.description].filter(Boolean);
        out.push({ name: 'webgpu', detail: detail.join(' ') || 'adapter without details' });
      }
      const threads = m.env.wasm.numThreads || 1;
      out.push({
        name: 'wasm',
        detail: `${threads} thread${threads === 1 ? '' : 's'}${self.crossOriginIsolated ? ', cross-origin isolated' : ''}`,
      });
      preferred ??= await get<BackendName>(`preferred|${fingerprint(out)}`, store).catch(
        () => undefined,
      );
      return out;
    })();
    return list;
  }

  /** The backends and the adapter: a choice made with other ones is measured again. */
  const fingerprint = (have: BackendInfo[]) => have.map((b) => `${b.name}:${b.detail}`).join('|');

  /** Zero-filled inputs of the session's shape (a dynamic dimension taken as 1). */
  function exampleFeeds(m: typeof Ort, s: Ort.InferenceSession): Record<string, Ort.Tensor> {
    const feeds: Record<string, Ort.Tensor> = {};
    for (const meta of s.inputMetadata) {
      if (!meta.isTensor) throw new ModelLoadError(`input ${meta.name} is not a tensor`);
      const dims = meta.shape.map((d) => (typeof d === 'number' && d > 0 && d < 2 ** 31 ? d : 1));
      const n = dims.reduce((a, b) => a * b, 1);
      const data =
        meta.type === 'float32'
          ? new Float32Array(n)
          : meta.type === 'int64'
            ? new BigInt64Array(n)
            : meta.type === 'int32'
              ? new Int32Array(n)
              : meta.type === 'uint8'
                ? new Uint8Array(n)
                : meta.type === 'bool'
                  ? new Uint8Array(n)
                  : undefined;
      if (!data) throw new ModelLoadError(`input ${meta.name}: ${meta.type} is not measured`);
      feeds[meta.name] = new m.Tensor(meta.type, data, dims);
    }
    return feeds;
  }

  /** Two untimed runs, then `runs` timed ones (fewer, but 3 at least, past the budget). */
  async function time(s: Ort.InferenceSession): Promise<number[]> {
    const feeds = exampleFeeds(await ort, s);
    for (let i = 0; i < 2; i++) await inTurn(() => s.run(feeds));
    const out: number[] = [];
    const start = performance.now();
    while (out.length < runs && (out.length < 3 || performance.now() - start < budgetMs)) {
      // Timed inside its turn: a wait for another tab's WebGPU run is not the model's.
      await inTurn(async () => {
        const t0 = performance.now();
        await s.run(feeds);
        out.push(performance.now() - t0);
      });
    }
    return out;
  }

  /** Each backend in `order` timed; the faster kept, the others released. */
  async function measure(bytes: Uint8Array, order: BackendName[]) {
    const samples: Partial<Record<BackendName, number[]>> = {};
    const failures: string[] = [];
    const made = new Map<BackendName, Ort.InferenceSession>();
    for (const b of order) {
      let s: Ort.InferenceSession | undefined;
      try {
        s = await createSession(bytes, b);
        samples[b] = await time(s);
        made.set(b, s);
      } catch (e) {
        failures.push(`${b}: ${(e as Error).message ?? e}`);
        await s?.release().catch(() => {});
      }
    }
    const best = fastest(samples, order);
    for (const [b, s] of made) if (b !== best) await s.release().catch(() => {});
    return { best, session: best && made.get(best), samples, failures };
  }

  async function load(key: string, bytes: Uint8Array, prefer: BackendName[]) {
    const t0 = performance.now();
    const have = await detected();
    const names = new Set(have.map((b) => b.name));
    const forced = key.includes('@') || prefer.length === 1;
    const wasmOnly = (await get(wasmOnlyKey(key), store).catch(() => undefined)) === true;
    const order = prefer.filter((b) => names.has(b) && !(b === 'webgpu' && wasmOnly && !forced));
    const memo = `${key.split('@')[0]}|${order.join(',')}|${fingerprint(have)}`;
    let session: Ort.InferenceSession | undefined;
    let backend: BackendName | undefined;
    let choice: BackendChoice | undefined;
    if (!forced && order.length > 1) {
      const r = await get<Remembered>(memo, store).catch(() => undefined);
      if (r && order.includes(r.backend)) {
        try {
          session = await createSession(bytes, r.backend);
          backend = r.backend;
          choice = { how: 'remembered', samples: r.samples, failures: [] };
        } catch {
          // The remembered backend no longer loads it: measure again.
        }
      }
      if (!session) {
        const m = await measure(bytes, order);
        counts.measurements++;
        if (m.best && m.session) {
          session = m.session;
          backend = m.best;
          choice = { how: 'measured', samples: m.samples, failures: m.failures };
          await set(memo, { backend, samples: m.samples } satisfies Remembered, store).catch(
            () => {},
          );
        }
      }
    }
    if (!session || !backend) {
      // Forced, one backend, or none could be timed (inputs it will not take): the first that loads.
      const w = await firstWorking(
        'model',
        order.map((b) => ({ name: b, init: () => createSession(bytes, b) })),
      );
      session = w.value;
      backend = w.name;
      choice = {
        how: key.includes('@') ? 'forced' : 'only',
        samples: {},
        failures: [...(choice?.failures ?? []), ...w.failures],
      };
    }
    if (choice?.how === 'measured' || choice?.how === 'remembered') {
      preferred = backend;
      await set(`preferred|${fingerprint(have)}`, backend, store).catch(() => {});
    }
    sessions.set(key, { session, backend, bytes, choice });
    counts.loads++;
    return {
      backend,
      inputNames: [...session.inputNames],
      outputNames: [...session.outputNames],
      loadMs: performance.now() - t0,
      choice,
    };
  }

  const runner: OrtRunner = {
    async backends() {
      const have = await detected();
      const first = have.find((b) => b.name === preferred);
      return first ? [first, ...have.filter((b) => b !== first)] : have;
    },

    load(key, bytes, prefer = ['webgpu', 'wasm']) {
      counts.loadCalls++;
      let p = loading.get(key);
      if (!p) {
        p = load(key, bytes, prefer).then(
          (value): Reply<LoadedModel> => ({ ok: true, value }),
          (e): Reply<LoadedModel> => {
            loading.delete(key);
            return { ok: false, error: toWire(e) };
          },
        );
        loading.set(key, p);
      }
      return p;
    },

    async run(key, inputs) {
      const loaded = sessions.get(key);
      if (!loaded)
        return { ok: false, error: toWire(new ModelRunError(`model ${key} is not loaded`)) };
      const m = await ort;
      const feeds = toOrtFeeds(m.Tensor, inputs);
      let fellBack: string | undefined;
      const t0 = performance.now();
      let results: Ort.InferenceSession.ReturnType;
      try {
        try {
          const { session } = loaded;
          results = await inTurn(() => session.run(feeds));
        } catch (e) {
          // Forced backends (key "sha@webgpu") report the failure instead of moving.
          if (loaded.backend !== 'webgpu' || key.includes('@')) throw e;
          fellBack = `webgpu failed at run time (${(e as Error).message}); moved to wasm`;
          const old = loaded.session;
          loaded.session = await createSession(loaded.bytes, 'wasm');
          loaded.backend = 'wasm';
          await old.release().catch(() => {});
          await set(wasmOnlyKey(key), true, store).catch(() => {});
          results = await loaded.session.run(feeds);
        }
      } catch (e) {
        return {
          ok: false,
          error: toWire(
            new ModelRunError(`model failed to run: ${(e as Error).message}`, { cause: e }),
          ),
        };
      }
      const ms = performance.now() - t0;
      let outputs: Record<string, Tensor>;
      try {
        outputs = fromOrtOutputs(results);
      } catch (e) {
        return { ok: false, error: toWire(e) };
      }
      // Copied, not transferred: an output may be a view into onnxruntime's own heap.
      return {
        ok: true,
        value: { outputs, backend: loaded.backend, ms, ...(fellBack ? { fellBack } : {}) },
      };
    },

    async unload(key) {
      // Shared: another tab may still run it; a model stays until the runner ends.
      if (o.shared) return;
      const loaded = sessions.get(key);
      sessions.delete(key);
      loading.delete(key);
      await loaded?.session.release();
    },

    async info() {
      return {
        shared: o.shared,
        ...counts,
        models: [...sessions].map(([key, l]) => ({
          key,
          backend: l.backend,
          ...(l.choice && { choice: l.choice }),
        })),
      };
    },

    connected() {
      counts.clients++;
    },
  };
  return runner;
}
