/**
 * A server node: the node code of a tab and of the relay's own cloud node (createNode, Logics in
 * worker threads, Models on onnxruntime-node), in a process of its own on any machine, reaching
 * the relay over a WebSocket like a tab. Its identity and the app files it fetched are kept in
 * its data directory, so a restart keeps its node id and fetches nothing it already has. It has
 * no WebRTC: every call reaches it through the relay (PROTOCOL.md §5.1).
 * @example const s = await startServerNode({ relay: 'http://127.0.0.1:8787', role: 'fog',
 *            dataDir: '.brume-node', threads: 2, concurrency: 8, log: console.log });
 *          console.log(s.identity.publicKey); await s.whenJoined(); … await s.drain();
 */
import { join } from 'node:path';
import { WebSocket } from 'ws';
import { memoryKV } from '../core/context/outbox';
import { InputError, NotFoundError } from '../core/errors';
import type { Identity } from '../core/identity';
import { createNode } from '../core/node/create';
import type { BrumeNode } from '../core/node/node';
import { frameLimits } from '../core/protocol';
import type { AppSource } from '../core/runtime';
import { httpAppSource } from '../core/sources';
import { type LogicCaps, poolOptions } from './cloud-node';
import { diskCachedSource } from './disk-source';
import { type ProviderProbe, probeProviders, serverCapabilities } from './node-caps';
import { fileIdentity } from './node-key';
import { nodePlatform } from './platform';

export interface ServerNodeOptions {
  /** The relay's HTTP address, e.g. http://127.0.0.1:8787; its node socket is `<relay>/ws`. */
  relay: string;
  role: 'cloud' | 'fog';
  /** Holds the identity (node-key.json) and the app files (blobs/). */
  dataDir: string;
  /** onnxruntime-node threads per model session, and Logic worker threads per service. */
  threads: number;
  /** Calls it runs at once for others. */
  concurrency: number;
  /** Calls from others that wait for a free slot; past this they are refused. Default 64. */
  maxQueued?: number;
  /** Only these apps: the only ones it lists, serves and loads at start. Default: every app. */
  apps?: string[];
  /** Host caps on Logics, whatever their manifests ask. */
  caps?: LogicCaps;
  /** Reconnection backoff (jittered ±25 %); default 250 ms doubling to 10 s. */
  backoff?: { initialMs: number; maxMs: number };
  log: (line: string) => void;
}

export interface ServerNode {
  node: BrumeNode;
  identity: Identity;
  /** The execution providers onnxruntime-node listed, and which loaded here. */
  providers: ProviderProbe[];
  /** Stops taking calls, lets those in flight or waiting finish, then leaves the relay. */
  drain(timeoutMs?: number): Promise<{ finished: boolean }>;
  close(): void;
}

/** The relay's node socket (ws:, wss:) from its HTTP address. */
export function socketUrl(relay: string): string {
  let url: URL;
  try {
    url = new URL(relay);
  } catch {
    throw new InputError(
      `--relay must be the relay's address like http://127.0.0.1:8787, got "${relay}"`,
    );
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new InputError(`--relay must be an http: or https: address, got "${url.protocol}"`);
  }
  return `${url.protocol === 'https:' ? 'wss' : 'ws'}://${url.host}/ws`;
}

/** Shows only `apps` of `inner`: the others are not listed and not found. */
function onlyApps(inner: AppSource, apps: string[] | undefined): AppSource {
  if (!apps) return inner;
  const allowed = new Set(apps);
  const only = (app: string) => {
    if (!allowed.has(app)) throw new NotFoundError(`this node serves only ${apps.join(', ')}`);
    return app;
  };
  return {
    list: async () => (await inner.list()).filter((a) => allowed.has(a.name)),
    manifest: async (app, version) => inner.manifest(only(app), version),
    versions: async (app) => inner.versions(only(app)),
    blob: (sha256, onProgress) => inner.blob(sha256, onProgress),
    ...(inner.forget && { forget: inner.forget }),
  };
}

export async function startServerNode(o: ServerNodeOptions): Promise<ServerNode> {
  const url = socketUrl(o.relay);
  const base = new URL(o.relay).origin;
  const identity = await fileIdentity(o.dataDir);
  const providers = await probeProviders();
  const disk = diskCachedSource(httpAppSource(base, fetch), join(o.dataDir, 'blobs'), o.log);
  const caps = o.caps ?? {};
  const source = onlyApps(disk, o.apps);
  await reachable(source, o.backoff ?? { initialMs: 250, maxMs: 10_000 }, o.log);
  const node = await createNode({
    platform: nodePlatform(source, {
      threads: o.threads,
      ...(caps.heapMiB && { logicHeapMiB: caps.heapMiB }),
    }),
    identity,
    role: o.role,
    url,
    // A frame is at most 16 MiB (PROTOCOL.md §2): a larger message closes the socket.
    socket: (u) => new WebSocket(u, { maxPayload: frameLimits.maxBytes }),
    // Its Logics' context: a replica in memory, caught up from the relay's store at each join.
    kv: memoryKV(),
    runtime: {
      ...poolOptions(o.threads, caps),
      ...(caps.timeoutMs && { logicTimeoutMs: caps.timeoutMs }),
      ...(caps.memoryMiB && { logicMemoryMiB: caps.memoryMiB }),
    },
    // The app list before joining, so its first heartbeat reports what it serves.
    refresh: true,
    maxConcurrency: o.concurrency,
    maxQueued: o.maxQueued ?? 64,
    capabilities: serverCapabilities(o.threads, providers),
    ...(o.backoff && { backoff: o.backoff }),
    log: o.log,
  });
  node.onStatus((s) => o.log(`relay link: ${s}`));
  node.runtime.scaleLog.listen((e) => o.log(`workers of ${e.service}: ${e.from} → ${e.to}`));
  // Named apps are loaded at start (from disk when kept there): the first call does not wait.
  void (async () => {
    for (const app of o.apps ?? []) {
      await node.runtime.warm(app).then(
        () => o.log(`app ${app} loaded`),
        (e: unknown) => o.log(`app ${app} not loaded: ${(e as Error).message}`),
      );
    }
  })();
  return {
    node,
    identity,
    providers,
    drain: (timeoutMs = 60_000) => drain(node, timeoutMs),
    close() {
      node.close();
      node.runtime.close();
    },
  };
}

/**
 * Waits until the relay answers its app list (a node started before its relay, or while it
 * restarts, waits for it), retrying with the same jittered backoff as the socket.
 */
async function reachable(
  source: AppSource,
  backoff: { initialMs: number; maxMs: number },
  log: (line: string) => void,
): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    try {
      await source.list();
      return;
    } catch (e) {
      const delay =
        Math.min(backoff.maxMs, backoff.initialMs * 2 ** attempt) * (0.75 + Math.random() / 2);
      log(`relay not reachable (${(e as Error).message}); again in ${Math.round(delay)} ms`);
      await new Promise((r) => setTimeout(r, delay));
    }
  }
}

/**
 * Paused first (the relay hears of it at once and places no more calls here; one that crosses
 * that heartbeat is refused and placed elsewhere), then waits until nothing runs or waits.
 */
async function drain(node: BrumeNode, timeoutMs: number): Promise<{ finished: boolean }> {
  node.pause('draining');
  const until = performance.now() + timeoutMs;
  // Serving has no "idle" event; its counts change only as calls end, so a short poll suffices.
  while (node.busy + node.waiting > 0 && performance.now() < until) {
    await new Promise((r) => setTimeout(r, 25));
  }
  const finished = node.busy + node.waiting === 0;
  node.close();
  node.runtime.close();
  return { finished };
}
