import { createStore, del, get, keys, set, setMany } from 'idb-keyval';
import type { ContextRead, PutOptions } from '../core/context/client';
import type { KV } from '../core/context/outbox';
import type { Scope } from '../core/context/replica';
import { createNode } from '../core/node/create';
import type { BrumeNode } from '../core/node/node';
import type { FabricCallResult } from '../core/node/router';
import type { Role } from '../core/protocol';
import type { CallOptions, NodeDescription, Runtime } from '../core/runtime';
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
  /** The node's runtime (once `ready`) and the node itself, for the page, tests and benchmarks. */
  readonly node: Runtime;
  fabric: Promise<BrumeNode>;
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
  const fabric = assembleTab(config);
  let runtime: Runtime | undefined;
  const ready = fabric.then(async (n) => {
    runtime = n.runtime;
    const { failed } = await n.runtime.refresh();
    for (const f of failed) console.warn(`[brume] app ${f.app} not loaded: ${f.error.message}`);
  });
  const context = fabric.then((n) => n.context!);
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
    get node(): Runtime {
      if (!runtime) throw new Error('window.brume.node is there once window.brume.ready resolves');
      return runtime;
    },
    fabric,
    invoke,
    call: async (app, service, input, qos) => (await invoke(app, service, input, qos)).value,
    schedule: async (app, service, qos) => {
      await ready;
      return (await fabric).schedule(app, service, qos);
    },
    describe: async () => (await fabric).runtime.describe(),
    context: (app) => {
      // This tab keeps the app's context from now on (the relay sends it the app's changes).
      void context.then((c) => c.use(app));
      return appContext(app);
    },
  };
}

/** This tab's node: its key, its context in IndexedDB, its runtime and its links. */
async function assembleTab(config: BrumeConfig): Promise<BrumeNode> {
  const relay = new URL(config.relay ?? location.origin);
  const platform = browserPlatform(relay.origin);
  platform.source = cachedAppSource(
    httpAppSource(relay.origin, (u) => fetch(u)),
    config.onProgress,
  );
  const workers = Math.max(1, Math.min(4, (navigator.hardwareConcurrency || 2) - 1));
  const identity = await tabIdentity();
  const ws = new URL('/ws', relay);
  ws.protocol = relay.protocol === 'https:' ? 'wss:' : 'ws:';
  const log = (l: string) => console.warn(`[brume] ${l}`);
  const node = await createNode({
    platform,
    identity,
    role: config.role ?? 'dew',
    url: ws.toString(),
    socket: (u) => new WebSocket(u),
    capabilities: tabCapabilities,
    // The context store lives in IndexedDB per node identity (tabs of one profile are two nodes).
    kv: idbKV(`brume-context-${identity.id}`),
    links: peerLinks(relay, {
      log,
      ...(config.peerTimeoutMs && { callTimeoutMs: config.peerTimeoutMs }),
    }),
    runtime: {
      logicWorkers: workers,
      ...(config.maxModelBytes !== undefined && { maxModelBytes: config.maxModelBytes }),
    },
    maxConcurrency: workers,
    log,
  });
  throttle(node, workers, config.contribute !== false);
  return node;
}

function idbKV(name: string): KV {
  const store = createStore(name, 'ops');
  return {
    get: (k) => get(k, store),
    set: (k, v) => set(k, v, store),
    del: (k) => del(k, store),
    keys: async () => (await keys(store)).map(String),
    setMany: (entries) => setMany(entries, store),
  };
}

/**
 * Keeps a tab a good citizen: one request at a time for others while hidden, none on a low
 * battery that is not charging, none at all when the site or the person said so.
 */
function throttle(f: BrumeNode, workers: number, contribute: boolean): void {
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
