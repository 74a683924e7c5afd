import {
  type CallOutcome,
  type ContextReply,
  type ContextRequest,
  type Dispatch,
  invokeLogic,
} from './abi/invoke';
import { type ExitCount, ExitTally, exitHead } from './early-exit';
import {
  type BrumeError,
  fromWire,
  InputError,
  LogicFault,
  NotFoundError,
  QosError,
  UnsupportedError,
} from './errors';
import { HeldVersions } from './exec/held';
import { Loader, type Platform } from './exec/loader';
import type { PoolNow } from './exec/logic-pool';
import type { BackendInfo, BackendName } from './exec/model-runner';
import { type ScaleEvent, ScaleLog } from './exec/scaler';
import { type LogicService, type Manifest, type ModelService, parseManifest } from './manifest';
import { PipelineStats, runLocalPipeline } from './pipeline/local';
import {
  backendOf,
  figuresFor,
  modelFigure,
  modelKey,
  type Route,
  route,
  type Self,
  selfView,
  statsKey,
} from './placement';
import type { Role } from './protocol';
import { chooseVariant, type Qos } from './scheduler';
import { LatencyStats } from './stats';
import { checkSpec, type Tensor, toTensor } from './tensor';
import { newTraceId } from './trace';
import { type UsedService, usedService } from './uses';

export type { AppSource, Platform } from './exec/loader';

import type { CallOptions, CallResult, ServeOptions, TraceEntry } from './call-types';

export type { CallOptions, CallResult, ServeOptions, TraceEntry } from './call-types';

export interface NodeDescription {
  id: string;
  backends: BackendInfo[];
  apps: { name: string; version: string; services: string[] }[];
  stats: ReturnType<LatencyStats['all']>;
}

const maxDepth = 16;

/**
 * A Brume node's executor: loads apps from its source, runs Logics in pooled workers and Models on
 * the model runner, and follows Logic calls from service to service.
 * @example const node = createRuntime(platform); await node.refresh();
 *          const { value } = await node.call('digits', 'classify', { width, height, pixels });
 */
export interface RuntimeOptions {
  id?: string;
  /** Workers per Logic service when its manifest asks no `scale.max`; default 1. */
  logicWorkers?: number;
  /** This node's cap on workers per Logic service (core/exec/loader.ts maxWorkers). */
  maxWorkers?: number;
  /** Memory for Logic guests: a service gets at most this / its `limits.memoryMiB` workers. */
  workersMemoryMiB?: number;
  /** Overrides every manifest's `scale.idleMs`. */
  workerIdleMs?: number;
  /** Bench only: each Logic call's first step holds its worker this long without CPU. */
  holdMs?: number;
  /** Model files larger than this are not run on this node (default: no limit). */
  maxModelBytes?: number;
  /**
   * This node's cap on a Logic step's wall-clock budget, whatever its manifest asks (up to
   * 600 000 ms there); default 10 000.
   */
  logicTimeoutMs?: number;
  /** This node's cap on a Logic's guest memory, whatever its manifest asks (up to 4096 MiB there); default 256. */
  logicMemoryMiB?: number;
  /**
   * Where a Logic's calls go when this node cannot meet their QoS (the node's router); without
   * it every call runs here.
   */
  remote?: RemoteCall;
  /**
   * A Logic's context operations on its app's store (the node's context store); without it they
   * fail with E_UNSUPPORTED.
   */
  context?: ContextCall;
  /** How long a version no longer current is kept after its last call; default 60 000 ms. */
  versionGraceMs?: number;
  /** Versions of one app kept at most, the current one included; default 3 (at most 8). */
  maxVersions?: number;
  /** The node's role: a service's `tiers` are judged against it (`plan`). Default 'dew'. */
  role?: Role;
}

/** A Logic's call to another service, placed by the fabric. */
export type RemoteCall = (
  app: string,
  service: string,
  rpc: string,
  input: unknown,
  qos: Qos,
  traceId: string,
) => Promise<{ value: unknown; rpc: string; trace: TraceEntry[] }>;

/** A Logic's context operation on its app's store. */
export type ContextCall = (app: string, request: ContextRequest) => Promise<ContextReply>;

/** Where this node would run a request itself: a Route without the node (it is this one). */
export type Plan = Omit<Route, 'node'>;

export function createRuntime(platform: Platform, options: RuntimeOptions = {}) {
  return new Runtime(platform, options);
}

