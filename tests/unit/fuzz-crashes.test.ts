// Inputs that each killed the relay process, kept as regressions next to the fuzz suite that
// looks for more (fuzz.test.ts). The relay runs as a real process: a crash is an exit, not a
// thrown error a test could catch.

import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { encode } from '../../core/codec';
import { encodeFrame, type ToNode } from '../../core/protocol';
import {
  closedCode,
  deepResult,
  deployFuzzApp,
  healthy,
  honestCallWorks,
  openSignalling,
  rawHttp,
  serve,
  serveBytes,
  upgradeRequest,
} from '../fuzz-kit';
import { joinRaw } from '../raw-node';
import { type RelayProcess, startRelay } from '../relay-process';

let relay: RelayProcess | undefined;

// A test that kills the relay must not take the next ones with it: each starts one if needed.
beforeEach(async () => {
  if (relay && relay.child.exitCode === null) return;
  relay = await startRelay({ args: ['--no-cloud'] });
  await deployFuzzApp(relay.url, relay.token);
});
afterAll(() => relay?.stop());

/** The relay process is running and answers; the failure message carries what it printed. */
async function stillUp(r: RelayProcess): Promise<void> {
  try {
    await healthy(r.url);
  } catch (e) {
    throw new Error(`the relay is down (${(e as Error).message}); it printed:\n${r.output()}`);
  }
  expect(r.child.exitCode).toBe(null);
}

const evil = 'Origin: http://evil.example';

describe('upgrade requests', () => {
  it('answers an unparseable request target with 400 E_INPUT instead of exiting', async () => {
    const r = relay!;
    const answer = await rawHttp(r.url, upgradeRequest('//:'));
    expect(answer).toMatch(/^HTTP\/1\.1 400 /);
    expect(answer).toContain('"E_INPUT"');
    expect(answer).toContain('//:');
    await stillUp(r);
  });

  it('names what it refused: an unknown path (404), a foreign Origin (403)', async () => {
    const r = relay!;
    const unknown = await rawHttp(r.url, upgradeRequest('/nowhere'));
    expect(unknown).toMatch(/^HTTP\/1\.1 404 /);
    expect(unknown).toContain('/nowhere');
    const ws = await rawHttp(r.url, upgradeRequest('/ws', [evil]));
    expect(ws).toMatch(/^HTTP\/1\.1 403 /);
    expect(ws).toContain('http://evil.example');
    const peer = await rawHttp(r.url, upgradeRequest('/peerjs/peerjs?id=x&token=y', [evil]));
    expect(peer).toMatch(/^HTTP\/1\.1 403 /);
    await stillUp(r);
  });

  it('survives clients that reset the connection after a refused upgrade', async () => {
    const r = relay!;
    const refused = [
      upgradeRequest('/nowhere'),
      upgradeRequest('/ws', [evil]),
      upgradeRequest('/peerjs/peerjs?key=brume&id=x&token=y', [evil]),
      upgradeRequest('/peerjs/peerjs?key=brume&id=x&token=y'),
    ];
    // The reset races the relay's answer: enough rounds that it lands while the relay writes.
    for (let round = 0; round < 40; round++) {
      await Promise.all(refused.map((req) => rawHttp(r.url, req, { reset: true })));
    }
    await stillUp(r);
  });
});

describe('frames on /ws', () => {
  it('a close reason cut inside a multi-byte character does not end the relay', async () => {
    const r = relay!;
    const ws = new WebSocket(`${r.url.replace('http', 'ws')}/ws`);
    ws.on('error', () => {});
    await new Promise((resolve) => ws.once('open', resolve));
    const closed = closedCode(ws);
    // The schema error names the stats key; 123 bytes into the reason falls inside a "€".
    const key = `x${'€'.repeat(40)}`;
    const heartbeat = {
      t: 'heartbeat',
      load: { queue: 0, maxConcurrency: 1 },
      apps: [],
      models: {},
      stats: { [key]: { count: 'not a number', p50: 1 } },
      paused: false,
    };
    ws.send(encode(heartbeat));
    expect(await closed).toBe(1008);
    await stillUp(r);
  });
});

describe('PeerJS signalling from a joined dew', () => {
  async function signalling(r: RelayProcess) {
    const { node, welcome } = await joinRaw(`${r.url.replace('http', 'ws')}/ws`);
    const peer = await openSignalling(r.url, welcome.nodeId, welcome.peerToken);
    return { node, peer };
  }

  it('closes the socket of a dew that sends text that is not JSON, and stays up', async () => {
    const r = relay!;
    const { node, peer } = await signalling(r);
    const closed = closedCode(peer);
    peer.send('this is not JSON {');
    expect(await closed).toBe(1008);
    node.ws.terminate();
    await stillUp(r);
    await honestCallWorks(r.url);
  });

  it('closes the socket of a dew that sends a frame over 64 KiB, and stays up', async () => {
    const r = relay!;
    const { node, peer } = await signalling(r);
    const closed = closedCode(peer);
    peer.send(JSON.stringify({ type: 'HEARTBEAT', pad: 'x'.repeat(70 * 1024) }));
    expect(await closed).toBe(1009);
    node.ws.terminate();
    await stillUp(r);
    await honestCallWorks(r.url);
  });
});

