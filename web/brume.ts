import { createStore, del, get, keys, set, setMany } from 'idb-keyval';
import type { KV } from '../core/context/outbox';
import { jobsClient } from '../core/jobs-client';
import { createNode } from '../core/node/create';
import type { BrumeNode } from '../core/node/node';
import type { BrumeApi } from '../core/page-api';
import type { Role } from '../core/protocol';
import { relayClient } from '../core/relay-client';
import type { Platform, Runtime } from '../core/runtime';
import { httpAppSource } from '../core/sources';
import { type BrumeDebug, pageApi } from './api';
import { cachedAppSource, type DownloadProgress } from './cache';
import { tabCapabilities } from './capabilities';
import { tabIdentity } from './identity';
import { peerLinks } from './peers';
import { browserPlatform } from './platform';

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
  /** false: this tab runs models in its own worker instead of the one shared by same-origin tabs. */
  sharedModels?: boolean;
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
  if (q.get('sharedModels') === '0') config.sharedModels = false;
  return config;
}

/**
 * Boots this tab as a Brume node: its runtime (workers, cached apps) and its link to the fabric.
 * @example const { api } = startBrume(configFromUrl(location.search)); await api.ready;
 *          await api.call('digits', 'classify', { width, height, pixels }, { accuracy: 0.96 });
 */
export function startBrume(config: BrumeConfig = {}): { api: BrumeApi; debug: BrumeDebug } {
  const relay = new URL(config.relay ?? location.origin);
  const platform = browserPlatform(relay.origin, { sharedModels: config.sharedModels !== false });
  const fabric = assembleTab(config, relay, platform);
  let runtime: Runtime | undefined;
  const ready = fabric.then(async (n) => {
    const { failed } = await n.runtime.refresh();
    for (const f of failed) console.warn(`[brume] app ${f.app} not loaded: ${f.error.message}`);
    runtime = n.runtime;
  });
  // window.brume (web/api.ts), and the parts behind it for tests on window.brumeDebug.
  return {
    api: pageApi({
      ready,
      fabric,
      jobs: jobsClient(relayClient({ base: relay.origin, fetch: (u, i) => fetch(u, i) })),
    }),
    debug: {
      get runtime(): Runtime {
        if (!runtime)
          throw new Error('brumeDebug.runtime is there once window.brume.ready resolves');
        return runtime;
      },
      fabric,
      models: platform.models,
    },
  };
}

/** This tab's node: its key, its context in IndexedDB, its runtime and its links. */
async function assembleTab(
  config: BrumeConfig,
  relay: URL,
  platform: Platform,
): Promise<BrumeNode> {
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
 * battery that is not charging, none at all when the site or the person said so. A tab hidden,
 * paused or unloading hands the sessions it serves to other nodes (PROTOCOL.md §5.9).
 */
function throttle(f: BrumeNode, workers: number, contribute: boolean): void {
  if (!contribute) f.pause('site');
  const visibility = () => {
    const hidden = document.visibilityState === 'hidden';
    f.setConcurrency(hidden ? 1 : workers);
    f.leave('hidden', hidden);
  };
  document.addEventListener('visibilitychange', visibility);
  visibility();
  // Said before the socket closes, when the page goes: its callers' next frames go elsewhere
  // at once rather than after a failed call (a page kept in the back-forward cache comes back).
  addEventListener('pagehide', () => f.leave('unloading'));
  addEventListener('pageshow', () => f.leave('unloading', false));
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
