// A node of relay A moves while relay B waits on it (issue 17; the cluster bench's kill run): B
// placed an HTTP call on the node through A, A falls silent (its Redis connection cut: no answer,
// no goodbye, its records not yet expired), and the node rejoins B itself or a third relay C.
// B places the call again at once, on another node, answered once — not at its call timeout
// (60 s here, longer than these tests may take). Real redis-server, real relays on loopback
// ports, raw nodes; nodes that take calls serve them from their first frame (joinRaw `onCall`).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadOrCreateIdentity, memoryKeyStore, nodeIdOf, signJoin } from '../../core/identity';
import { PROTOCOL_VERSION } from '../../core/protocol';
import { openRedis, type RedisLink } from '../../relay/cluster/redis';
import { echoCall, hubMember, type Member } from '../cluster-relays';
import { answerCall, type CallFrame, caps, joinRaw, openRaw } from '../raw-node';
import { type RedisProcess, startRedis } from '../redis-process';
import { until } from '../until';

const heartbeatMs = 200;
/** Far longer than a test may run: a call left to its timeout fails the test. */
const callTimeoutMs = 60_000;
let redis: RedisProcess;
const opened: { close(): Promise<void> }[] = [];

async function member(): Promise<Member> {
  const link = await openRedis(redis.url, { prefix: `rejoin${opened.length}:` });
  return join(link);
}

/** A relay on the Redis `link` names (relays of one test share its prefix). */
async function join(link: RedisLink): Promise<Member> {
  return hubMember(link, opened, { heartbeatMs, callTimeoutMs }, { warn: () => {} });
}

/** Relays sharing one prefix, each with its own connection. */
async function relays(n: number): Promise<Member[]> {
  const prefix = `rejoin${opened.length}:`;
  const out: Member[] = [];
  for (let i = 0; i < n; i++) out.push(await join(await openRedis(redis.url, { prefix })));
  return out;
}

const call = (m: Member, input: unknown) => echoCall(m.server, input);

/** A node that records the calls it gets and answers them with `answer`, or holds them. */
function node(answer?: (input: unknown) => unknown) {
  const got: CallFrame[] = [];
  return {
    got,
    onCall: (f: CallFrame, at: Parameters<typeof answerCall>[0]) => {
      got.push(f);
      if (answer) answerCall(at, f, answer(f.input));
    },
  };
}

const listedAt = (m: Member, id: string, relay?: string) =>
  m.server.relay.hub.nodes().some((n) => n.id === id && (relay === undefined || n.relay === relay));

beforeAll(async () => {
  redis = await startRedis();
});
afterAll(async () => {
  for (const o of opened.reverse()) await o.close().catch(() => {});
  await redis.close();
});

/**
 * Relay B's HTTP call held by node N of relay A, A then silent; answers what B needs next: the
 * call's answer, N's identity, and the ids of N and of M (a node of B that answers).
 */
async function heldThroughSilentA(a: Member, b: Member) {
  const identity = await loadOrCreateIdentity(memoryKeyStore(), 'mover');
  const held = node();
  const n = await joinRaw(a.server.ws, 'dew', { identity, onCall: held.onCall });
  const nId = n.welcome.nodeId;
  await until(() => listedAt(b, nId), 'node N of relay A listed at relay B');
  const answer = call(b, 'x');
  await until(() => held.got.length === 1, 'the call at node N, through relay A');
  // Another node, on B, to take the call when it moves.
  const m = node((input) => `M got ${input}`);
  const mJoined = await joinRaw(b.server.ws, 'dew', { onCall: m.onCall });
  // Relay A falls silent: it can tell nobody that N left, nor send N's answer.
  a.link.client.disconnect();
  n.node.ws.close();
  await n.node.closed;
  return { answer, identity, nId, held, m, mId: mJoined.welcome.nodeId, mNode: mJoined.node };
}

describe('a node moving while another relay waits on it', () => {
  it('rejoins the relay that placed the call: the call runs again at once elsewhere, once', async () => {
    const [a, b] = await relays(2);
    const t = await heldThroughSilentA(a!, b!);
    const again = node((input) => `N again got ${input}`);
    const back = await joinRaw(b!.server.ws, 'dew', { identity: t.identity, onCall: again.onCall });
    expect(back.welcome.nodeId).toBe(t.nId);
    const res = await t.answer;
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ value: 'M got x', node: t.mId });
    expect(t.m.got).toHaveLength(1);
    expect(again.got).toHaveLength(0);
    expect(b!.server.relay.hub.load().calls).toBe(0);
    back.node.ws.close();
    t.mNode.ws.close();
  });

  it('rejoins a third relay: the placing relay hears it there and runs the call elsewhere', async () => {
    const [a, b, c] = await relays(3);
    const t = await heldThroughSilentA(a!, b!);
    const again = node((input) => `N again got ${input}`);
    const moved = await joinRaw(c!.server.ws, 'dew', {
      identity: t.identity,
      onCall: again.onCall,
    });
    expect(moved.welcome.nodeId).toBe(t.nId);
    const res = await t.answer;
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ value: 'M got x', node: t.mId });
    expect(t.m.got).toHaveLength(1);
    expect(again.got).toHaveLength(0);
    const relayOfC = c!.server.relay.hub.nodes().find((x) => x.id === t.nId)?.relay;
    await until(() => listedAt(b!, t.nId, relayOfC), 'relay B lists node N on relay C');
    expect(b!.server.relay.hub.load().calls).toBe(0);
    moved.node.ws.close();
    t.mNode.ws.close();
  });

  it('a call the relay sends right behind welcome reaches a node served from its first frame', async () => {
    const b = await member();
    const first = node((input) => `first got ${input}`);
    const raw = await openRaw(b.server.ws, { onCall: first.onCall });
    const challenge = await raw.next('challenge');
    const { identity } = raw;
    raw.send({ t: 'hello', v: PROTOCOL_VERSION, role: 'dew', publicKey: identity.publicKey, caps });
    // The node reads nothing more until the relay has placed a call on it: its welcome and that
    // call then arrive in one read, as on a busy machine (the cluster bench's rejoining nodes).
    const socket = (raw.ws as unknown as { _socket: { pause(): void; resume(): void } })._socket;
    socket.pause();
    raw.send({
      t: 'join',
      nonce: challenge.nonce,
      signature: await signJoin(identity, challenge.nonce, challenge.relayId, 'dew'),
    });
    const id = await nodeIdOf(identity.publicKey);
    await until(() => b.server.relay.hub.joinedHere(id), 'the node joined');
    const answer = call(b, 'y');
    await until(() => b.server.relay.hub.load().calls === 1, 'the call placed on the node');
    socket.resume();
    await raw.next('welcome');
    const res = await answer;
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ value: 'first got y', node: id });
    expect(first.got).toHaveLength(1);
    raw.ws.close();
  });
});
