/**
 * What a node loads to run an app, each once: file bytes by content hash (verified against the
 * manifest), compiled Logic modules, a Logic's worker pool, a model variant on the model runner.
 * A load that fails is not kept: the next request tries again (a transient fetch error must not
 * leave a service unloadable until restart).
 * @example const loader = new Loader(platform, caps); const pool = await loader.pool(m, 'classify', svc);
 */
import { inspectLogic } from '../abi/inspect';
import { fromWire, LogicLoadError, NotFoundError } from '../errors';
import {
  type LogicService,
  logicLimits,
  type Manifest,
  type ModelService,
  type ServiceScale,
  verifyFile,
} from '../manifest';
import {
  createLogicPool,
  DEFAULT_IDLE_MS,
  type LogicPool,
  type PoolNow,
  type WorkerHandle,
} from './logic-pool';
import type { BackendName, LoadedModel, ModelRunnerApi } from './model-runner';
import type { ScaleEvent } from './scaler';

/** Where a node gets apps: the relay over HTTP in a tab, a directory or a relay in Node. */
export interface AppSource {
  /** The apps deployed, with their current version where the source says it. */
  list(): Promise<{ name: string; version?: string }[]>;
  /** The current manifest of `app`, or version `version` of it. */
  manifest(app: string, version?: string): Promise<unknown>;
  /** The versions of `app` deployed (oldest first), for a call that asks a range (§5.7). */
  versions(app: string): Promise<string[]>;
  /** File bytes by content hash; `onProgress` gets (received, total) bytes for large files. */
  blob(sha256: string, onProgress?: (received: number, total: number) => void): Promise<Uint8Array>;
  /**
   * Files no version this node holds names any more (an old version was dropped): a source that
   * keeps files (the tab's Cache Storage, a server node's disk) deletes them.
   */
  forget?(sha256s: string[]): Promise<void>;
}

/** What a platform (web/, relay/) gives the runtime. */
export interface Platform {
  source: AppSource;
  spawnLogicWorker(): WorkerHandle;
  models: ModelRunnerApi;
  /** Backends to try for models, most preferred first. */
  backendOrder: BackendName[];
}

/** This node's caps on what a manifest may ask of a Logic, and its Logic workers per service. */
export interface LoaderCaps {
  /** Workers per service when its manifest asks no `scale.max`; default 1. */
  logicWorkers?: number;
  /** This node's cap on workers per service (its cores, or as its operator set); default `logicWorkers`. */
  maxWorkers?: number;
  /** Memory this node gives Logic guests: a service gets at most this / its `limits.memoryMiB` workers. */
  workersMemoryMiB?: number;
  /** Overrides every manifest's `scale.idleMs` (a node's setting; benches scale time with it). */
  workerIdleMs?: number;
  /** Bench only: each call's first step holds its worker this long (core/exec/logic-worker.ts). */
  holdMs?: number;
  /** Told of every pool's grow and shrink. */
  onScale?: (e: ScaleEvent) => void;
  logicTimeoutMs?: number;
  logicMemoryMiB?: number;
}

/**
 * Workers at most for a Logic service on this node: what its manifest asks (`scale.max`, else the
 * node's `logicWorkers`), within the node's `maxWorkers` and its memory for guests over the
 * service's guest memory; at least 1.
 * @example maxWorkers({ max: 20 }, 64, { logicWorkers: 1, maxWorkers: 8, workersMemoryMiB: 256 }); // 4
 */
export function maxWorkers(
  scale: ServiceScale | undefined,
  memoryMiB: number,
  caps: LoaderCaps,
): number {
  const base = caps.logicWorkers ?? 1;
  const byMemory = caps.workersMemoryMiB
    ? Math.floor(caps.workersMemoryMiB / Math.max(1, memoryMiB))
    : Number.POSITIVE_INFINITY;
  return Math.max(1, Math.min(scale?.max ?? base, caps.maxWorkers ?? base, byMemory));
}

/**
 * Sessions at most for a model service on a node that pools them (onnxruntime-node): what its
 * manifest asks (`scale.max`, default 1: one session, as a tab keeps), within the node's
 * `maxWorkers` and its `workersMemoryMiB` over the model's size (a session holds about the
 * model's bytes again); at least 1. The same rule as a Logic's, with the model's size for memory.
 * @example modelSessionsMax({ max: 8 }, 100 * 2 ** 20, { maxWorkers: 4, workersMemoryMiB: 256 }); // 2
 */
