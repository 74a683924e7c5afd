/**
 * The relay's own executor: a `cloud` node in this process, joined to the hub like any other node
 * (its own key, the signed join, heartbeats, the relay's call limits and timeouts) but over a
 * link within the process (relay/local-link.ts): frames pass as objects, with no socket and no
 * MessagePack between the two. It runs Logics in worker threads and Models on onnxruntime-node.
 * HTTP callers get answers with no tab open, and tabs can offload to it. Its Logics use the
 * context store like a tab's.
 * @example const cloud = await startCloudNode(relay.url, hub.attach, (key) => ownKeys.add(key), log);
 */
import os from 'node:os';
import { memoryKV } from '../core/context/outbox';
import { loadOrCreateIdentity, memoryKeyStore } from '../core/identity';
import { createNode } from '../core/node/create';
import type { BrumeNode } from '../core/node/node';
import { httpAppSource } from '../core/sources';
import { type HubEnd, localLink } from './local-link';
import { nodePlatform } from './platform';

/** What a Logic may take on the cloud node, whatever its manifest asks: it runs in the relay. */
export interface LogicCaps {
  /** Wall-clock budget of one step; default 10 000 ms. */
  timeoutMs?: number;
  /** Guest memory; default 256 MiB. */
  memoryMiB?: number;
  /** JS heap of each Logic worker thread; default 64 MiB. */
  heapMiB?: number;
  /** Workers per Logic service at most, whatever a manifest's `scale.max`; default the cores. */
  maxWorkers?: number;
  /** Overrides every manifest's `scale.idleMs` (ms). */
  workerIdleMs?: number;
  /** Bench only: each Logic call's first step holds its worker this long (Atomics.wait). */
  holdMs?: number;
}

/**
 * The runtime options for a Node host's Logic pools: today's `threads` workers per service unless
 * a manifest's `scale.max` asks more, within `maxWorkers` (default the cores) and half the
 * machine's memory over each service's guest memory.
 */
export function poolOptions(threads: number, caps: LogicCaps) {
  return {
    logicWorkers: threads,
    maxWorkers: caps.maxWorkers ?? Math.max(threads, os.availableParallelism()),
    workersMemoryMiB: Math.floor(os.totalmem() / 2 ** 21),
    ...(caps.workerIdleMs !== undefined && { workerIdleMs: caps.workerIdleMs }),
    ...(caps.holdMs && { holdMs: caps.holdMs }),
  };
}

export async function startCloudNode(
  relayUrl: string,
  /** Hands the hub its end of each new link (the hub's `attach`). */
  attach: (end: HubEnd) => void,
  vouch: (publicKey: string) => void,
  log: (line: string) => void,
  caps: LogicCaps = {},
): Promise<BrumeNode> {
  const identity = await loadOrCreateIdentity(memoryKeyStore(), 'cloud');
  vouch(identity.publicKey);
  const threads = Math.max(1, Math.min(4, os.availableParallelism() - 1));
  const source = httpAppSource(relayUrl, fetch);
  const node = await createNode({
    platform: nodePlatform(source, {
      threads,
      ...(caps.heapMiB && { logicHeapMiB: caps.heapMiB }),
    }),
    identity,
    role: 'cloud',
    url: `${relayUrl} (in process)`,
    // Each (re)connection is a fresh link: the hub greets it at once, and the node's handlers are
    // set before the challenge's microtask runs.
    socket: () => {
      const { hub, node } = localLink();
      attach(hub);
      return node;
    },
    // Its Logics' context: a replica in memory, caught up from the relay's store at each join.
    kv: memoryKV(),
    runtime: {
      ...poolOptions(threads, caps),
      ...(caps.timeoutMs && { logicTimeoutMs: caps.timeoutMs }),
      ...(caps.memoryMiB && { logicMemoryMiB: caps.memoryMiB }),
    },
    refresh: true,
    // A few calls per Logic worker: while one call's Model runs on onnxruntime's threads, the
    // worker frames the next one's input instead of waiting (steps queue for a free worker).
    maxConcurrency: 4 * threads,
    // HTTP callers all land here when no tab is open: a deeper queue than a tab's before it
    // refuses (the relay bounds the calls it forwards anyway).
    maxQueued: 64,
    capabilities: async () => ({
      backends: [{ name: 'cpu', detail: `onnxruntime-node, ${threads} threads` }],
      cores: os.availableParallelism(),
      memoryGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
      agent: `node ${process.version}`,
    }),
    log,
  });
  await node.whenJoined();
  return node;
}
