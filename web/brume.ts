import { createStore, del, get, keys, set, setMany } from 'idb-keyval';
import { type ContextRead, NodeContext, type PutOptions } from '../core/context/client';
import type { Scope } from '../core/context/replica';
import { connectFabric, type Fabric, type FabricCallResult, type SocketLike } from '../core/fabric';
import type { Role } from '../core/protocol';
import type { CallOptions, NodeDescription, Runtime } from '../core/runtime';
import { createRuntime } from '../core/runtime';
import type { Qos } from '../core/scheduler';
import { httpAppSource } from '../core/sources';
import { cachedAppSource, type DownloadProgress } from './cache';
import { tabCapabilities } from './capabilities';
import { tabIdentity } from './identity';
import { peerLinks } from './peers';
import { browserPlatform } from './platform';

declare global {
  interface Window {
    brume: BrumeApi;
  }
}

export interface AppContext {
  /** `{ value, expiresAt? }`, `{ expired: true }`, or undefined for a key never set or deleted. */
  get(key: string, scope?: Scope): Promise<ContextRead>;
  /**
   * Resolves once the relay has the write durably (online; at most 5 s, after that it waits in the
   * outbox) or once it is queued (offline). A refusal rejects with the relay's error (E_CLOCK for
   * a clock far ahead, E_LIMIT...), and the tab takes the write back.
   */
  put(key: string, value: unknown, options?: PutOptions): Promise<void>;
  delete(key: string, scope?: Scope): Promise<void>;
  /** Calls `cb` once per change under `prefix`, in order per key; answers an unsubscribe. */
  watch(prefix: string, cb: (key: string, read: ContextRead) => void): () => void;
}

/** The page-facing API, as `window.brume`. */
export interface BrumeApi {
  /** Resolves once the node knows the deployed apps (from the relay, or its cache when cut off). */
  ready: Promise<void>;
  /** Runs `service` of `app` wherever the fabric best meets `qos`, and answers its result. */
  call(app: string, service: string, input: unknown, qos?: Qos): Promise<unknown>;
  /** Like call, with the node, path, variant, latency and trace of every service that ran. */
  invoke(
    app: string,
    service: string,
    input: unknown,
    qos?: Qos,
    opts?: CallOptions,
  ): Promise<FabricCallResult>;
  /** The Edgeless API: where a request would run (node, variant, estimate) and why. */
  schedule(
    app: string,
    service: string,
    qos?: Qos,
  ): Promise<{ node: string; rpc: string; estimateMs: number; reason: string }>;
  /** The context store of `app` (DESIGN.md §4): shared with the app's instances everywhere. */
  context(app: string): AppContext;
  describe(): Promise<NodeDescription>;
  /** The node's runtime and fabric link, for the page, tests and benchmarks. */
  node: Runtime;
  fabric: Promise<Fabric>;
}

export interface BrumeConfig {
  /** The relay's origin; default this page's. */
  relay?: string;
  role?: Exclude<Role, 'cloud'>;
  /** Model files larger than this are not run here (a small device). */
  maxModelBytes?: number;
  onProgress?: (p: DownloadProgress) => void;
  /** false: this node never runs requests for others (a site's or a person's choice). */
  contribute?: boolean;
  /** Time a call to another tab over a data channel may take; default 30 000 ms. */
  peerTimeoutMs?: number;
}

/** The config a page URL asks for: `?role=fog`, `?maxModelMiB=0.5`. */
export function configFromUrl(search: string): BrumeConfig {
  const q = new URLSearchParams(search);
  const config: BrumeConfig = {};
  const role = q.get('role');
  if (role === 'fog' || role === 'dew') config.role = role;
  const mib = Number(q.get('maxModelMiB'));
  if (q.has('maxModelMiB') && mib > 0) config.maxModelBytes = mib * 2 ** 20;
  const peerMs = Number(q.get('peerTimeoutMs'));
  if (Number.isInteger(peerMs) && peerMs > 0) config.peerTimeoutMs = peerMs;
  return config;
}

