/**
 * The relay's own executor: a `cloud` node in this process, joined to the hub over a real socket
 * like any other node, running Logics in worker threads and Models on onnxruntime-node. HTTP
 * callers get answers with no tab open, and tabs can offload to it. Its Logics use the context
 * store like a tab's.
 * @example const cloud = await startCloudNode(relay.url, (key) => ownKeys.add(key));
 */
import os from 'node:os';
import { WebSocket } from 'ws';
import { memoryKV } from '../core/context/outbox';
import { loadOrCreateIdentity, memoryKeyStore } from '../core/identity';
import { createNode } from '../core/node/create';
import type { BrumeNode } from '../core/node/node';
import { httpAppSource } from '../core/sources';
import { nodePlatform } from './platform';

/** What a Logic may take on the cloud node, whatever its manifest asks: it runs in the relay. */
export interface LogicCaps {
  /** Wall-clock budget of one step; default 10 000 ms. */
  timeoutMs?: number;
  /** Guest memory; default 256 MiB. */
  memoryMiB?: number;
  /** JS heap of each Logic worker thread; default 64 MiB. */
  heapMiB?: number;
}

export async function startCloudNode(
  relayUrl: string,
  vouch: (publicKey: string) => void,
  log: (line: string) => void,
  caps: LogicCaps = {},
): Promise<BrumeNode> {
  const identity = await loadOrCreateIdentity(memoryKeyStore(), 'cloud');
  vouch(identity.publicKey);
  const threads = Math.max(1, Math.min(4, os.availableParallelism() - 1));
  const source = httpAppSource(relayUrl, fetch);
  const url = new URL('/ws', relayUrl);
  url.protocol = 'ws:';
  const node = await createNode({
    platform: nodePlatform(source, {
      threads,
      ...(caps.heapMiB && { logicHeapMiB: caps.heapMiB }),
    }),
    identity,
    role: 'cloud',
    url: url.toString(),
    socket: (u) => new WebSocket(u),
    // Its Logics' context: a replica in memory, caught up from the relay's store at each join.
    kv: memoryKV(),
    runtime: {
      logicWorkers: threads,
      ...(caps.timeoutMs && { logicTimeoutMs: caps.timeoutMs }),
      ...(caps.memoryMiB && { logicMemoryMiB: caps.memoryMiB }),
    },
    refresh: true,
    maxConcurrency: threads,
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
