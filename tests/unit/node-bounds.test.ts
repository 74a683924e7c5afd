// A node's own bounds: calls it serves for others (a few at once, a bounded queue, then refused
// with E_UNAVAILABLE naming the limit), and the relay placing a refused call on another node.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadOrCreateIdentity, memoryKeyStore } from '../../core/identity';
import { encodeFrame, type ToNode } from '../../core/protocol';
import type { Relay } from '../../relay/server';
import { hostileApp } from '../apps';
import { answerCall, joinRaw, onCalls, type RawNode } from '../raw-node';
import { inProcessRelay } from '../relay-process';
import { testNode } from '../test-node';

let relay: Relay;
let ws: string;
let server: Awaited<ReturnType<typeof inProcessRelay>>;
beforeAll(async () => {
  server = await inProcessRelay({ apps: [await hostileApp()] });
  relay = server.relay;
  ws = server.ws;
});
afterAll(() => server.close());

const call = (input: unknown) =>
  fetch(`${relay.url}/api/call/hostile/echo`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ input }),
  });

/** Answers each call with `answer(call)`: a result value, or an error frame's `error`. */
function answer(
  node: RawNode,
  reply: (
    f: Extract<ToNode, { t: 'call' }>,
  ) => Promise<{ value: unknown } | { error: { code: string; message: string } }>,
) {
  onCalls(node, (f) => {
    void reply(f).then((r) => {
      if ('error' in r) node.ws.send(encodeFrame({ t: 'error', id: f.id, error: r.error }));
      else answerCall(node, f, r.value, 1);
    });
  });
}

describe('calls a node serves for others', () => {
  it('runs `concurrency` at once, queues a bounded number, refuses the rest naming the limit', async () => {
    const identity = await loadOrCreateIdentity(memoryKeyStore(), 'server');
    const fabric = await testNode(ws, identity, { maxConcurrency: 1, maxQueued: 1 });
    const runtime = fabric.runtime;
    try {
      await fabric.whenJoined();
      const serve = (input: string) =>
        fabric.serveCall({ app: 'hostile', service: 'echo', rpc: 'echo', input, qos: {} });
      // Admission is decided when each call arrives, not by how fast the first one runs.
      const first = serve('first');
      const second = serve('second');
      const third = serve('third');
      expect([fabric.busy, fabric.waiting]).toEqual([1, 1]);
      await expect(third).rejects.toMatchObject({
        code: 'E_UNAVAILABLE',
        message: 'this node is serving 1 calls with 1 waiting (limit 1 at once, 1 waiting)',
      });
      expect((await first).value).toBe('first');
      expect((await second).value).toBe('second');
      expect([fabric.busy, fabric.waiting]).toEqual([0, 0]);
      // Room again once they are done.
      expect((await serve('fourth')).value).toBe('fourth');
    } finally {
      fabric.close();
      runtime.close();
    }
  });
});

describe('the relay and a node that refuses a call as busy', () => {
  it('places the call again on another node', async () => {
    const { node: busy } = await joinRaw(ws);
    let other: RawNode | undefined;
    let otherId = '';
    answer(busy, async () => {
      // A second node joins only now, so the first attempt surely went to the busy one.
      const j = await joinRaw(ws);
      other = j.node;
      otherId = j.welcome.nodeId;
      answer(other, async (f) => ({ value: `echo ${f.input}` }));
      return { error: { code: 'E_UNAVAILABLE', message: 'this node is serving 1 calls' } };
    });
    try {
      const res = await call('hi');
      expect(res.status).toBe(200);
      expect(await res.json()).toMatchObject({ value: 'echo hi', node: otherId });
    } finally {
      busy.ws.close();
      other?.ws.close();
      await Promise.all([busy.closed, other?.closed]);
    }
  });

  it("answers the node's refusal when no other node can take it", async () => {
    const { node: busy } = await joinRaw(ws);
    const error = { code: 'E_UNAVAILABLE', message: 'this node is serving 4 calls (limit 4)' };
    answer(busy, async () => ({ error }));
    try {
      const res = await call('hi');
      expect(res.status).toBe(503);
      expect((await res.json()).error).toEqual(error);
    } finally {
      busy.ws.close();
      await busy.closed;
    }
  });
});
