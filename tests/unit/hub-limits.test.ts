// The relay's bounds on what nodes and clients may hold: frame rates that count only what a node
// sends unasked, calls in flight, bytes buffered, join deadlines, connections per address.

import { rm } from 'node:fs/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { decode, encode } from '../../core/codec';
import { packBundle } from '../../core/manifest';
import type { RelayOptions } from '../../relay/server';
import { hostileApp } from '../apps';
import { answerCall, joinRaw, onCalls, openRaw, type RawNode } from '../raw-node';
import { inProcessRelay, startRelay } from '../relay-process';
import { until } from '../until';

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
  onCalls(node, (f) => {
    got.push(f.id);
    const answer = () => answerCall(node, f, f.input);
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
  // Errors come as JSON whatever the request's type.
  const bytes = new Uint8Array(await res.arrayBuffer());
  const json = res.headers.get('content-type')?.startsWith('application/json');
  const body = (json ? JSON.parse(new TextDecoder().decode(bytes)) : decode(bytes)) as {
    value?: unknown;
    error?: { code: string; message: string };
  };
  return { status: res.status, ...body };
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

describe('calls in flight', () => {
  it('refuses a call past the per-node cap with E_LIMIT naming the node and the limit', async () => {
    const { relay, ws } = await relayWith({ limits: { callsPerNode: 4 } });
    const { node, welcome } = await joinRaw(ws);
    let release = () => {};
    const served = serve(node, new Promise<void>((r) => (release = r)));
    const held = Array.from({ length: 4 }, (_, i) => call(relay, i));
    await until(() => served.length === 4, 'four calls to reach the node');
    const refused = await call(relay, 'one too many');
    expect(refused.status).toBe(413);
    expect(refused.error).toEqual({
      code: 'E_LIMIT',
      message: `node ${welcome.nodeId.slice(0, 8)} has 4 calls in flight (limit 4)`,
    });
    release();
    expect((await Promise.all(held)).map((r) => r.status)).toEqual([200, 200, 200, 200]);
    // Answered calls free their places.
    expect((await call(relay, 'again')).status).toBe(200);
    node.ws.close();
  });

  it('refuses a call past the relay-wide cap and past the bytes held for calls', async () => {
    const { relay, ws } = await relayWith({ limits: { callsInFlight: 2, callBytes: 100_000 } });
    const { node } = await joinRaw(ws);
    let release = () => {};
    const served = serve(node, new Promise<void>((r) => (release = r)));
    const big = new Uint8Array(60_000);
    const first = call(relay, big);
    await until(() => served.length === 1, 'the first call to reach the node');
    const tooBig = await call(relay, big);
    expect(tooBig.status).toBe(413);
    expect(tooBig.error?.message).toMatch(
      /^calls in flight hold \d+ bytes and this one \d+ \(limit 100000\)$/,
    );
    const second = call(relay, 'small');
    await until(() => served.length === 2, 'the second call to reach the node');
    const third = await call(relay, 'small');
    expect(third.error?.message).toMatch(/^the relay has 2 calls in flight \(limit 2\)/);
    release();
    expect((await first).status).toBe(200);
    expect((await second).status).toBe(200);
    node.ws.close();
  });

  it('refuses a node more calls through the relay than the per-node cap', async () => {
    const { ws } = await relayWith({ limits: { callsPerNode: 2 } });
    const { node: runner, welcome: runnerWelcome } = await joinRaw(ws);
    let release = () => {};
    serve(runner, new Promise<void>((r) => (release = r)));
    const { node: asker, welcome } = await joinRaw(ws);
    for (let id = 1; id <= 3; id++) {
      asker.send({
        t: 'call',
        id,
        to: runnerWelcome.nodeId,
        app: 'hostile',
        service: 'echo',
        rpc: 'echo',
        input: id,
        qos: {},
      });
    }
    const refused = await asker.next('error');
    expect(refused).toMatchObject({
      id: 3,
      error: {
        code: 'E_LIMIT',
        message: `node ${welcome.nodeId.slice(0, 8)} waits on 2 calls through the relay (limit 2)`,
      },
    });
    release();
    expect((await asker.next('result')).id).toBe(1);
    for (const n of [runner, asker]) n.ws.close();
  });
});

describe('bytes buffered for a node', () => {
  it('refuses calls to a node that stops reading, closes it, and runs its calls elsewhere', async () => {
    const MiB = 1024 * 1024;
    const { relay, ws } = await relayWith({
      // Closed once over the cap at two sweeps: a second is time enough to see the refusal first.
      heartbeatMs: 1000,
      limits: { nodeBufferedBytes: MiB },
    });
    const { node: stuck, welcome } = await joinRaw(ws);
    // It keeps sending heartbeats (so it is not evicted for silence) but reads nothing.
    stuck.ws.pause();
    const beat = setInterval(
      () =>
        stuck.send({
          t: 'heartbeat',
          load: { queue: 0, maxConcurrency: 1 },
          apps: [],
          models: {},
          stats: {},
          paused: false,
        }),
      50,
    );
    try {
      // Under the HTTP body limit (1 MiB); enough of them fill the socket buffers past the cap.
      const input = new Uint8Array(900_000);
      const outcomes: { status: number; error?: { message: string } }[] = [];
      const pending: Promise<Awaited<ReturnType<typeof call>>>[] = [];
      // One at a time, each forwarded before the next, until the relay refuses one.
      while (!outcomes.length) {
        const before = relay.hub.load().calls;
        pending.push(
          call(relay, input).then((r) => {
            outcomes.push(r);
            return r;
          }),
        );
        await until(
          () => outcomes.length > 0 || relay.hub.load().calls > before,
          'the call to be forwarded or answered',
        );
        expect(pending.length).toBeLessThan(200);
      }
      const refused = outcomes.find((r) => r.status === 413)!;
      expect(refused.error?.message).toMatch(
        new RegExp(
          `^node ${welcome.nodeId.slice(0, 8)} has \\d+ bytes waiting to be sent \\(limit ${MiB}\\)$`,
        ),
      );
      // Another node joins; the stuck one is closed at the next sweeps and its calls move.
      const { node: good, welcome: w2 } = await joinRaw(ws);
      serve(good);
      const all = await Promise.all(pending);
      const ok = all.filter((r) => r.status === 200);
      expect(ok.length).toBeGreaterThan(0);
      expect(ok.every((r) => (r as { node?: string }).node === w2.nodeId)).toBe(true);
      expect(all.every((r) => r.status === 200 || r.status === 413)).toBe(true);
      expect(relay.hub.nodes().map((n) => n.id)).not.toContain(welcome.nodeId);
      const closed = relay.hub
        .events()
        .find((e) => e.kind === 'closed' && e.node === welcome.nodeId);
      expect(closed?.detail).toMatch(
        new RegExp(`^\\d+ bytes unread for \\d+ ms \\(limit ${MiB}\\)$`),
      );
      good.ws.close();
    } finally {
      clearInterval(beat);
      stuck.ws.terminate();
    }
  });
});

describe('sockets', () => {
  it('closes a socket that never joins, with the deadline in the reason', async () => {
    const { ws } = await relayWith({ limits: { joinTimeoutMs: 200 } });
    const idle = await openRaw(ws);
    const timeout = new Promise((_, reject) =>
      setTimeout(() => reject(new Error('the unjoined socket was never closed')), 10_000),
    );
    expect(await Promise.race([idle.closed, timeout])).toEqual({
      code: 1008,
      reason: 'no join within 200 ms',
    });
  });

  it('refuses sockets past the per-address cap and the total, with the limit in the answer', async () => {
    const { ws } = await relayWith({ limits: { connsPerAddress: 2 } });
    const open = [await openRaw(ws), await openRaw(ws)];
    expect(await refusal(ws)).toEqual({
      status: 429,
      body: {
        error: {
          code: 'E_RATE',
          message: '127.0.0.1 has 2 node sockets open (limit 2 per address)',
        },
      },
    });
    // A socket that closes gives its place back.
    open[0]!.ws.close();
    await open[0]!.closed;
    open.push(await openUntilAdmitted(ws));
    for (const n of open) n.ws.close();

    const other = await relayWith({ limits: { conns: 1 } });
    const one = await openRaw(other.ws);
    expect(await refusal(other.ws)).toEqual({
      status: 503,
      body: {
        error: { code: 'E_UNAVAILABLE', message: 'the relay has 1 node sockets open (limit 1)' },
      },
    });
    one.ws.close();
  });
});

/** Opens a socket the relay should refuse: its status and body. */
function refusal(wsUrl: string): Promise<{ status: number; body: unknown }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(wsUrl);
    ws.on('open', () => reject(new Error('the socket was admitted')));
    ws.on('error', () => {});
    ws.on('unexpected-response', (_req, res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(body) }));
    });
  });
}

/** The relay counts a socket out when its close reaches the relay: retry until admitted. */
async function openUntilAdmitted(wsUrl: string): Promise<RawNode> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    try {
      return await openRaw(wsUrl);
    } catch (e) {
      if (Date.now() > deadline) throw e;
    }
  }
}

describe('brume start', () => {
  it('takes the limits as flags', async () => {
    const relay = await startRelay({
      args: ['--no-cloud', '--max-conns-per-address', '1', '--join-timeout-ms', '300'],
    });
    try {
      const ws = `${relay.url.replace('http', 'ws')}/ws`;
      const first = await openRaw(ws);
      expect(await refusal(ws)).toEqual({
        status: 429,
        body: {
          error: {
            code: 'E_RATE',
            message: '127.0.0.1 has 1 node sockets open (limit 1 per address)',
          },
        },
      });
      expect(await first.closed).toEqual({ code: 1008, reason: 'no join within 300 ms' });
    } finally {
      await relay.stop();
      await rm(relay.dataDir, { recursive: true, force: true });
    }
  });
});
