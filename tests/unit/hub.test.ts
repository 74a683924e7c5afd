import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decode, encode } from '../../core/codec';
import { loadOrCreateIdentity, memoryKeyStore, nodeIdOf } from '../../core/identity';
import { decodeFrame, encodeFrame } from '../../core/protocol';
import type { Relay } from '../../relay/server';
import { contextApp, hostileApp } from '../apps';
import { answerCall, joinRaw, onCalls, type RawNode } from '../raw-node';
import { inProcessRelay } from '../relay-process';

let relay: Relay;
let ws: string;

let server: Awaited<ReturnType<typeof inProcessRelay>>;
beforeAll(async () => {
  // HTTP context writes need a deployed app: `fan`.
  server = await inProcessRelay({
    heartbeatMs: 100,
    apps: [await hostileApp(), await contextApp('fan')],
  });
  relay = server.relay;
  ws = server.ws;
});
afterAll(() => server.close());

/** Answers every call with `answer(input)` after `delayMs`; counts the calls it got. */
function serve(node: RawNode, answer: (input: unknown) => unknown, delayMs = 0) {
  const got: number[] = [];
  onCalls(node, (f) => {
    got.push(f.id);
    setTimeout(() => answerCall(node, f, answer(f.input), delayMs), delayMs);
  });
  return got;
}

const call = (body: unknown, type = 'application/json') =>
  fetch(`${relay.url}/api/call/hostile/echo`, {
    method: 'POST',
    headers: { 'content-type': type },
    body: type === 'application/json' ? JSON.stringify(body) : Buffer.from(encode(body)),
  });

