import os from 'node:os';
import { Worker } from 'node:worker_threads';
import * as ort from 'onnxruntime-node';
import {
  type BrumeError,
  LogicFault,
  LogicMemoryError,
  ModelLoadError,
  ModelRunError,
  toWire,
} from '../core/errors';
import { DEFAULT_IDLE_MS, type PoolNow, type WorkerHandle } from '../core/exec/logic-pool';
import { logicWorkerClient, type Reply } from '../core/exec/logic-worker';
import type { ModelRunnerApi } from '../core/exec/model-runner';
import type { ScaleEvent } from '../core/exec/scaler';
import { ScaledPool } from '../core/exec/session-pool';
import type { AppSource, Platform } from '../core/runtime';
import { fromOrtOutputs, toOrtFeeds } from '../core/tensor';
import { threadEndpoint } from './thread-endpoint';

// From source (tsx) the TypeScript entry; from the package, the compiled one beside lib/brume.js.
const threadEntry = new URL(
  import.meta.url.endsWith('.ts') ? './logic-thread.ts' : './logic-thread.js',
  import.meta.url,
);

export interface NodePlatformOptions {
  /** onnxruntime-node threads per model session; default 1. */
  threads?: number;
  /**
   * JS heap of each Logic worker thread, in MiB (worker_threads `resourceLimits`); default 64.
   * Guest memory is not on this heap: the runtime's `logicMemoryMiB` caps that.
   */
  logicHeapMiB?: number;
  /** The worker's entry module; default relay/logic-thread.ts (tests give a hostile one). */
  logicEntry?: URL;
}

/**
 * The Node platform for createRuntime(): Logics in worker_threads, Models on onnxruntime-node.
 * @example const node = createRuntime(nodePlatform(memoryAppSource(bundles)));
 */
export function nodePlatform(source: AppSource, options: NodePlatformOptions = {}): Platform {
  return {
    source,
    models: onnxNodeRunner(options.threads ?? 1),
    backendOrder: ['cpu'],
    spawnLogicWorker: () =>
      spawnLogicThread(options.logicEntry ?? threadEntry, options.logicHeapMiB ?? 64),
  };
}

/**
 * One Logic worker thread with a bounded heap. A thread that dies (out of heap, an uncaught
 * throw, an exit) fails what it was running with a typed error instead of leaving it unanswered
 * (nothing ever answers a call to a dead thread), and never takes the process down: an 'error'
 * nobody listens to would be thrown in the relay.
 */
export function spawnLogicThread(entry: URL, heapMiB: number): WorkerHandle {
  const resourceLimits = { maxOldGenerationSizeMb: heapMiB, maxYoungGenerationSizeMb: 16 };
  // Workers ignore --import in execArgv: for a TypeScript entry, register tsx's loader in the
  // thread, then load it. Compiled JavaScript (the installed package) needs no loader.
  const boot = `import('tsx/esm/api').then((t) => { t.register(); return import(${JSON.stringify(entry.href)}); })`;
  const worker = entry.pathname.endsWith('.ts')
    ? new Worker(boot, { eval: true, resourceLimits })
    : new Worker(entry, { resourceLimits });
  worker.unref();
  let failure: BrumeError | undefined;
  let stopping = false;
  /** Why the thread is gone, once it is: every later use fails with it. */
  let dead: BrumeError | undefined;
  // What is in flight, to fail when the thread dies. Not Promise.race with one promise that
  // settles only on death: each race would leave a reaction on it, holding every answer (a leak
  // of about 3 KB a call, seen under HTTP load).
  const inFlight = new Set<(e: BrumeError) => void>();
  worker.on('error', (e: Error & { code?: string }) => {
    failure ??=
      e.code === 'ERR_WORKER_OUT_OF_MEMORY'
        ? new LogicMemoryError(
            `the Logic worker ran out of its ${heapMiB} MiB heap and was replaced`,
            { cause: e },
          )
        : new LogicFault(`the Logic worker crashed (${e.message}) and was replaced`, {
            cause: e,
          });
  });
  worker.on('exit', (code) => {
    dead = stopping
      ? new LogicFault('the Logic worker was stopped')
      : (failure ?? new LogicFault(`the Logic worker exited (code ${code}) and was replaced`));
    for (const fail of inFlight) fail(dead);
    inFlight.clear();
  });
  const guarded = <T>(run: () => Promise<T>): Promise<T> => {
    if (dead) return Promise.reject(dead);
    return new Promise<T>((resolve, reject) => {
      inFlight.add(reject);
      run()
        .then(resolve, reject)
        .finally(() => inFlight.delete(reject));
    });
  };
  const remote = logicWorkerClient(threadEndpoint(worker));
  return {
    api: {
      load: (module, o) => guarded<Reply<number>>(() => remote.load(module, o)),
      step: (name, request, holdMs) =>
        guarded<Reply<Uint8Array>>(() => remote.step(name, request, holdMs)),
    },
    terminate: () => {
      stopping = true;
      void worker.terminate();
    },
  };
}

