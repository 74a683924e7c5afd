import { createStore, del, get, keys, set, setMany } from 'idb-keyval';
import { NodeContext } from '../core/context/client';
import { connectFabric, type Fabric, type SocketLike } from '../core/fabric';
import type { BrumeApi } from '../core/page-api';
import type { Role } from '../core/protocol';
import { createRuntime } from '../core/runtime';
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
 * @example const { api } = startBrume(configFromUrl(location.search)); await api.ready;
 *          await api.call('digits', 'classify', { width, height, pixels }, { accuracy: 0.96 });
 */
export function startBrume(config: BrumeConfig = {}): { api: BrumeApi; debug: BrumeDebug } {
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
  // window.brume (web/api.ts), and the parts behind it for tests on window.brumeDebug.
  return {
    api: pageApi({ ready, runtime: node, fabric, context }),
    debug: { runtime: node, fabric },
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
