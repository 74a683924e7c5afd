// A real node for unit tests: createNode on the Node platform, joined to a test relay over a
// real `ws` socket, as the cloud node is. Tests name only what they change.
import { WebSocket } from 'ws';
import { type Identity, loadOrCreateIdentity, memoryKeyStore } from '../core/identity';
import { createNode, type NodeOptions } from '../core/node/create';
import type { BrumeNode } from '../core/node/node';
import type { Capabilities } from '../core/protocol';
import { httpAppSource } from '../core/sources';
import { nodePlatform } from '../relay/platform';
import { until } from './until';

/** Capabilities a test node reports. */
export const testCapabilities = async (): Promise<Capabilities> => ({
  backends: [{ name: 'cpu', detail: 'test' }],
  cores: 1,
});

/**
 * A dew joining the relay whose node socket is `ws` (ws://host:port/ws), getting its apps from
 * that relay over HTTP unless `over.platform` says otherwise.
 * @example const node = await testNode(server.ws, identity, { maxQueued: 1 }); await node.whenJoined();
 */
export function testNode(
  ws: string,
  identity: Identity,
  over: Partial<NodeOptions> = {},
): Promise<BrumeNode> {
  const http = ws.replace(/^ws/, 'http').replace(/\/ws$/, '');
  return createNode({
    platform: nodePlatform(httpAppSource(http, fetch)),
    identity,
    role: 'dew',
    url: ws,
    socket: (u) => new WebSocket(u),
    capabilities: testCapabilities,
    ...over,
  });
}

/**
 * Dews named by `specs` (each with `slots` Logic workers and as much concurrency), joined to the
 * relay whose node socket is `ws`; resolves once `hub` sees every one of them holding `app`.
 * @example const nodes = await joinHolding(server.ws, server.relay.hub, 'chain', [{ name: 'a', slots: 2 }]);
 */
export async function joinHolding(
  ws: string,
  hub: { nodes(): { id: string; apps: string[] }[] },
  app: string,
  specs: { name: string; slots: number; maxQueued?: number }[],
): Promise<BrumeNode[]> {
  const nodes: BrumeNode[] = [];
  for (const { name, slots, maxQueued } of specs) {
    const identity = await loadOrCreateIdentity(memoryKeyStore(), name);
    const node = await testNode(ws, identity, {
      refresh: true,
      maxConcurrency: slots,
      ...(maxQueued !== undefined && { maxQueued }),
      runtime: { logicWorkers: slots },
    });
    nodes.push(node);
    await node.whenJoined();
  }
  const ids = new Set(nodes.map((n) => n.runtime.id));
  await until(
    () => hub.nodes().filter((n) => ids.has(n.id) && n.apps.includes(app)).length === ids.size,
    `${ids.size} nodes holding ${app}`,
  );
  return nodes;
}

/** Closes nodes made by `testNode` or `joinHolding`, and their runtimes. */
export function closeNodes(nodes: BrumeNode[]): void {
  for (const n of nodes) {
    n.close();
    n.runtime.close();
  }
}
