/**
 * `window.brume` over a node of this tab (core/page-api.ts is the API). The join page also puts
 * the node's parts on `window.brumeDebug` for tests and benchmarks; the embed iframe serves this
 * same API to its host page by message (web/embed-serve.ts).
 * @example const { api, debug } = startBrume(config); window.brume = api; window.brumeDebug = debug;
 */
import type { NodeContext } from '../core/context/client';
import type { ModelRunnerApi } from '../core/exec/model-runner';
import type { JobsApi } from '../core/jobs-client';
import type { BrumeNode } from '../core/node/node';
import type { AppContext, BrumeApi, InvokeAnswer, NodeStatus } from '../core/page-api';
import type { Runtime } from '../core/runtime';

/** The node's internals, for tests and benchmarks only: no page code should depend on them. */
export interface BrumeDebug {
  /** The node's runtime, once `window.brume.ready` has resolved. */
  readonly runtime: Runtime;
  /** The node itself: its link to the relay, its router and what it serves. */
  fabric: Promise<BrumeNode>;
  /** The model runner (shared by same-origin tabs, or this tab's): `info()` for its account. */
  models: ModelRunnerApi;
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
  fabric: Promise<BrumeNode>;
  /** The relay's jobs API (core/jobs-client.ts). */
  jobs: JobsApi;
}

export function pageApi(parts: NodeParts): BrumeApi {
  const { ready, fabric } = parts;
  const context = fabric.then((n) => n.context!);
  let link: BrumeNode | undefined;
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
      return (await fabric).schedule(app, service, qos, opts.rpc);
    },
    async session(app, service, options) {
      await ready;
      return (await fabric).session(app, service, options);
    },
    describe: async () => (await fabric).runtime.describe(),
    context(app) {
      // This tab keeps the app's context from now on (the relay sends it the app's changes).
      void context.then((c) => c.use(app));
      return appContext(context, app);
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
    jobs: parts.jobs,
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