describe('hub', () => {
  it('evicts a node that stops answering and runs its call elsewhere, once', async () => {
    const { node: hung } = await joinRaw(ws, 'dew', { silent: true });
    const hungCalls = serve(hung, () => 'from the hung node', 60_000);
    // It answers pings until the call reaches it, then hangs: on a slow machine the call may take
    // longer than three heartbeats to be placed, and the node must still be there to get it.
    hung.ws.on('message', (data) => {
      const f = decodeFrame(new Uint8Array(data as Buffer), 'toNode');
      if (f.t === 'ping' && hungCalls.length === 0) {
        hung.ws.send(encodeFrame({ t: 'pong', ts: f.ts }));
      }
    });
    const pending = call({ input: 'hi' });
    // Only the hung node is there: the call goes to it, then it misses three heartbeats.
    await expect.poll(() => hungCalls.length).toBe(1);
    const { node: good, welcome } = await joinRaw(ws);
    const goodCalls = serve(good, (input) => `echo ${input}`);
    const res = await pending;
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ value: 'echo hi', node: welcome.nodeId });
    expect(goodCalls).toHaveLength(1);
    expect((await hung.closed).code).toBe(1006);
    const events = relay.hub.events().filter((e) => e.kind === 'evicted');
    expect(events.at(-1)?.detail).toMatch(/no heartbeat/);
    good.ws.close();
  });

  it('answers HTTP calls in MessagePack, with bytes intact', async () => {
    const { node } = await joinRaw(ws);
    serve(node, (input) => input);
    const bytes = Uint8Array.from({ length: 100_000 }, (_, i) => i % 251);
    const res = await call({ input: { bytes }, qos: { latencyMs: 5000 } }, 'application/msgpack');
    expect(res.headers.get('content-type')).toBe('application/msgpack');
    const body = decode(new Uint8Array(await res.arrayBuffer())) as {
      value: { bytes: Uint8Array };
    };
    expect(body.value.bytes).toEqual(bytes);
    node.ws.close();
  });

  it('gives a typed QoS error and a 503 when nothing can run it', async () => {
    const none = await call({ input: 1 });
    expect(none.status).toBe(503);
    const { node } = await joinRaw(ws);
    const privacy = await call({ input: 1, qos: { privacy: 'device' } });
    expect(privacy.status).toBe(422);
    expect((await privacy.json()).error).toMatchObject({ code: 'E_QOS', constraint: 'privacy' });
    const bad = await call({ input: 1, qos: { latencyMs: -1 } });
    expect(bad.status).toBe(400);
    node.ws.close();
  });

  it('guards the admin API with the token', async () => {
    for (const path of [
      '/api/nodes',
      '/api/decisions',
      '/api/events',
      '/api/trust',
      '/api/context',
      '/api/context/fanout',
      '/api/calls',
      '/api/exits',
      '/api/relays',
    ]) {
      expect((await fetch(`${relay.url}${path}`)).status).toBe(401);
      const ok = await fetch(`${relay.url}${path}`, {
        headers: { authorization: `Bearer ${relay.admin.token}` },
      });
      expect(ok.status).toBe(200);
    }
  });

  it('passes context changes to a dew through its parent fog, and serves what the fog could not', async () => {
    const key = async (name: string) => loadOrCreateIdentity(memoryKeyStore(), name);
    const fogId = await key('fog');
    await relay.admin.trust(fogId.publicKey, 'test fog');
    const { node: fog } = await joinRaw(ws, 'fog', { identity: fogId });
    const { node: dew, welcome } = await joinRaw(ws, 'dew');
    expect(welcome.parent).toBe(await nodeIdOf(fogId.publicKey));
    const dewId = welcome.nodeId;
    for (const n of [fog, dew]) n.send({ t: 'ctx-sync', cursor: 0, apps: ['fan'] });
    await fog.next('ctx-catchup');
    await dew.next('ctx-catchup');
    // The fog reports an open channel to its child.
    fog.send({
      t: 'heartbeat',
      load: { queue: 0, maxConcurrency: 1 },
      apps: [],
      models: {},
      stats: {},
      paused: false,
      links: [dewId],
    });
    const fogNode = await nodeIdOf(fogId.publicKey);
    await expect
      .poll(() => relay.hub.nodes().find((n) => n.id === fogNode)?.links)
      .toEqual([dewId]);
    const before = { ...relay.hub.fanout() };
    const put = (k: string) =>
      fetch(`${relay.url}/api/context/fan/${k}`, {
        method: 'PUT',
        headers: {
          'content-type': 'application/json',
          authorization: `Bearer ${relay.admin.token}`,
        },
        body: JSON.stringify({ value: k }),
      });
    expect((await put('a')).status).toBe(200);
    // One frame to the fog, naming the dew and the dew's own numbering; nothing to the dew.
    const fan = await fog.next('ctx-fan');
    expect(fan.to).toEqual([{ node: dewId, prev: expect.any(Number) }]);
    expect(fan.op.key).toBe('a');
    expect(dew.frames.filter((f) => f.t === 'ctx-op')).toEqual([]);
    // The fog says it could not send it: the relay sends it to the dew itself, same numbering.
    fog.send({ t: 'ctx-unsent', seq: fan.seq, to: fan.to });
    const direct = await dew.next('ctx-op');
    expect(direct).toMatchObject({ seq: fan.seq, prev: fan.to[0]!.prev, op: { key: 'a' } });
    // A fog cannot have the relay send to a node that is not its child (an untrusted fog has
    // no parent).
    const { node: other, welcome: w2 } = await joinRaw(ws, 'fog');
    other.send({ t: 'ctx-sync', cursor: 0, apps: ['fan'] });
    await other.next('ctx-catchup');
    expect((await put('b')).status).toBe(200);
    const fan2 = await fog.next('ctx-fan');
    await other.next('ctx-op'); // its own copy, straight from the relay
    fog.send({ t: 'ctx-unsent', seq: fan2.seq, to: [{ node: w2.nodeId, prev: 0 }] });
    // Sentinels instead of a pause: the relay answers a socket's frames in order, so once the fog
    // has its answer the relay has handled ctx-unsent, and once the other node has its own, any
    // ctx-op sent to it before has arrived.
    for (const [n, id] of [
      [fog, 901],
      [other, 902],
    ] as const) {
      n.send({ t: 'ctx-keys', id, keys: [] });
      await n.next('ctx-keys');
    }
    expect(other.frames.filter((f) => f.t === 'ctx-op')).toHaveLength(1);
    expect(relay.hub.fanout().viaFog - before.viaFog).toBe(2);
    expect(relay.hub.fanout().unsent - before.unsent).toBe(1);
    for (const n of [fog, dew, other]) n.ws.close();
    await relay.admin.revoke(fogId.publicKey);
  });
});