export function modelSessionsMax(
  scale: ServiceScale | undefined,
  bytes: number,
  caps: LoaderCaps,
): number {
  return maxWorkers(scale, bytes / 2 ** 20, {
    ...caps,
    logicWorkers: 1,
    maxWorkers: caps.maxWorkers ?? caps.logicWorkers ?? 1,
  });
}

export const DEFAULT_LOGIC_CAPS = { timeoutMs: 10_000, memoryMiB: 256 } as const;

/** `make()` once per key while it succeeds; a rejection is forgotten so the next call retries. */
function once<T>(cache: Map<string, Promise<T>>, key: string, make: () => Promise<T>): Promise<T> {
  let p = cache.get(key);
  if (!p) {
    p = make();
    cache.set(key, p);
    p.catch(() => {
      if (cache.get(key) === p) cache.delete(key);
    });
  }
  return p;
}

export class Loader {
  private readonly files = new Map<string, Promise<Uint8Array>>();
  private readonly modules = new Map<
    string,
    Promise<{ module: WebAssembly.Module; minPages: number }>
  >();
  private readonly pools = new Map<string, Promise<LogicPool>>();
  /** The pools started, by the same keys, with their `app/service`: what `workers()` reports. */
  private readonly running = new Map<string, { service: string; pool: LogicPool }>();
  private readonly models = new Map<string, Promise<BackendName>>();
  /** The `app/service`s each model runner key was loaded for: whose pool `workers()` reports. */
  private readonly modelServices = new Map<string, Set<string>>();
  private readonly unlisten: (() => void) | undefined;

  constructor(
    private readonly platform: Platform,
    private readonly caps: LoaderCaps,
    /** Each variant once loaded: its backend choice carries figures for the node's stats. */
    private readonly loaded?: (
      m: Manifest,
      service: string,
      variant: string,
      l: LoadedModel,
    ) => void,
  ) {
    // A runner that pools sessions (Node) tells its grows and shrinks where the Logic pools do.
    if (caps.onScale) this.unlisten = platform.models.listenScale?.(caps.onScale);
  }

  /** Stops hearing the model runner's scale events (the node closes; the runner may outlive it). */
  close(): void {
    this.unlisten?.();
  }

  /** A file of `m`, fetched by content hash once and verified against the manifest. */
  file(m: Manifest, path: string): Promise<Uint8Array> {
    const entry = m.files[path];
    if (!entry) return Promise.reject(new NotFoundError(`app "${m.name}" lists no file "${path}"`));
    return once(this.files, entry.sha256, async () => {
      const bytes = await this.platform.source.blob(entry.sha256);
      await verifyFile(m, path, bytes);
      return bytes;
    });
  }

  /** The worker pool of a Logic service, started once per app version and service. */
  pool(m: Manifest, service: string, svc: LogicService): Promise<LogicPool> {
    const key = `${m.name}@${m.version}/${service}`;
    return once(this.pools, key, async () => {
      const { module, minPages } = await this.compile(m, svc.file);
      const limits = this.logicLimits(svc);
      const caps = this.caps;
      const pool = createLogicPool({
        name: `${m.name}/${service}`,
        module,
        minPages,
        maxPages: Math.floor(limits.memoryMiB * 16),
        timeoutMs: limits.timeoutMs,
        size: maxWorkers(svc.scale, limits.memoryMiB, caps),
        ...((caps.workerIdleMs ?? svc.scale?.idleMs) !== undefined && {
          idleMs: caps.workerIdleMs ?? svc.scale?.idleMs,
        }),
        ...(caps.holdMs && { holdMs: caps.holdMs }),
        ...(caps.onScale && { onScale: caps.onScale }),
        spawn: () => this.platform.spawnLogicWorker(),
      });
      this.running.set(key, { service: `${m.name}/${service}`, pool });
      return pool;
    });
  }

  /** The most workers a Logic service of `m` can have on this node (`maxWorkers`). */
  workersMax(svc: LogicService): number {
    return maxWorkers(svc.scale, this.logicLimits(svc).memoryMiB, this.caps);
  }

  /**
   * The most sessions a model service of `m` can have on this node (`modelSessionsMax`, by its
   * largest variant's size).
   */
  sessionsMax(m: Manifest, svc: ModelService): number {
    const sizes = Object.values(svc.variants).map((v) => m.files[v.file]?.size ?? 0);
    return modelSessionsMax(svc.scale, Math.max(0, ...sizes), this.caps);
  }

