// Relays sharing a Redis (issue 17) as one hub: a real redis-server, real relays on loopback
// ports, raw nodes joined to different relays. A node on one relay is listed and called through
// another; a relay that dies without a word has its node's calls placed again, answered once;
// garbage on the channels and more relays or nodes than the bounds change nothing.
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encode } from '../../core/codec';
import { LimitError } from '../../core/errors';
import { loadOrCreateIdentity, memoryKeyStore } from '../../core/identity';
import { type clusterDefaults, redisCluster } from '../../relay/cluster/nodes';
import { openRedis } from '../../relay/cluster/redis';
import { echoCall, type Member as HubMember, hubMember } from '../cluster-relays';
import { node as nodeView } from '../node-view';
import { answerCall, joinRaw, onCalls, type RawNode } from '../raw-node';
import { type RedisProcess, startRedis } from '../redis-process';
import { until } from '../until';

const heartbeatMs = 200;
let redis: RedisProcess;
let raw: Redis;
const opened: { close(): Promise<void> }[] = [];

type Member = HubMember & { warnings: string[] };

async function member(o: Partial<typeof clusterDefaults> = {}, prefix = 'brume:'): Promise<Member> {
  const link = await openRedis(redis.url, { prefix });
  const warnings: string[] = [];
  const relay = { heartbeatMs, callTimeoutMs: 60_000 };
  const m = await hubMember(link, opened, relay, { warn: (w) => warnings.push(w), ...o });
  return { ...m, warnings };
}

/** Answers every call with `answer(input)` unless `hold` says not yet; counts the calls. */
function serve(node: RawNode, answer: (input: unknown) => unknown, hold = () => false) {
  const got: number[] = [];
  onCalls(node, (f) => {
    got.push(f.id);
    if (!hold()) answerCall(node, f, answer(f.input));
  });
  return got;
}

const call = (m: Member, input: unknown) => echoCall(m.server, input);

beforeAll(async () => {
  redis = await startRedis();
  raw = new Redis(redis.url);
});
afterAll(async () => {
  for (const o of opened.reverse()) await o.close().catch(() => {});
  raw.disconnect();
  await redis.close();
});

