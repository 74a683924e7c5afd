// PeerJS signalling across relays sharing a Redis (issue 17, PROTOCOL.md §5.10): two relays in
// this process on real ports and a real redis-server, raw nodes joined to each, and their
// signalling sockets opened at the *other* relay (as a balancer may land them). An OFFER from one
// reaches the other and its ANSWER comes back; a socket nobody holds any more answers EXPIRE;
// garbage frames on a relay's channel are dropped; one socket's flood to other relays is bounded.
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type WebSocket from 'ws';
import { encode } from '../../core/codec';
import { type Relay, useRelayPair } from '../cluster-relays';
import { openSignalling } from '../fuzz-kit';
import { joinRaw, type RawNode } from '../raw-node';
import { until } from '../until';

interface Signal {
  type: string;
  src?: string;
  dst?: string;
  payload?: unknown;
}

/** A signalling socket and every message it got, in order. */
async function signalling(url: string, id: string, token: string) {
  const ws = await openSignalling(url, id, token);
  const got: Signal[] = [];
  // (Its OPEN may come with the upgrade, before this listens: the directory is the barrier.)
  ws.on('message', (data) => got.push(JSON.parse(String(data)) as Signal));
  return { ws, got };
}

const warnings: string[] = [];
const nodes: RawNode[] = [];
const sockets: WebSocket[] = [];

const relayOf = (r: Relay) => r.relay.cluster!.relayId;
const logger = {
  info() {},
  error() {},
  warn: (...args: unknown[]) => warnings.push(args.map((x) => JSON.stringify(x)).join(' ')),
};
const pair = useRelayPair('signal-blobs', { logger });
let raw: Redis;

/** Joins a node at `at`; opens its signalling socket at `signalAt` once Redis says it is there. */
async function peer(at: Relay, signalAt: Relay) {
  const { node, welcome } = await joinRaw(at.ws);
  nodes.push(node);
  const id = welcome.nodeId;
  // The other relay admits the socket once it has the node's record (a join is told at once).
  await until(
    () => signalAt.relay.hub.nodes().some((n) => n.id === id),
    'the node listed at the other relay',
  );
  const s = await signalling(signalAt.relay.url, id, welcome.peerToken);
  sockets.push(s.ws);
  await until(
    async () => (await raw.get(`brume:peer:${id}`)) === relayOf(signalAt),
    'the socket in the directory',
  );
  return { id, token: welcome.peerToken, ...s };
}

beforeAll(() => {
  raw = new Redis(pair.redis.url);
});

afterAll(async () => {
  for (const ws of sockets) ws.terminate();
  for (const n of nodes) n.ws.terminate();
  raw?.disconnect();
});

