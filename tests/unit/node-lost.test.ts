// A node whose relay socket is cut (as when its relay is killed) drops the calls that relay had
// queued on it: they never run, they hold no slot on its next connection, and the call that was
// running answers nobody — least of all the next relay, whose call ids are its own. A call that
// came another way (a data channel) stays queued and is served.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { loadOrCreateIdentity, memoryKeyStore } from '../../core/identity';
import type { BrumeNode } from '../../core/node/node';
import { hostileApp } from '../apps';
import { inProcessRelay } from '../relay-process';
import { closeNodes, testNode } from '../test-node';
import { until } from '../until';

type TestRelay = Awaited<ReturnType<typeof inProcessRelay>>;
let a: TestRelay;
let b: TestRelay;
beforeAll(async () => {
  const app = await hostileApp();
  a = await inProcessRelay({ apps: [app] });
  b = await inProcessRelay({ apps: [app] });
});
afterAll(async () => {
  await a?.close();
  await b?.close();
});

/** A call through `relay`'s HTTP API to the echo Logic, kept on `node`. */
async function httpCall(relay: TestRelay, node: string, rpc: string, input: unknown) {
  const res = await fetch(`${relay.relay.url}/api/call/hostile/echo`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ input, rpc, qos: { privacy: node } }),
  });
  return { status: res.status, body: (await res.json()) as { value?: unknown } };
}

/** Iterations of `spin` per millisecond on this node now: n doubles until one takes 300 ms. */
async function spinPerMs(node: BrumeNode): Promise<number> {
  const spin = async (n: number) => {
    const t0 = performance.now();
    await node.runtime.call('hostile', 'echo', { n }, {}, { rpc: 'spin' });
    return performance.now() - t0;
  };
  await spin(1); // the Logic loaded
  for (let n = 1_000_000; ; n *= 2) {
    const ms = await spin(n);
    if (ms >= 300 || n >= 2 ** 36) return n / ms;
  }
}

const holds = (relay: TestRelay, id: string) =>
  relay.relay.hub.nodes().some((n) => n.id === id && n.apps.includes('hostile'));

/**
 * Queues three calls from relay A and one from a peer behind a long spin on a node with
 * `maxConcurrency` slots and one Logic worker, cuts the node's socket to A and rejoins it to B.
 */
async function cutWhileQueued(name: string, maxConcurrency: number): Promise<void> {
  const identity = await loadOrCreateIdentity(memoryKeyStore(), name);
  // The node's socket goes where `target` says: relay A first, relay B after the cut.
  let target = a.ws;
  const sockets: WebSocket[] = [];
  const node = await testNode(a.ws, identity, {
    refresh: true,
    maxConcurrency,
    runtime: { logicWorkers: 1, maxWorkers: 1 },
    backoff: { initialMs: 50, maxMs: 200 },
    socket: () => {
      const ws = new WebSocket(target);
      sockets.push(ws);
      return ws;
    },
  });
  /** Calls this node holds now: running (in a worker or waiting for one), or waiting for a slot. */
  const held = () => node.busy + node.waiting;
  try {
    await node.whenJoined();
    await until(() => holds(a, node.nodeId), 'relay A to see the node holding hostile');
    // Long enough that it surely still runs when the socket is cut, whatever the load.
    const rate = await spinPerMs(node);
    const long = httpCall(a, node.nodeId, 'spin', { n: Math.round(rate * 5000) });
    await until(() => node.runtime.workers()['hostile/echo']?.busy === 1, 'the long spin to run');
    // Behind it: three calls from relay A and one from a peer (no relay socket).
    const queued = [1, 2, 3].map((i) => httpCall(a, node.nodeId, 'echo', `queued ${i}`));
    const peer = node.serveCall({
      app: 'hostile',
      service: 'echo',
      rpc: 'echo',
      input: 'from a peer',
      qos: {},
    });
    await until(() => held() === 5, 'four calls behind the long spin');

    // Cut, with no close frame (a relay killed with SIGKILL); the node rejoins through B.
    target = b.ws;
    sockets.at(-1)!.terminate();
    // Relay A's calls leave at once; the long spin runs on, and the peer's call stays.
    await until(() => held() === 2, "relay A's waiting calls to be dropped");
    for (const r of [await long, ...(await Promise.all(queued))]) expect(r.status).not.toBe(200);
    await until(() => node.status === 'joined' && holds(b, node.nodeId), 'the node to join B');

    // B's call waits only for what really runs: the long spin, then the peer's call. Its id is
    // B's own (the long spin's on A may be the same number): only its own answer settles it.
    const fresh = await httpCall(b, node.nodeId, 'echo', 'after the cut');
    expect(fresh).toEqual({
      status: 200,
      body: expect.objectContaining({ value: 'after the cut' }),
    });
    expect((await peer).value).toBe('from a peer');
    await until(() => held() === 0, 'the node to be idle');
    // Ran: the long spin, the peer's call and B's. None of the three A had queued.
    expect(node.served).toBe(3);
  } finally {
    closeNodes([node]);
  }
}

describe('a node that loses its relay connection', () => {
  it('never runs the calls waiting for a slot over it, and serves the next relay at once', async () => {
    await cutWhileQueued('lost-slots', 1);
  }, 120_000);

  it('never runs the calls waiting for a Logic worker over it either', async () => {
    // Slots for all five: the four behind the spin wait in the Logic pool's queue, not for a slot.
    await cutWhileQueued('lost-workers', 8);
  }, 120_000);
});
