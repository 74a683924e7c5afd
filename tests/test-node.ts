// A real node for unit tests: createNode on the Node platform, joined to a test relay over a
// real `ws` socket, as the cloud node is. Tests name only what they change.
import { WebSocket } from 'ws';
import type { Identity } from '../core/identity';
import { createNode, type NodeOptions } from '../core/node/create';
import type { BrumeNode } from '../core/node/node';
import type { Capabilities } from '../core/protocol';
import { httpAppSource } from '../core/sources';
import { nodePlatform } from '../relay/platform';

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