/**
 * Models on onnxruntime-node (CPU), in process: its run() works on its own thread pool. Each model
 * has a pool of sessions (core/exec/session-pool.ts) up to its `scale.max` from load(): a run
 * takes an idle one, a new one is made from the model's bytes (kept while it is loaded) when none
 * is idle, and they retire after idle periods down to none; the next run makes one again.
 * Each session gets max(1, ⌊threads / max⌋) intra-op threads, so a full pool uses about the cores
 * one session did: sessions are added for runs that wait, and threads beyond the cores only
 * contend (the node's maxWorkers, its cores, caps max).
 */
export function onnxNodeRunner(threads: number): ModelRunnerApi {
  const models = new Map<string, { pool: ScaledPool<ort.InferenceSession> }>();
  const listeners = new Set<(e: ScaleEvent) => void>();
  const onScale = (e: ScaleEvent) => {
    for (const l of listeners) l(e);
  };
  const create = (bytes: Uint8Array, max: number) =>
    ort.InferenceSession.create(bytes, {
      intraOpNumThreads: Math.max(1, Math.floor(threads / max)),
      interOpNumThreads: 1,
    });
  return {
    async backends() {
      return [
        {
          name: 'cpu',
          detail: `onnxruntime-node, ${threads} thread(s) of ${os.cpus().length} cores`,
        },
      ];
    },
    async load(key, bytes, _prefer, scale) {
      try {
        const t0 = performance.now();
        const max = Math.max(1, Math.floor(scale?.max ?? 1));
        const session = await create(bytes, max);
        const loadMs = performance.now() - t0;
        const pool = new ScaledPool<ort.InferenceSession>({
          name: scale?.name ?? key,
          max,
          idleMs: scale?.idleMs ?? DEFAULT_IDLE_MS,
          create: () => create(bytes, max),
          dispose: (s) => void s.release().catch(() => {}),
          onScale,
        });
        const value = {
          backend: 'cpu' as const,
          inputNames: [...session.inputNames],
          outputNames: [...session.outputNames],
          loadMs,
        };
        models.get(key)?.pool.close();
        models.set(key, { pool });
        pool.adopt(session);
        return { ok: true, value };
      } catch (e) {
        const error = new ModelLoadError(`model could not be loaded: ${(e as Error).message}`);
        return { ok: false, error: toWire(error) };
      }
    },
    async run(key, inputs) {
      const model = models.get(key);
      if (!model)
        return {
          ok: false,
          error: toWire(new ModelRunError(`model ${key} is not loaded`)),
        };
      try {
        const feeds = toOrtFeeds(ort.Tensor, inputs);
        return await model.pool.use(async (session) => {
          const t0 = performance.now();
          const results = await session.run(feeds);
          const ms = performance.now() - t0;
          const outputs = fromOrtOutputs(results);
          return { ok: true as const, value: { outputs, backend: 'cpu' as const, ms } };
        });
      } catch (e) {
        return {
          ok: false,
          error: toWire(new ModelRunError(`model failed to run: ${(e as Error).message}`)),
        };
      }
    },
    async unload(key) {
      models.get(key)?.pool.close();
      models.delete(key);
    },
    pools() {
      const out: Record<string, PoolNow> = {};
      for (const [key, { pool }] of models) out[key] = pool.now();
      return out;
    },
    listenScale(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
  };
}
