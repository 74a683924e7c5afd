/**
 * Assembles a Brume node — the one place that does: its runtime (whose Logics' remote calls and
 * context operations go through this node), its context store, its link to the relay and its
 * direct channels. Used by the tab (web/brume.ts), the embed iframe (through it), the relay's
 * cloud node (relay/cloud-node.ts) and the tests.
 * @example const node = await createNode({ platform, identity, role: 'dew', kv: memoryKV(),
 *            url: 'ws://127.0.0.1:8787/ws', socket: (u) => new WebSocket(u),
 *            capabilities: async () => ({ backends: [], cores: 1 }) });
 *          await node.whenJoined();
 *          const r = await node.call('digits', 'classify', input, { accuracy: 0.96 });
 */
import { NodeContext } from '../context/client';
import type { KV } from '../context/outbox';
import type { Identity } from '../identity';
import type { Capabilities, Role } from '../protocol';
import { createRuntime, type Platform, type Runtime, type RuntimeOptions } from '../runtime';
import type { PeerLinks, SocketLike } from './links';
import { BrumeNode } from './node';

export interface NodeOptions {
  platform: Platform;
  identity: Identity;
  role: Role;
  /** The relay's WebSocket endpoint, e.g. ws://127.0.0.1:8787/ws */
  url: string;
  /** Opens a socket: `(u) => new WebSocket(u)` with the browser's or `ws`'s WebSocket. */
  socket: (url: string) => SocketLike;
  /** What this node tells the relay about itself at join. */
  capabilities: (runtime: Runtime) => Promise<Capabilities>;
  /** Where its context store persists (loaded before it joins); without it or `context`, none. */
  kv?: KV;
  /** The clock of the context store built on `kv` (tests: a device clock that runs ahead). */
  now?: () => number;
  /** A context store that outlives this node (a test that reconnects the same replica). */
  context?: NodeContext;
  /** Direct channels to other nodes; without them every remote call goes through the relay. */
  links?: PeerLinks;
  /** The runtime's own options (workers, model and Logic limits); its id is the node's. */
  runtime?: Omit<RuntimeOptions, 'remote' | 'context'>;
  /** Fetch the app list before joining, so the first heartbeat reports the apps (cloud node). */
  refresh?: boolean;
  /** Requests this node runs at once for others; default 1. */
  maxConcurrency?: number;
  /** Requests from others that wait for a free slot; past this they are refused. Default 16. */
  maxQueued?: number;
  /** Time a request to the relay may take; default 60 000 ms. */
  requestTimeoutMs?: number;
  backoff?: { initialMs: number; maxMs: number };
  log?: (line: string) => void;
}

/** Builds a node and starts joining the relay; resolves once its context store is loaded. */
export async function createNode(options: NodeOptions): Promise<BrumeNode> {
  const { identity } = options;
  let context = options.context;
  if (!context && options.kv) {
    context = new NodeContext(identity, options.kv, options.now);
    await context.load();
  }
  const store = context;
  // Late-bound: the node that takes a Logic's remote calls is made from this runtime.
  let node: BrumeNode | undefined;
  const runtime = createRuntime(options.platform, {
    id: identity.id,
    role: options.role,
    ...options.runtime,
    remote: (app, service, rpc, input, qos, traceId) =>
      node!.logicCall(app, service, rpc, input, qos, traceId),
    ...(store && { context: (app, request) => store.serve(app, request) }),
  });
  if (options.refresh) await runtime.refresh();
  node = new BrumeNode({
    runtime,
    identity,
    role: options.role,
    url: options.url,
    socket: options.socket,
    capabilities: () => options.capabilities(runtime),
    context,
    links: options.links,
    maxConcurrency: options.maxConcurrency,
    maxQueued: options.maxQueued,
    requestTimeoutMs: options.requestTimeoutMs,
    backoff: options.backoff,
    log: options.log,
  });
  node.connect();
  return node;
}