/**
 * Boots this tab as a Brume node: its runtime (workers, cached apps) and its link to the fabric.
 * @example const brume = startBrume(configFromUrl(location.search)); await brume.ready;
 *          await brume.call('digits', 'classify', { width, height, pixels }, { accuracy: 0.96 });
 */
export function startBrume(config: BrumeConfig = {}): BrumeApi {
  const relay = new URL(config.relay ?? location.origin);
  const platform = browserPlatform(relay.origin);
  platform.source = cachedAppSource(
    httpAppSource(relay.origin, (u) => fetch(u)),
    config.onProgress,
  );
  const workers = Math.max(1, Math.min(4, (navigator.hardwareConcurrency || 2) - 1));
  const node = createRuntime(platform, {
    logicWorkers: workers,
    ...(config.maxModelBytes !== undefined && { maxModelBytes: config.maxModelBytes }),
  });
  const ready = node.refresh().then(({ failed }) => {
    for (const f of failed) console.warn(`[brume] app ${f.app} not loaded: ${f.error.message}`);
  });
  const identity = tabIdentity();
  // The context store lives in IndexedDB per node identity (tabs of one profile are two nodes).
  const context = identity.then(async (me) => {
    const store = createStore(`brume-context-${me.id}`, 'ops');
    const kv = {
      get: (k: string) => get(k, store),
      set: (k: string, v: unknown) => set(k, v, store),
      del: (k: string) => del(k, store),
      keys: async () => (await keys(store)).map(String),
      setMany: (entries: [string, unknown][]) => setMany(entries, store),
    };
    const ctx = new NodeContext(me, kv);
    await ctx.load();
    return ctx;
  });
  const fabric = Promise.all([identity, context]).then(([identity, ctx]) => {
    const ws = new URL('/ws', relay);
    ws.protocol = relay.protocol === 'https:' ? 'wss:' : 'ws:';
    return connectFabric({
      url: ws.toString(),
      socket: (u) => new WebSocket(u) as unknown as SocketLike,
      identity,
      role: config.role ?? 'dew',
      runtime: node,
      context: ctx,
      capabilities: () => tabCapabilities(node),
      links: peerLinks(relay, {
        log: (l) => console.warn(`[brume] ${l}`),
        ...(config.peerTimeoutMs && { callTimeoutMs: config.peerTimeoutMs }),
      }),
      maxConcurrency: workers,
      log: (l) => console.warn(`[brume] ${l}`),
    });
  });
  void fabric.then((f) => throttle(f, workers, config.contribute !== false));
  const appContext = (app: string): AppContext => ({
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
  });
  const invoke: BrumeApi['invoke'] = async (app, service, input, qos, opts) => {
    await ready;
    return (await fabric).call(app, service, input, qos, opts);
  };
  return {
    ready,
    node,
    fabric,
    invoke,
    call: async (app, service, input, qos) => (await invoke(app, service, input, qos)).value,
    schedule: async (app, service, qos) => {
      await ready;
      return (await fabric).schedule(app, service, qos);
    },
    describe: () => node.describe(),
    context: (app) => {
      // This tab keeps the app's context from now on (the relay sends it the app's changes).
      void context.then((c) => c.use(app));
      return appContext(app);
    },
  };
}

/**
 * Keeps a tab a good citizen: one request at a time for others while hidden, none on a low
 * battery that is not charging, none at all when the site or the person said so.
 */
function throttle(f: Fabric, workers: number, contribute: boolean): void {
  if (!contribute) f.pause('site');
  const visibility = () => f.setConcurrency(document.visibilityState === 'hidden' ? 1 : workers);
  document.addEventListener('visibilitychange', visibility);
  visibility();
  const nav = navigator as Navigator & {
    getBattery?: () => Promise<EventTarget & { level: number; charging: boolean }>;
  };
  void nav.getBattery?.().then((b) => {
    const check = () => f.pause('battery', b.level < 0.2 && !b.charging);
    b.addEventListener('levelchange', check);
    b.addEventListener('chargingchange', check);
    check();
  });
}
