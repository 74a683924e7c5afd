// Web Worker entry: Models on onnxruntime-web. WebGPU when an adapter exists, WASM otherwise; a
// model that fails to *run* on WebGPU (unimplemented operators) moves to WASM and stays there.
import * as Comlink from 'comlink';
import { get, set } from 'idb-keyval';
import type * as Ort from 'onnxruntime-web';
import { ModelRunError, toWire } from '../core/errors';
import {
  type BackendInfo,
  type BackendName,
  firstWorking,
  type ModelRunnerApi,
} from '../core/exec/model-runner';
import { fromOrtOutputs, type Tensor, toOrtFeeds } from '../core/tensor';

interface GpuAdapterLike {
  info?: { vendor?: string; architecture?: string; description?: string; device?: string };
}
const gpu = (navigator as unknown as { gpu?: { requestAdapter(): Promise<GpuAdapterLike | null> } })
  .gpu;

const adapter: Promise<GpuAdapterLike | null> = gpu
  ? gpu.requestAdapter().catch(() => null)
  : Promise.resolve(null);

// The WebGPU build carries a 28 MB wasm; without an adapter the 14 MB WASM-only build does.
const ort: Promise<typeof Ort> = adapter.then(async (a) => {
  const m = a ? await import('onnxruntime-web') : await import('onnxruntime-web/wasm');
  if (!self.crossOriginIsolated) m.env.wasm.numThreads = 1;
  return m;
});

interface Loaded {
  session: Ort.InferenceSession;
  backend: BackendName;
  bytes: Uint8Array;
}
const sessions = new Map<string, Loaded>();
const wasmOnlyKey = (key: string) => `brume:wasm-only:${key.split('@')[0]}`;

async function createSession(bytes: Uint8Array, backend: BackendName) {
  const o = await ort;
  return o.InferenceSession.create(bytes, {
    executionProviders: [backend === 'webgpu' ? 'webgpu' : 'wasm'],
    graphOptimizationLevel: 'all',
  });
}

const api: ModelRunnerApi = {
  async backends() {
    const a = await adapter;
    const o = await ort;
    const list: BackendInfo[] = [];
    if (a) {
      const i = a.info ?? {};
      const detail = [i.vendor, i.architecture, i.device, i.description].filter(Boolean).join(' ');
      list.push({ name: 'webgpu', detail: detail || 'adapter without details' });
    }
    const threads = o.env.wasm.numThreads || 1;
    list.push({
      name: 'wasm',
      detail: `${threads} thread${threads === 1 ? '' : 's'}${self.crossOriginIsolated ? ', cross-origin isolated' : ''}`,
    });
    return list;
  },

  async load(key, bytes, prefer = ['webgpu', 'wasm']) {
    try {
      const have = new Set((await api.backends()).map((b) => b.name));
      const wasmOnly = (await get(wasmOnlyKey(key)).catch(() => undefined)) === true;
      const order = prefer.filter(
        (b) => have.has(b) && !(b === 'webgpu' && wasmOnly && prefer.length > 1),
      );
      const t0 = performance.now();
      const { name, value: session } = await firstWorking(
        'model',
        order.map((b) => ({ name: b, init: () => createSession(bytes, b) })),
      );
      sessions.set(key, { session, backend: name, bytes });
      return {
        ok: true,
        value: {
          backend: name,
          inputNames: [...session.inputNames],
          outputNames: [...session.outputNames],
          loadMs: performance.now() - t0,
        },
      };
    } catch (e) {
      return { ok: false, error: toWire(e) };
    }
  },

  async run(key, inputs) {
    const loaded = sessions.get(key);
    if (!loaded)
      return { ok: false, error: toWire(new ModelRunError(`model ${key} is not loaded`)) };
    const o = await ort;
    const feeds = toOrtFeeds(o.Tensor, inputs);
    let fellBack: string | undefined;
    const t0 = performance.now();
    let results: Ort.InferenceSession.ReturnType;
    try {
      try {
        results = await loaded.session.run(feeds);
      } catch (e) {
        // Forced backends (key "sha@webgpu") report the failure instead of moving.
        if (loaded.backend !== 'webgpu' || key.includes('@')) throw e;
        fellBack = `webgpu failed at run time (${(e as Error).message}); moved to wasm`;
        await loaded.session.release().catch(() => {});
        loaded.session = await createSession(loaded.bytes, 'wasm');
        loaded.backend = 'wasm';
        await set(wasmOnlyKey(key), true).catch(() => {});
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
    const value = { outputs, backend: loaded.backend, ms, ...(fellBack ? { fellBack } : {}) };
    // Copied, not transferred: an output may be a view into onnxruntime's own heap.
    return { ok: true, value };
  },

  async unload(key) {
    const loaded = sessions.get(key);
    sessions.delete(key);
    await loaded?.session.release();
  },
};

Comlink.expose(api);