export class Runtime {
  readonly id: string;
  readonly stats = new LatencyStats();
  /** Measured wall times of each pipeline's quality levels (core/pipeline/quality.ts). */
  readonly pipelines = new PipelineStats();
  /** The versions of each app held here (§5.7). */
  private readonly held: HeldVersions;
  private readonly loader: Loader;
  /** Every grow and shrink of this node's worker pools (the latest kept, all counted). */
  readonly scaleLog = new ScaleLog();
  private backendList: Promise<BackendInfo[]> | undefined;
  /** Told when the backend order changed (a measurement put another backend first). */
  private readonly backendsChanged = new Set<() => void>();
  /** Put on each trace entry run here: a node id (32 hex); none for a runtime without one. */
  private readonly traceNode: { node: string } | undefined;
  /** Exit heads judged here since start, by `app/modelService`. */
  private readonly exitTally = new ExitTally();

  /** Larger model files are not run here (a device with little memory). */
  readonly maxModelBytes: number;
  /** Where a Logic's calls go when this node cannot meet their QoS (RuntimeOptions.remote). */
  private readonly remote: RemoteCall | undefined;
  /** A Logic's context operations (RuntimeOptions.context). */
  private readonly context: ContextCall | undefined;

  constructor(
    private readonly platform: Platform,
    readonly options: RuntimeOptions,
  ) {
    this.id = options.id ?? crypto.randomUUID();
    this.traceNode = /^[0-9a-f]{32}$/.test(this.id) ? { node: this.id } : undefined;
    this.maxModelBytes = options.maxModelBytes ?? Number.POSITIVE_INFINITY;
    this.remote = options.remote;
    this.context = options.context;
    const caps = { ...options, onScale: (e: ScaleEvent) => this.scaleLog.add(e) };
    this.loader = new Loader(platform, caps, (m, service, variant, loaded) => {
      // The runner timed the variant on each backend: those figures are this node's from now on,
      // and its backends are read again (the one measured faster is reported first).
      const samples = loaded.choice?.samples ?? {};
      for (const [b, ms] of Object.entries(samples) as [BackendName, number[]][])
        for (const x of ms) this.stats.record(statsKey(m.name, service, variant, b), x);
      if (Object.keys(samples).length > 1) {
        this.backendList = undefined;
        for (const l of this.backendsChanged) l();
      }
    });
    this.held = new HeldVersions(platform.source, this.loader, options);
  }

  /** Fetches the app list and every manifest. A manifest that fails verification is skipped and reported. */
  async refresh(): Promise<{ loaded: string[]; failed: { app: string; error: BrumeError }[] }> {
    const loaded: string[] = [];
    const failed: { app: string; error: BrumeError }[] = [];
    for (const { name } of await this.platform.source.list()) {
      try {
        this.install(parseManifest(await this.platform.source.manifest(name)));
        loaded.push(name);
      } catch (e) {
        failed.push({ app: name, error: fromWire(e) });
      }
    }
    return { loaded, failed };
  }

  /** Makes a verified manifest the app's current version (HeldVersions.install). */
  install(manifest: Manifest): void {
    this.held.install(manifest);
  }

  /** Fetches and installs `app` when this node does not know it yet (deployed after start). */
  ensure(app: string): Promise<void> {
    return this.held.ensure(app);
  }

  /** The relay made `version` current (§5.7): calls that start from now on run it. */
  announce(app: string, version: string): Promise<void> {
    return this.held.announce(app, version);
  }

  /** Catches up with versions made current while this node was away; answers the apps updated. */
  sync(): Promise<string[]> {
    return this.held.sync();
  }