describe('relays sharing a Redis', () => {
  it('lists a node of one relay at another, and serves a call there through it, once', async () => {
    const a = await member();
    const b = await member();
    const { node, welcome } = await joinRaw(a.server.ws);
    const got = serve(node, (input) => `echo ${input}`);
    const listed = await until(
      () => b.server.relay.hub.nodes().find((n) => n.id === welcome.nodeId),
      'the node of relay A listed at relay B',
    );
    expect(listed.relay).not.toBe(undefined);
    expect(b.server.relay.hub.joinedHere(welcome.nodeId)).toBe(false);
    expect(a.server.relay.hub.joinedHere(welcome.nodeId)).toBe(true);
    const res = await call(b, 'hi');
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ value: 'echo hi', node: welcome.nodeId });
    expect(got).toHaveLength(1);
    // The node leaves relay A: relay B forgets it.
    node.ws.close();
    await until(
      () => !b.server.relay.hub.nodes().some((n) => n.id === welcome.nodeId),
      'the node gone from relay B',
    );
    const metrics = await fetch(`${b.server.relay.url}/metrics`, {
      headers: { authorization: `Bearer ${b.server.relay.admin.token}` },
    });
    expect(await metrics.text()).toMatch(/brume_relay_messages_total\{dir="out",kind="call"\} 1/);
    await a.server.close();
    await b.server.close();
  });

  it('places a call again when the relay of its node dies without a word, answered once', async () => {
    const a = await member();
    const b = await member();
    const { node: onA, welcome } = await joinRaw(a.server.ws);
    let holding = true;
    const gotA = serve(
      onA,
      () => 'from A',
      () => holding,
    );
    await until(
      () => b.server.relay.hub.nodes().some((n) => n.id === welcome.nodeId),
      'the node of relay A listed at relay B',
    );
    const pending = call(b, 'x');
    await until(() => gotA.length === 1, 'the call at the node of relay A');
    // Relay A dies: its Redis connection is cut, so no key refresh, no answer, no goodbye.
    a.link.client.disconnect();
    const { node: onB, welcome: wB } = await joinRaw(b.server.ws);
    const gotB = serve(onB, (input) => `B got ${input}`);
    const res = await pending;
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ value: 'B got x', node: wB.nodeId });
    expect(gotB).toHaveLength(1);
    expect(b.server.relay.hub.nodes().some((n) => n.id === welcome.nodeId)).toBe(false);
    // A's node answers late: it reaches nobody.
    holding = false;
    expect(b.server.relay.hub.load().calls).toBe(0);
    onA.ws.close();
    onB.ws.close();
    await b.server.close();
    await a.server.close();
  });

  it('takes a node that rejoins through another relay as the same node, there now', async () => {
    const a = await member();
    const b = await member();
    const identity = await loadOrCreateIdentity(memoryKeyStore(), 'mover');
    const first = await joinRaw(a.server.ws, 'dew', { identity });
    const id = first.welcome.nodeId;
    await until(() => b.server.relay.hub.nodes().some((n) => n.id === id), 'listed at B');
    first.node.ws.close();
    const again = await joinRaw(b.server.ws, 'dew', { identity });
    expect(again.welcome.nodeId).toBe(id);
    expect(b.server.relay.hub.joinedHere(id)).toBe(true);
    const relayOfB = b.server.relay.hub.nodes().find((n) => n.id === id)?.relay;
    await until(
      () => a.server.relay.hub.nodes().find((n) => n.id === id && n.relay === relayOfB),
      'relay A sees the node on relay B',
    );
    expect(b.server.relay.hub.nodes().filter((n) => n.id === id)).toHaveLength(1);
    again.node.ws.close();
    await a.server.close();
    await b.server.close();
  });

  it('drops garbage published on its channels and keeps working', async () => {
    const b = await member();
    const prefix = b.link.prefix;
    const relayId = await until(
      () => raw.zrange(`${prefix}relays`, 0, -1).then((r) => r[0]),
      'a relay registered',
    );
    const target = `${prefix}to:${relayId}`;
    const channel = `${prefix}nodes`;
    const junk = [
      Buffer.from('not messagepack at all \xc1'),
      Buffer.from(encode({ t: 'nodes', relay: 'x y', records: [] })),
      Buffer.from(encode({ t: 'nodes', relay: 'evil', records: [{ id: 'zz', __proto__: {} }] })),
      Buffer.from(encode({ t: 'left', relay: 'evil', ids: ['../../'] })),
      Buffer.from(encode({ t: 'result', from: 'evil', node: 'a'.repeat(32), id: -1 })),
      Buffer.from(encode({ t: 'call', from: 'evil', node: 'b'.repeat(32) })),
      Buffer.from(encode([1, 2, 3])),
      Buffer.alloc(1024 * 1024, 0xff),
    ];
    for (const j of junk) {
      await raw.publish(channel, j);
      await raw.publish(target, j);
    }
    // A well-formed answer to a call that does not exist matches nothing.
    const stray = {
      t: 'result',
      from: 'evil',
      node: 'a'.repeat(32),
      id: 5,
      value: 1,
      rpc: '',
      ms: 0,
    };
    await raw.publish(target, Buffer.from(encode(stray)));
    await until(() => b.warnings.some((w) => /dropped a message/.test(w)), 'a warning');
    const { node, welcome } = await joinRaw(b.server.ws);
    serve(node, (input) => `ok ${input}`);
    const res = await call(b, 'still');
    expect(await res.json()).toMatchObject({ value: 'ok still', node: welcome.nodeId });
    expect(b.server.relay.hub.nodes()).toHaveLength(1);
    node.ws.close();
    await b.server.close();
  });

  it('mirrors at most maxRemoteNodes of other relays, and refuses a relay past maxRelays', async () => {
    // A cluster of its own: relays of the tests before may still be registered in the other.
    const b = await member({ maxRemoteNodes: 2 }, 'bounds:');
    const record = (i: number) => ({
      ...nodeView(i, { publicKey: 'k', apps: ['hostile'] }),
      relay: 'other',
      caps: { backends: [{ name: 'wasm', detail: 'fake' }], cores: 1 },
      joinedAt: Date.now(),
      lastSeen: Date.now(),
    });
    const records = [1, 2, 3, 4, 5].map(record);
    await raw.publish(
      `${b.link.prefix}nodes`,
      Buffer.from(encode({ t: 'nodes', relay: 'other', records })),
    );
    await until(() => b.server.relay.hub.nodes().length === 2, 'two nodes mirrored');
    await until(() => b.warnings.some((w) => /2 mirrored at most/.test(w)), 'a warning');
    // Not heard of again: gone after a few periods.
    await until(() => b.server.relay.hub.nodes().length === 0, 'the silent relay forgotten');

    // The set of relays is full (two here, with `b`): a third may not join.
    const link = await openRedis(redis.url, { prefix: 'bounds:' });
    opened.push(link);
    await member({ maxRelays: 2 }, 'bounds:');
    const third = await redisCluster(link, { warn: () => {}, maxRelays: 2 });
    const handlers = { node() {}, left() {}, frame() {}, counted() {} };
    await expect(third.start('third', heartbeatMs, handlers, () => [])).rejects.toThrow(LimitError);
    await b.server.close();
  });
});
