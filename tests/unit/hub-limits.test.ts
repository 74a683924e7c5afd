// The relay's bounds on what nodes and clients may hold: frame rates that count only what a node
// sends unasked, calls in flight, bytes buffered, join deadlines, connections per address.
import { afterEach, describe, expect, it } from 'vitest';
import { decode, encode } from '../../core/codec';
import { packBundle } from '../../core/manifest';
import { decodeFrame, encodeFrame, type ToNode } from '../../core/protocol';
import type { RelayOptions } from '../../relay/server';
import { hostileApp } from '../apps';
import { joinRaw, openRaw, type RawNode } from '../raw-node';
import { inProcessRelay } from '../relay-process';

type Server = Awaited<ReturnType<typeof inProcessRelay>>;
const servers: Server[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) await s.close();
});

async function relayWith(options: Partial<RelayOptions>) {
  const server = await inProcessRelay(options);
  servers.push(server);
  const b = await hostileApp();
  await server.relay.deploy(packBundle(b.manifest, b.files));
  return { relay: server.relay, ws: `${server.relay.url.replace('http', 'ws')}/ws` };
}

/** Answers every call with its input, at once or when `hold` lets it; counts the calls. */
function serve(node: RawNode, hold?: Promise<void>) {
  const got: number[] = [];
  node.ws.on('message', (data) => {
    const f = decodeFrame(new Uint8Array(data as Buffer), 'toNode') as ToNode;
    if (f.t !== 'call') return;
    got.push(f.id);
    const answer = () => {
      if (node.ws.readyState !== node.ws.OPEN) return;
      node.ws.send(encodeFrame({ t: 'result', id: f.id, value: f.input, rpc: f.rpc, ms: 0 }));
    };
    if (hold) void hold.then(answer);
    else answer();
  });
  return got;
}

/** An HTTP call in MessagePack, as the admin (so no per-address limit on anonymous calls). */
async function call(relay: { url: string; admin: { token: string } }, input: unknown) {
  const res = await fetch(`${relay.url}/api/call/hostile/echo`, {
    method: 'POST',
    headers: {
      'content-type': 'application/msgpack',
      authorization: `Bearer ${relay.admin.token}`,
    },
    body: Buffer.from(encode({ input })),
  });
  const body = decode(new Uint8Array(await res.arrayBuffer())) as {
    value?: unknown;
    error?: { code: string; message: string };
  };
  return { status: res.status, ...body };
}

/** Polls `check` until it holds (the condition, not a delay, is the barrier). */
async function until(check: () => boolean, what: string, timeoutMs = 20_000) {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('frame rate', () => {
  it('does not count answers to calls the relay sent: a busy node stays connected', async () => {
    // 5 frames a second (burst 10): 240 answers would close the node many times over if counted.
    const { relay, ws } = await relayWith({ frameRate: 5 });
    const { node } = await joinRaw(ws);
    const served = serve(node);
    let closed = false;
    void node.closed.then(() => (closed = true));
    const results = await Promise.all(
      Array.from({ length: 16 }, async (_, c) => {
        const out = [];
        for (let i = 0; i < 15; i++) out.push(await call(relay, `${c}-${i}`));
        return out;
      }),
    );
    const failed = results.flat().filter((r) => r.status !== 200);
    expect(failed).toEqual([]);
    expect(served).toHaveLength(240);
    expect(closed).toBe(false);
    node.ws.close();
  });

  it('still counts what a node sends unasked, answers to calls it was never sent included', async () => {
    const { ws } = await relayWith({ frameRate: 5 });
    const { node } = await joinRaw(ws);
    // Results for call ids nobody sent it are frames it initiated.
    for (let i = 0; i < 30; i++)
      node.send({ t: 'result', id: 1000 + i, value: null, rpc: 'echo', ms: 0 });
    const { code, reason } = await node.closed;
    expect(code).toBe(1008);
    expect(reason).toBe('more than 5 frames per second');
  });
});