  /**
   * The most workers each service that declares `scale` can have here, by `app/service` (the
   * heartbeat's `workersMax`: the relay places calls to it by that, not only by the node's calls
   * at once): a Logic's workers, a model's sessions where the runner pools them (Node; a tab
   * keeps one session per model and reports none for it).
   */
  workersMax(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const m of this.held.apps()) {
      for (const [name, svc] of Object.entries(m.services)) {
        if (!svc.scale) continue;
        const max =
          svc.kind === 'logic'
            ? this.loader.workersMax(svc)
            : this.platform.models.pools
              ? this.loader.sessionsMax(m, svc)
              : undefined;
        if (max !== undefined) out[`${m.name}/${name}`] = max;
      }
    }
    return out;
  }

  /** Workers of each Logic service, sessions of each pooled model, by `app/service` (heartbeat). */
  workers(): Record<string, PoolNow> {
    return this.loader.workers();
  }

  /** Versions held of each app, the current one first (what the heartbeat reports). */
  versions(): Record<string, string[]> {
    return this.held.versions();
  }

  apps(): Manifest[] {
    return this.held.apps();
  }

  /** Calls `listener` whenever the backend order may have changed; answers an unsubscribe. */
  onBackendsChanged(listener: () => void): () => void {
    this.backendsChanged.add(listener);
    return () => this.backendsChanged.delete(listener);
  }

  async backends(): Promise<BackendInfo[]> {
    this.backendList ??= this.platform.models.backends();
    return this.backendList;
  }

  async describe(): Promise<NodeDescription> {
    return {
      id: this.id,
      backends: await this.backends(),
      apps: this.apps().map((m) => ({
        name: m.name,
        version: m.version,
        services: Object.keys(m.services),
      })),
      stats: this.stats.all(),
    };
  }

  /** Runs `service` of `app` on this node (`opts.gone`: its caller went before it started). */
  async call(
    app: string,
    service: string,
    input: unknown,
    qos: Qos = {},
    opts: ServeOptions = {},
  ): Promise<CallResult> {
    const trace: TraceEntry[] = [];
    const t0 = performance.now();
    const traced = { ...opts, traceId: opts.traceId ?? newTraceId() };
    const m = await this.held.resolve(app, qos.version);
    if (m.pipelines && Object.hasOwn(m.pipelines, service)) {
      const call = this.call.bind(this);
      return runLocalPipeline(
        this.id,
        m,
        service,
        input,
        qos,
        traced.traceId,
        call,
        this.pipelines,
      );
    }
    // Held while it runs: a newer version installed meanwhile does not stop this call.
    return this.held.runOn(m, async () => {
      const outcome = await this.run(m, service, opts.rpc ?? '', input, qos, traced, trace, 0);
      const ms = performance.now() - t0;
      return {
        value: outcome.value,
        rpc: outcome.rpc,
        ms,
        version: m.version,
        trace,
        traceId: traced.traceId,
      };
    });
  }

  /** Pre-warms an app: fetches, verifies and compiles its files, starts a worker per Logic. */
  async warm(app: string): Promise<void> {
    const m = this.manifest(app);
    for (const [name, svc] of Object.entries(m.services)) {
      if (svc.kind === 'logic') await (await this.loader.pool(m, name, svc)).warm();
      else for (const v of Object.keys(svc.variants)) await this.loader.model(m, name, v);
    }
  }

  close(): void {
    this.held.close();
    this.loader.close();
  }

  private manifest(app: string): Manifest {
    return this.held.current(app);
  }

  private async run(
    m: Manifest,
    service: string,
    rpc: string,
    input: unknown,
    qos: Qos,
    opts: ServeOptions,
    trace: TraceEntry[],
    depth: number,
  ): Promise<CallOutcome> {
    if (depth > maxDepth)
      throw new LogicFault(`call chain deeper than ${maxDepth} services; stopped`);
    const app = m.name;
    const svc = m.services[service];
    if (!svc) {
      throw new NotFoundError(
        `app "${app}" has no service "${service}" (it has: ${Object.keys(m.services).join(', ')})`,
      );
    }
    const t0 = performance.now();
    if (svc.kind === 'logic') {
      const chosen = rpc || svc.rpcs[0]!;
      if (!svc.rpcs.includes(chosen)) {
        throw new NotFoundError(
          `service "${app}/${service}" has no rpc "${chosen}" (it has: ${svc.rpcs.join(', ')})`,
        );
      }
      const pool = await this.loader.pool(m, service, svc);
      const dispatch: Dispatch = {
        call: async (s, r, payload) => {
          const used = usedService(m, s);
          if (used) return this.callUsed(used, s, r, payload, qos, opts, trace, depth);
          // A call this node cannot serve within the QoS goes where the fabric places it,
          // unless the caller pinned its variant here.
          const remote = this.remote;
          if (remote && !opts.pin?.[s]) {
            const away = await this.plan(app, s, qos, r).then(
              () => false,
              (e: unknown) => e instanceof QosError,
            );
            if (away) {
              // Elsewhere too, the services of the version this Logic belongs to.
              const out = await remote(
                app,
                s,
                r,
                payload,
                { ...qos, version: m.version },
                opts.traceId!,
              );
              trace.push(...out.trace);
              return { value: out.value, service: s, rpc: out.rpc };
            }
          }
          return this.run(
            m,
            s,
            r,
            payload,
            qos,
            { backend: opts.backend, pin: opts.pin, traceId: opts.traceId },
            trace,
            depth + 1,
          );
        },
        context: (request) => {
          if (!this.context) throw new UnsupportedError('this node keeps no context store');
          return this.context(app, request);
        },
      };
      // The call's first step is told so (a bench's holdMs holds the worker once per call), and
      // so is the pool: a caller gone before it has a worker leaves the queue (later steps finish).
      let first = true;
      const step = (name: string, request: Uint8Array) => {
        const f = first;
        first = false;
        return pool.step(name, request, f, f ? opts.gone : undefined);
      };
      const value = await invokeLogic(step, chosen, input, dispatch);
      const ms = performance.now() - t0;
      this.stats.record(statsKey(app, service, chosen, 'logic'), ms);
      trace.push({
        service,
        rpc: chosen,
        kind: 'logic',
        ms,
        traceId: opts.traceId!,
        version: m.version,
        ...this.traceNode,
      });
      return { value, service, rpc: chosen };
    }
    return this.runModel(m, service, svc, rpc, input, qos, opts, trace);
  }

  /**
   * A Logic's call to `name` (`"<app>/<service>"`), a service of an app its manifest uses: here
   * when this node holds a version in range and meets the QoS, else placed by the fabric like any
   * call to that app. The callee runs as itself: its own manifest, limits and context.
   */
  private async callUsed(
    used: UsedService,
    name: string,
    rpc: string,
    payload: unknown,
    qos: Qos,
    opts: ServeOptions,
    trace: TraceEntry[],
    depth: number,
  ): Promise<CallOutcome> {
    // The callee's version: one within the caller's range, here or wherever the fabric places it.
    const usedQos = { ...qos, version: used.range };
    let callee: Manifest;
    try {
      callee = await this.held.resolve(used.app, used.range);
      await this.plan(used.app, used.service, usedQos, rpc);
    } catch (e) {
      // Not here (unknown, out of range, or outside the QoS): the fabric may have it.
      if (!this.remote) throw e;
      const out = await this.remote(used.app, used.service, rpc, payload, usedQos, opts.traceId!);
      trace.push(...out.trace);
      return { value: out.value, service: name, rpc: out.rpc };
    }
    const here = { backend: opts.backend, traceId: opts.traceId };
    return this.held.runOn(callee, async () => {
      const out = await this.run(
        callee,
        used.service,
        rpc,
        payload,
        usedQos,
        here,
        trace,
        depth + 1,
      );
      return { ...out, service: name };
    });
  }

  private async runModel(
    m: Manifest,
    service: string,
    svc: ModelService,
    rpc: string,
    input: unknown,
    qos: Qos,
    opts: CallOptions,
    trace: TraceEntry[],
  ): Promise<CallOutcome> {
    const t0 = performance.now();
    const backends = await this.backends();
    const backend = opts.backend ?? backends[0]?.name ?? 'wasm';
    let variant = rpc || opts.pin?.[service] || '';
    let reason: string | undefined;
    if (!variant) {
      const candidates = this.candidates(m, service, svc, backend);
      const decision = chooseVariant(service, candidates, qos);
      variant = decision.rpc;
      reason = decision.reason;
    } else if (!svc.variants[variant]) {
      throw new NotFoundError(
        `service "${m.name}/${service}" has no variant "${variant}" (it has: ${Object.keys(svc.variants).join(', ')})`,
      );
    }
    const size = m.files[svc.variants[variant]!.file]!.size;
    if (size > this.maxModelBytes) {
      // Asked for by name (a pin, or the relay's choice from stale figures): still not run here.
      throw new QosError(
        'accuracy',
        undefined,
        `variant ${variant} (${(size / 2 ** 20).toFixed(2)} MiB) is over this node's model limit of ${(this.maxModelBytes / 2 ** 20).toFixed(2)} MiB`,
      );
    }
    const payload = input as { inputs?: unknown; exit?: unknown } | null;
    const inputs = payload?.inputs;
    // The head this call runs with, checked before the model runs (PROTOCOL.md §2.1 `exit`).
    const head = svc.exit ? exitHead(svc.exit, payload?.exit) : undefined;
    if (!head && payload?.exit !== undefined) {
      throw new InputError(`exit: model service "${m.name}/${service}" has no exit head`);
    }
    if (!inputs || typeof inputs !== 'object') {
      throw new InputError(
        `model service "${m.name}/${service}" takes { inputs: { name: tensor } } (PROTOCOL.md §4)`,
      );
    }
    const feeds: Record<string, Tensor> = {};
    for (const spec of svc.inputs) {
      const t = toTensor((inputs as Record<string, unknown>)[spec.name], `inputs.${spec.name}`);
      checkSpec(t, spec);
      feeds[spec.name] = t;
    }
    const key = await this.loader.model(m, service, variant, opts.backend);
    const reply = await this.platform.models.run(key, feeds);
    if (!reply.ok) throw fromWire(reply.error);
    const exit = head && this.exitTally.judge(modelKey(m.name, service), head, reply.value.outputs);
    const ms = performance.now() - t0;
    const ran = reply.value.backend;
    this.stats.record(statsKey(m.name, service, variant, ran), ms);
    trace.push({
      service,
      rpc: variant,
      kind: 'model',
      ms,
      engineMs: reply.value.ms,
      backend: ran,
      ...(reason ? { reason } : {}),
      ...(exit && { exit: exit.taken }),
      traceId: opts.traceId!,
      version: m.version,
      ...this.traceNode,
    });
    const value = exit ? { outputs: reply.value.outputs, exit } : { outputs: reply.value.outputs };
    return { value, service, rpc: variant };
  }

  /** Exit heads judged here since start, by `app/modelService` (what the heartbeat reports). */
  exits(): Record<string, ExitCount> {
    return this.exitTally.snapshot();
  }

  /**
   * The variants of a model service this node can hold, with its estimate for each on `backend`
   * (the figure placement would use: measured once it counts, else the manifest's × the prior).
   */
  private candidates(m: Manifest, service: string, svc: ModelService, backend: BackendName) {
    return Object.entries(svc.variants)
      .filter(([, v]) => m.files[v.file]!.size <= this.maxModelBytes)
      .map(([id, v]) => {
        const key = statsKey(m.name, service, id, backend);
        const seen = this.stats.get(key);
        const f = modelFigure({ stats: seen ? { [key]: seen } : {} }, key, v.latencyMs, backend);
        return { rpc: id, accuracy: v.accuracy, estimateMs: f.ms, measured: f.measured };
      });
  }

  /** Model variants this node can run, per app and model service (`app/service` → rpcs). */
  runnable(): Record<string, string[]> {
    const out: Record<string, string[]> = {};
    for (const m of this.held.apps()) {
      for (const [name, svc] of Object.entries(m.services)) {
        if (svc.kind !== 'model') continue;
        out[modelKey(m.name, name)] = this.holds(m, svc);
      }
    }
    return out;
  }

  /** The variants of a model service whose file this node holds (within `maxModelBytes`). */
  private holds(m: Manifest, svc: ModelService): string[] {
    return Object.entries(svc.variants)
      .filter(([, v]) => m.files[v.file]!.size <= this.maxModelBytes)
      .map(([id]) => id);
  }

  /**
   * Whether this node can serve `service` within `qos`, and how: the local-first check before a
   * request is sent elsewhere. The rule the relay places by (`route`, core/placement), over this
   * node's own view of itself as the relay would see it (RTT 0; `now`: its load and role, as its
   * heartbeat reports them), so both judge it alike. Privacy is its caller's to check: a node
   * plans only what privacy lets it run. Throws QosError when it cannot.
   */
  async plan(
    app: string,
    service: string,
    qos: Qos = {},
    rpc?: string,
    now: Pick<Self, 'queue' | 'maxConcurrency' | 'role'> = {},
  ): Promise<Plan> {
    const m = this.manifest(app);
    const backends = (await this.backends()).map((b) => b.name);
    const self = selfView({
      id: this.id,
      backends,
      // Only the figures this request is judged by: a plan runs for every call served here.
      ...figuresFor(m, service, rpc ?? '', backendOf({ backends }), {
        stat: (key) => this.stats.get(key),
        holds: (model) => this.holds(m, model),
      }),
      apps: [app],
      ...(this.options.role && { role: this.options.role }),
      ...now,
    });
    const here: Qos = { ...qos };
    // Other privacy is its caller's to check; "device" keeps every tier here (its `tiers` aside).
    if (here.privacy !== 'device') delete here.privacy;
    const r = route(m, [self], { service, rpc: rpc ?? '', qos: here, caller: this.id });
    const { node: _, ...plan } = r;
    return plan;
  }

  /** A Logic's limits: what its manifest asks, within this node's caps. */
  logicLimits(svc: LogicService): { timeoutMs: number; memoryMiB: number } {
    return this.loader.logicLimits(svc);
  }
}