describe('what the relay cannot encode back reaches the caller as a typed error', () => {
  // The MessagePack encoder stops at depth 100; the decoder takes what fits the byte limits.
  const deep = (levels: number): unknown => {
    let v: unknown = 'bottom';
    for (let i = 0; i < levels; i++) v = [v];
    return v;
  };

  it('a result nested too deep to pass on: the caller gets E_CODEC, the node stays', async () => {
    const r = relay!;
    const ws = `${r.url.replace('http', 'ws')}/ws`;
    const { node: server, welcome } = await joinRaw(ws);
    serveBytes(server, (call) => deepResult(call, 150));
    const { node: caller } = await joinRaw(ws);
    caller.send({
      t: 'call',
      id: 7,
      to: welcome.nodeId,
      app: 'fuzz',
      service: 'echo',
      rpc: 'echo',
      input: 'x',
      qos: {},
    });
    const answer = (await Promise.race([caller.next('result'), caller.next('error')])) as ToNode;
    expect(answer).toMatchObject({ t: 'error', id: 7, error: { code: 'E_CODEC' } });
    expect(JSON.stringify(answer)).toMatch(/depth/);
    // The node that answered did nothing wrong: it is still joined.
    expect(server.ws.readyState).toBe(server.ws.OPEN);
    caller.ws.terminate();
    server.ws.terminate();
    await stillUp(r);
  });

  it('an HTTP input nested too deep to forward: 400 E_CODEC, not a 500', async () => {
    const r = relay!;
    const { node, welcome } = await joinRaw(`${r.url.replace('http', 'ws')}/ws`);
    serve(node, (input) => input);
    const res = await fetch(`${r.url}/api/call/fuzz/echo`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ input: deep(150), qos: { privacy: welcome.nodeId } }),
    });
    const body = (await res.json()) as { error: { code: string; message: string } };
    expect(res.status).toBe(400);
    expect(body.error.code).toBe('E_CODEC');
    expect(body.error.message).toMatch(/depth/);
    node.ws.terminate();
  });

  it('an HTTP result MessagePack cannot carry: a typed error, not a 500', async () => {
    const r = relay!;
    const { node, welcome } = await joinRaw(`${r.url.replace('http', 'ws')}/ws`);
    serveBytes(node, (call) => deepResult(call, 150));
    const res = await fetch(`${r.url}/api/call/fuzz/echo`, {
      method: 'POST',
      headers: { 'content-type': 'application/msgpack' },
      body: Buffer.from(encode({ input: 1, qos: { privacy: welcome.nodeId } })),
    });
    const body = (await res.json()) as { error?: { code: string; message: string } };
    expect(res.status).toBeGreaterThanOrEqual(400);
    expect(body.error).toMatchObject({ code: 'E_CODEC', message: expect.stringMatching(/depth/) });
    node.ws.terminate();
  });
});

describe('what JSON cannot carry is a typed error naming the field', () => {
  const callJson = async (
    r: RelayProcess,
    result: (call: { id: number; rpc: string }) => Uint8Array,
  ) => {
    const { node, welcome } = await joinRaw(`${r.url.replace('http', 'ws')}/ws`);
    serveBytes(node, result);
    const res = await fetch(`${r.url}/api/call/fuzz/echo`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ input: 1, qos: { privacy: welcome.nodeId } }),
    });
    node.ws.terminate();
    return {
      status: res.status,
      body: (await res.json()) as { error?: { code: string; message: string } },
    };
  };

  it('bytes in a JSON answer: E_CODEC naming the field, not an object of numbers', async () => {
    const r = relay!;
    const { status, body } = await callJson(r, (call) =>
      encodeFrame({
        t: 'result',
        id: call.id,
        rpc: call.rpc,
        ms: 0,
        value: { data: new Uint8Array([1, 2, 3]) },
      }),
    );
    expect(status).toBeGreaterThanOrEqual(400);
    expect(body.error?.code).toBe('E_CODEC');
    expect(body.error?.message).toContain('value.data');
    expect(body.error?.message).toContain('application/msgpack');
  });

  it('a JSON answer nested 100,000 deep: E_CODEC, not a stack overflow', async () => {
    const r = relay!;
    const { status, body } = await callJson(r, (call) => deepResult(call, 100_000));
    expect(status).toBeGreaterThanOrEqual(400);
    expect(body.error?.code).toBe('E_CODEC');
    expect(body.error?.message).toMatch(/depth limit of 100/);
    await stillUp(r);
  });
});

describe('the signalling limit', () => {
  it('is a flag: --max-signal-kib 1 closes a 2 KiB message with 1009', async () => {
    const small = await startRelay({ args: ['--no-cloud', '--max-signal-kib', '1'] });
    try {
      const { node, welcome } = await joinRaw(`${small.url.replace('http', 'ws')}/ws`);
      const peer = await openSignalling(small.url, welcome.nodeId, welcome.peerToken);
      const closed = closedCode(peer);
      peer.send(JSON.stringify({ type: 'HEARTBEAT', pad: 'x'.repeat(2048) }));
      expect(await closed).toBe(1009);
      node.ws.terminate();
      await stillUp(small);
    } finally {
      await small.stop();
    }
    // It starts a relay of its own: on a busy machine that alone can take tens of seconds.
  }, 120_000);
});