describe('PeerJS signalling across relays', () => {
  it('admits a signalling socket at another relay with the token, not without', async () => {
    const { node, welcome } = await joinRaw(pair.a.ws);
    nodes.push(node);
    // At once, as a tab does on its welcome: B may not have heard of the node yet, and waits.
    const ws = await openSignalling(pair.b.relay.url, welcome.nodeId, welcome.peerToken);
    sockets.push(ws);
    await expect(openSignalling(pair.b.relay.url, welcome.nodeId, 'not-the-token')).rejects.toThrow(
      /signalling refused: 401/,
    );
    // Its digest is between relays only: /api/nodes never shows it.
    const listed = await fetch(`${pair.b.relay.url}/api/nodes`, {
      headers: { authorization: `Bearer ${pair.b.relay.admin.token}` },
    });
    expect(JSON.stringify(await listed.json())).not.toContain('peerKey');
  }, 60_000);

  it('carries an OFFER to a socket at the other relay, and its ANSWER back', async () => {
    // Each node joined at one relay, its signalling socket at the other.
    const x = await peer(pair.a, pair.b);
    const y = await peer(pair.b, pair.a);
    const sdp = { sdp: 'v=0 offer', type: 'offer', connectionId: 'dc_1' };
    x.ws.send(JSON.stringify({ type: 'OFFER', dst: y.id, payload: sdp }));
    await until(() => y.got.some((m) => m.type === 'OFFER'), 'the OFFER at the other relay');
    expect(y.got.find((m) => m.type === 'OFFER')).toEqual({
      type: 'OFFER',
      src: x.id,
      dst: y.id,
      payload: sdp,
    });
    y.ws.send(JSON.stringify({ type: 'ANSWER', dst: x.id, payload: { sdp: 'v=0 answer' } }));
    x.ws.send(JSON.stringify({ type: 'CANDIDATE', dst: y.id, payload: { candidate: 'c1' } }));
    await until(() => x.got.some((m) => m.type === 'ANSWER'), 'the ANSWER back');
    expect(x.got.find((m) => m.type === 'ANSWER')).toMatchObject({
      src: y.id,
      dst: x.id,
      payload: { sdp: 'v=0 answer' },
    });
    await until(() => y.got.some((m) => m.type === 'CANDIDATE'), 'the candidate after it');
    // Nothing was told expired on the way.
    expect([...x.got, ...y.got].filter((m) => m.type === 'EXPIRE')).toEqual([]);
  }, 60_000);

  it('answers EXPIRE when the relay named for a socket holds it no more', async () => {
    const x = await peer(pair.a, pair.b);
    const { node, welcome } = await joinRaw(pair.b.ws);
    nodes.push(node);
    const z = welcome.nodeId;
    await until(() => pair.b.relay.hub.nodes().some((n) => n.id === z), 'listed at B');
    // The directory names relay A, which holds no socket of z: A says so, B tells x.
    await raw.set(`brume:peer:${z}`, relayOf(pair.a), 'PX', 60_000);
    x.ws.send(JSON.stringify({ type: 'OFFER', dst: z, payload: { sdp: 'lost' } }));
    await until(() => x.got.some((m) => m.type === 'EXPIRE'), 'EXPIRE from the other relay');
    expect(x.got.find((m) => m.type === 'EXPIRE')).toEqual({ type: 'EXPIRE', src: z, dst: x.id });
  }, 60_000);

  it('drops garbage signal frames on a relay channel and delivers the good one after', async () => {
    const y = await peer(pair.b, pair.a);
    const channel = `brume:to:${relayOf(pair.a)}`;
    const from = relayOf(pair.b);
    const src = 'f'.repeat(32);
    const garbage: unknown[] = [
      { t: 'signal', from, type: 'OFFER', src: 'not-an-id', dst: y.id, payload: '{}' },
      { t: 'signal', from, type: 'OPEN', src, dst: y.id },
      { t: 'signal', from: 'bad relay id!', type: 'OFFER', src, dst: y.id },
      { t: 'signal', from, type: 'OFFER', src, dst: y.id, payload: 42 },
      { t: 'signal', from, type: 'OFFER', src, dst: y.id, payload: 'not json {' },
      'not a frame',
    ];
    for (const g of garbage) await raw.publish(channel, Buffer.from(encode(g)));
    await raw.publish(channel, Buffer.from('\xc1 not msgpack', 'latin1'));
    const good = { t: 'signal', from, type: 'OFFER', src, dst: y.id, payload: '{"sdp":"ok"}' };
    await raw.publish(channel, Buffer.from(encode(good)));
    await until(() => y.got.some((m) => m.type === 'OFFER'), 'the good frame delivered');
    expect(y.got.filter((m) => m.type !== 'OPEN')).toEqual([
      { type: 'OFFER', src, dst: y.id, payload: { sdp: 'ok' } },
    ]);
    // The relays still carry signalling after the garbage.
    const x = await peer(pair.b, pair.a);
    x.ws.send(JSON.stringify({ type: 'OFFER', dst: y.id, payload: { sdp: 'still' } }));
    await until(() => y.got.filter((m) => m.type === 'OFFER').length === 2, 'a real OFFER');
  }, 60_000);

  it("bounds one socket's messages to other relays: a flood is cut, and logged", async () => {
    const x = await peer(pair.a, pair.b);
    const y = await peer(pair.b, pair.a);
    const flood = 1000;
    for (let i = 0; i < flood; i++) {
      x.ws.send(JSON.stringify({ type: 'CANDIDATE', dst: y.id, payload: { i } }));
    }
    await until(
      // Cut by the rate (20 a second after a burst of 200) or the queue (256 waiting) first.
      () => warnings.some((w) => /peer signalling: node \w+ (sends|has) .*dropped/.test(w)),
      'the flood logged',
    );
    await until(() => y.got.some((m) => m.type === 'CANDIDATE'), 'the first candidates');
    // The socket stays open and its peers keep hearing from it, within the bound.
    expect(y.got.filter((m) => m.type === 'CANDIDATE').length).toBeLessThan(flood);
  }, 60_000);

  it('answers EXPIRE at once for a peer joined nowhere, as a lone relay does', async () => {
    const x = await peer(pair.a, pair.b);
    const nobody = 'e'.repeat(32);
    x.ws.send(JSON.stringify({ type: 'OFFER', dst: nobody, payload: {} }));
    await until(() => x.got.some((m) => m.type === 'EXPIRE'), 'EXPIRE');
    expect(x.got.find((m) => m.type === 'EXPIRE')).toEqual({
      type: 'EXPIRE',
      src: nobody,
      dst: x.id,
    });
  }, 60_000);
});
