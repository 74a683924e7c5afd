/**
 * `window.brume` over a node of this tab (core/page-api.ts is the API). The join page also puts
 * the node's parts on `window.brumeDebug` for tests and benchmarks; the embed iframe serves this
 * same API to its host page by message (web/embed-serve.ts).
 * @example const { api, debug } = startBrume(config); window.brume = api; window.brumeDebug = debug;
 */
import type { NodeContext } from '../core/context/client';
import type { Fabric } from '../core/fabric';
import type {
  AppContext,
  BrumeApi,
  InvokeAnswer,
  NodeStatus,
  ScheduleAnswer,
} from '../core/page-api';
import type { Runtime } from '../core/runtime';

/** The node's internals, for tests and benchmarks only: no page code should depend on them. */
export interface BrumeDebug {
  runtime: Runtime;
  fabric: Promise<Fabric>;
}

declare global {
  interface Window {
    brume: BrumeApi;
    /** On the join page only. */
    brumeDebug: BrumeDebug;
  }
}

/** What the API is served over: one node of this tab. */
export interface NodeParts {
  /** Resolves once the runtime knows the deployed apps. */
  ready: Promise<void>;
  runtime: Runtime;
  fabric: Promise<Fabric>;
  context: Promise<NodeContext>;
}

export function pageApi(parts: NodeParts): BrumeApi {
  const { ready, runtime, fabric } = parts;
  let link: Fabric | undefined;
  const listeners = new Set<(s: NodeStatus) => void>();
  const status = (): NodeStatus => ({
    ready: link !== undefined,
    joined: link?.status === 'joined',
    contributing: link ? !link.paused : false,
    node: link?.nodeId ?? '',
  });
  const changed = () => {
    for (const l of [...listeners]) l(status());
  };
  void Promise.all([ready, fabric]).then(([, f]) => {
    link = f;
    f.onStatus(changed);
    changed();
  });
  const invoke: BrumeApi['invoke'] = async (app, service, input, qos = {}, opts = {}) => {
    await ready;
    const r: InvokeAnswer = await (await fabric).call(app, service, input, qos, opts);
    return r;
  };
  return {
    ready,
    invoke,
    call: async (app, service, input, qos, opts) =>
      (await invoke(app, service, input, qos, opts)).value,
    async schedule(app, service, qos = {}, opts = {}) {
      await ready;
      const d = await (await fabric).schedule(app, service, qos, opts.rpc);
      return scheduleAnswer(runtime, app, service, opts.rpc ?? '', d);
    },
    describe: () => runtime.describe(),
    context(app) {
      // This tab keeps the app's context from now on (the relay sends it the app's changes).
      void parts.context.then((c) => c.use(app));
      return appContext(parts.context, app);
    },
    status,
    onStatus(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    async pause(paused) {
      (await fabric).pause('user', paused);
      changed();
      return status();
    },
  };
}

function appContext(context: Promise<NodeContext>, app: string): AppContext {
  return {
    get: async (key, scope) => (await context).get(app, key, scope),
    put: async (key, value, options) => {
      const c = await context;
      await c.settled(await c.put(app, key, value, options));
    },
    delete: async (key, scope) => {
      const c = await context;
      await c.settled(await c.delete(app, key, scope));
    },
    watch(prefix, cb) {
      let off: (() => void) | undefined;
      let cancelled = false;
      void context.then((c) => {
        if (!cancelled) off = c.watch(app, prefix, cb);
      });
      return () => {
        cancelled = true;
        off?.();
      };
    },
  };
}

/**
 * The fabric's decision in the API's shape. The fabric answers `rpc` as the model variant (or,
 * with no model, the Logic's rpc) and no `variant`; the manifest tells which one it is.
 */
function scheduleAnswer(
  runtime: Runtime,
  app: string,
  service: string,
  rpc: string,
  d: { node: string; rpc: string; variant?: string; estimateMs: number; reason: string },
): ScheduleAnswer {
  const base = { node: d.node, estimateMs: d.estimateMs, reason: d.reason };
  if (d.variant !== undefined) return { ...base, rpc: d.rpc, variant: d.variant };
  const services = runtime.apps().find((m) => m.name === app)?.services ?? {};
  const svc = services[service];
  if (svc?.kind !== 'logic') return { ...base, rpc: d.rpc, variant: d.rpc };
  const variants = new Set(
    Object.values(services).flatMap((s) => (s.kind === 'model' ? Object.keys(s.variants) : [])),
  );
  return { ...base, rpc: rpc || svc.rpcs[0]!, variant: variants.has(d.rpc) ? d.rpc : '' };
}
