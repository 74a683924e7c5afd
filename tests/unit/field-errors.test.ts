// Errors name the field on every surface (HTTP bodies, frames, the client API), and a node's QoS
// miss keeps `constraint` and `best` through the relay to an HTTP caller and to a node caller.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BrumeError, fromWire, QosError } from '../../core/errors';
import { loadOrCreateIdentity, memoryKeyStore } from '../../core/identity';
import { decodeFrame, encodeFrame, parseQos, type ToNode } from '../../core/protocol';
import type { Relay } from '../../relay/server';
import { hostileApp } from '../apps';
import { joinRaw, type RawNode } from '../raw-node';
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

const post = (path: string, body: unknown) =>
  fetch(`${relay.url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
const put = (path: string, body: unknown) =>
  fetch(`${relay.url}${path}`, {
    method: 'PUT',
    headers: {
      'content-type': 'application/json',
      authorization: `Bearer ${relay.admin.token}`,
    },
    body: JSON.stringify(body),
  });
const refusal = async (res: Response) => {
  expect(res.status).toBe(400);
  return ((await res.json()) as { error: { code: string; message: string } }).error;
};

/** Answers every call it is sent with `error`. */
function refuseWith(node: RawNode, error: Extract<ToNode, { t: 'error' }>['error']) {
  node.ws.on('message', (data) => {
    const f = decodeFrame(new Uint8Array(data as Buffer), 'toNode');
    if (f.t === 'call') node.ws.send(encodeFrame({ t: 'error', id: f.id, error }));
  });
}

describe('errors name the field', () => {
  it('in an HTTP call body: qos, input, rpc', async () => {
    const qos = await refusal(
      await post('/api/call/hostile/echo', { input: 1, qos: { accuracy: 1.5 } }),
    );
    expect(qos).toMatchObject({ code: 'E_INPUT' });
    expect(qos.message).toContain('qos.accuracy must be at most 1 (got 1.5)');
    const latency = await refusal(
      await post('/api/call/hostile/echo', { input: 1, qos: { latencyMs: -1 } }),
    );
    expect(latency.message).toContain('qos.latencyMs must be more than 0 (got -1)');
    const typo = await refusal(await post('/api/call/hostile/echo', { input: 1, qos: { lat: 5 } }));
    expect(typo.message).toContain('qos.lat is not a known field');
    const missing = await refusal(await post('/api/call/hostile/echo', { qos: {} }));
    expect(missing.message).toBe(
      'input is required (send { input, qos?, rpc? } as JSON or MessagePack)',
    );
    const rpc = await refusal(await post('/api/call/hostile/echo', { input: 1, rpc: 5 }));
    expect(rpc.message).toContain('rpc must be a string (got number 5)');
    const notAnObject = await refusal(await post('/api/call/hostile/echo', 5));
    expect(notAnObject.message).toContain('the body must be an object (got number 5)');
  });

  it('in a schedule body and a context write', async () => {
    const sched = await refusal(await post('/api/schedule/hostile/echo', { qos: { privacy: '' } }));
    expect(sched.message).toContain('qos.privacy must have at least 1 characters');
    const ttl = await refusal(await put('/api/context/hostile/k', { value: 1, ttlMs: -5 }));
    expect(ttl.message).toContain('ttlMs must be more than 0 (got -5)');
    const value = await refusal(await put('/api/context/hostile/k', { ttlMs: 5 }));
    expect(value.message).toBe(
      'value is required (send { value, ttlMs?, local? } as JSON or MessagePack)',
    );
    const ok = await put('/api/context/hostile/k', { value: null, ttlMs: 5000 });
    expect(ok.status).toBe(200);
  });

  it('in a frame a node sends, and in the client API', async () => {
    const { node } = await joinRaw(ws);
    node.ws.send(
      encodeFrame({
        t: 'schedule',
        id: 1,
        app: 'hostile',
        service: 'echo',
        qos: { accuracy: 1.5 },
      } as never),
    );
    const closed = await node.closed;
    expect(closed.reason).toContain('invalid "schedule" frame: qos.accuracy must be at most 1');
    expect(() => parseQos({ accuracy: 2 })).toThrow('qos.accuracy must be at most 1 (got 2)');
  });

  it('refuses a bad qos at a fabric node before it reaches the relay, which keeps the node', async () => {
    const identity = await loadOrCreateIdentity(memoryKeyStore(), 'caller');
    const fabric = await testNode(ws, identity);
    try {
      await fabric.whenJoined();
      const bad = { accuracy: 1.5, privacy: 'a'.repeat(32) };
      const e = await fabric.call('hostile', 'echo', 1, bad).catch((x: unknown) => x);
      expect(e).toBeInstanceOf(BrumeError);
      expect(e).toMatchObject({ code: 'E_INPUT' });
      expect((e as Error).message).toContain('qos.accuracy must be at most 1 (got 1.5)');
      const s = await fabric.schedule('hostile', 'echo', { latencyMs: 0 }).catch((x) => x);
      expect((s as Error).message).toContain('qos.latencyMs must be more than 0 (got 0)');
      // Still joined: the relay never saw a frame it had to refuse.
      expect(fabric.status).toBe('joined');
    } finally {
      fabric.close();
    }
  });
});

describe("a node's QoS miss keeps constraint and best through the relay", () => {
  const miss = {
    code: 'E_QOS',
    message: 'no variant here reaches accuracy 0.99 (best 0.9)',
    constraint: 'accuracy',
    best: 0.9,
  };

  it('to an HTTP caller', async () => {
    const { node } = await joinRaw(ws);
    refuseWith(node, miss);
    try {
      const res = await post('/api/call/hostile/echo', { input: 1 });
      expect(res.status).toBe(422);
      expect((await res.json()).error).toEqual(miss);
    } finally {
      node.ws.close();
      await node.closed;
    }
  });

  it('to a node caller', async () => {
    const { node: executor, welcome } = await joinRaw(ws);
    refuseWith(executor, miss);
    const { node: caller } = await joinRaw(ws);
    try {
      caller.send({
        t: 'call',
        id: 7,
        to: welcome.nodeId,
        app: 'hostile',
        service: 'echo',
        rpc: 'echo',
        input: 1,
        qos: {},
      });
      const answer = await caller.next('error');
      expect(answer).toEqual({ t: 'error', id: 7, error: miss });
      const e = fromWire(answer.error);
      expect(e).toBeInstanceOf(QosError);
      expect(e).toMatchObject({ constraint: 'accuracy', best: 0.9 });
    } finally {
      executor.ws.close();
      caller.ws.close();
      await Promise.all([executor.closed, caller.closed]);
    }
  });
});