  /**
   * Each Logic service's pool now, and each model service's sessions where the runner pools
   * them (`app/service`; the versions and variants held summed).
   */
  workers(): Record<string, PoolNow> {
    const out: Record<string, PoolNow> = {};
    const all: { service: string; n: PoolNow }[] = [];
    for (const { service, pool } of this.running.values()) all.push({ service, n: pool.now() });
    const models = this.platform.models.pools?.() ?? {};
    for (const [key, n] of Object.entries(models))
      for (const service of this.modelServices.get(key) ?? []) all.push({ service, n });
    for (const { service, n } of all) {
      const o = out[service];
      out[service] = o
        ? {
            workers: o.workers + n.workers,
            starting: o.starting + n.starting,
            busy: o.busy + n.busy,
            queued: o.queued + n.queued,
            max: Math.max(o.max, n.max),
          }
        : n;
    }
    return out;
  }

  /** Loads a variant on the model runner once; answers its runner key. */
  async model(m: Manifest, service: string, variant: string, backend?: BackendName) {
    const svc = m.services[service] as ModelService;
    const file = svc.variants[variant]!.file;
    const sha = m.files[file]!.sha256;
    const key = backend ? `${sha}@${backend}` : sha;
    await once(this.models, key, async () => {
      const bytes = await this.file(m, file);
      const order = backend ? [backend] : this.platform.backendOrder;
      const idleMs = this.caps.workerIdleMs ?? svc.scale?.idleMs ?? DEFAULT_IDLE_MS;
      const max = modelSessionsMax(svc.scale, bytes.byteLength, this.caps);
      const scale = { name: `${m.name}/${service}`, max, idleMs };
      const reply = await this.platform.models.load(key, bytes, order, scale);
      if (!reply.ok) throw fromWire(reply.error);
      this.loaded?.(m, service, variant, reply.value);
      return reply.value.backend;
    });
    const services = this.modelServices.get(key) ?? new Set();
    services.add(`${m.name}/${service}`);
    this.modelServices.set(key, services);
    return key;
  }

  /** A Logic's limits: what its manifest asks, within this node's caps. */
  logicLimits(svc: LogicService): { timeoutMs: number; memoryMiB: number } {
    const asked = logicLimits(svc);
    return {
      timeoutMs: Math.min(
        asked.timeoutMs,
        this.caps.logicTimeoutMs ?? DEFAULT_LOGIC_CAPS.timeoutMs,
      ),
      memoryMiB: Math.min(
        asked.memoryMiB,
        this.caps.logicMemoryMiB ?? DEFAULT_LOGIC_CAPS.memoryMiB,
      ),
    };
  }

  /**
   * Stops the worker pools of `app` (of its version `version` only, when given: an old version
   * no call runs any more, or the node closes).
   */
  unload(app: string, version?: string): void {
    const prefix = version === undefined ? `${app}@` : `${app}@${version}/`;
    for (const [key, pool] of this.pools) {
      if (!key.startsWith(prefix)) continue;
      pool.then(
        (p) => p.close(),
        () => {},
      );
      this.pools.delete(key);
      this.running.delete(key);
    }
  }

  /** Forgets the bytes, modules and models of `gone`'s files that no manifest in `keep` names. */
  forget(gone: Manifest, keep: readonly Manifest[]): void {
    const kept = new Set(keep.flatMap((m) => Object.values(m.files).map((f) => f.sha256)));
    const forgotten = Object.values(gone.files)
      .map((f) => f.sha256)
      .filter((sha256) => !kept.has(sha256));
    void this.platform.source.forget?.(forgotten).catch(() => {});
    for (const sha256 of forgotten) {
      this.files.delete(sha256);
      this.modules.delete(sha256);
      for (const key of this.models.keys()) {
        if (key !== sha256 && !key.startsWith(`${sha256}@`)) continue;
        this.models.delete(key);
        this.modelServices.delete(key);
        void this.platform.models.unload(key).catch(() => {});
      }
    }
  }

  /** Compiles each distinct wasm once per node, whatever app or service names it. */
  private compile(m: Manifest, path: string) {
    return once(this.modules, m.files[path]!.sha256, async () => {
      const bytes = await this.file(m, path);
      let module: WebAssembly.Module;
      try {
        module = await WebAssembly.compile(bytes as Uint8Array<ArrayBuffer>);
      } catch (e) {
        throw new LogicLoadError(
          `${m.name}: ${path} is not valid WebAssembly (${(e as Error).message})`,
        );
      }
      return { module, minPages: inspectLogic(bytes, module).memoryMinPages };
    });
  }
}
