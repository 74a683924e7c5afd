// The relay's own cloud node on its in-process link (relay/local-link.ts): it answers HTTP calls
// with no socket between it and the hub, the relay's call limits and timeouts hold for it as for
// any node, and a Logic of its that fails or hangs costs its caller a typed error, not the relay.
import { readFileSync } from 'node:fs';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decode, encode } from '../../core/codec';
import { type Bundle, buildManifest } from '../../core/manifest';
import { loadDigits } from '../../models/digits/data';
import { inProcessRelay } from '../relay-process';
import { until } from '../until';

const wasm = (name: string) =>
  new Uint8Array(readFileSync(new URL(`../../logics/build/${name}.wasm`, import.meta.url)));

/** An echo, a Logic that never returns and one that takes all the memory it may. */
async function testApp(): Promise<Bundle> {
  const files = {
    'echo.wasm': wasm('echo'),
    'loop.wasm': wasm('loop-forever'),
    'hog.wasm': wasm('memory-hog'),
  };
  const manifest = await buildManifest(
    {
      brume: 1,
      name: 'linked',
      version: '1.0.0',
      services: {
        echo: { kind: 'logic', file: 'echo.wasm', rpcs: ['echo'] },
        loop: { kind: 'logic', file: 'loop.wasm', rpcs: ['run'], limits: { timeoutMs: 60_000 } },
        hog: { kind: 'logic', file: 'hog.wasm', rpcs: ['run'] },
      },
    },
    files,
  );
  return { manifest, files };
}

type Server = Awaited<ReturnType<typeof inProcessRelay>>;

interface Answer {
  value?: unknown;
  node?: string;
  error?: { code: string; message: string };
}

/** POSTs a call in JSON; answers the status and the parsed body. */
async function call(server: Server, service: string, input: unknown) {
  const res = await fetch(`${server.relay.url}/api/call/linked/${service}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ input }),
  });
  return { status: res.status, body: (await res.json()) as Answer };
}

const cloudOf = (server: Server) => server.relay.hub.nodes().find((n) => n.role === 'cloud');

let app: Bundle;
beforeAll(async () => {
  app = await testApp();
});

describe('the cloud node on its in-process link', () => {
  let server: Server;
  beforeAll(async () => {
    server = await inProcessRelay({
      cloudNode: true,
      apps: [app],
      logicCaps: { timeoutMs: 300, memoryMiB: 8 },
    });
    await until(() => cloudOf(server) !== undefined, 'the cloud node to join', 20_000);
  }, 60_000);
  afterAll(() => server?.close());

  it('answers HTTP calls with no socket between it and the hub', async () => {
    const cloud = cloudOf(server)!;
    expect(cloud.trusted).toBe(true);
    // Joined, heartbeating and placed on like any node, yet no node socket is open.
    expect(server.relay.hub.load().sockets).toBe(0);
    const r = await call(server, 'echo', { hello: 'cloud', n: [1, 2, 3] });
    expect(r.status).toBe(200);
    expect(r.body.value).toEqual({ hello: 'cloud', n: [1, 2, 3] });
    expect(r.body.node).toBe(cloud.id);
  });

  it('carries binary both ways unencoded, as MessagePack would have', async () => {
    const bytes = Uint8Array.from({ length: 300 }, (_, i) => i % 251);
    const res = await fetch(`${server.relay.url}/api/call/linked/echo`, {
      method: 'POST',
      headers: { 'content-type': 'application/msgpack' },
      body: Buffer.from(encode({ input: { bytes } })),
    });
    expect(res.status).toBe(200);
    const answer = decode(new Uint8Array(await res.arrayBuffer())) as { value: { bytes: unknown } };
    expect(answer.value.bytes).toEqual(bytes);
  });

  it('runs a model service on the variant the call names, and agrees with onnxruntime', async () => {
    await server.relay.deploy(new Uint8Array(readFileSync('dist/apps/digits.brume')));
    const { heldout } = loadDigits();
    for (const variant of ['small', 'large']) {
      const session = await ort.InferenceSession.create(`models/digits/${variant}.onnx`);
      for (let i = 0; i < 6; i++) {
        const x = heldout.x.slice(i * 784, (i + 1) * 784);
        const local = await session.run({ pixels: new ort.Tensor('float32', x, [1, 784]) });
        // MessagePack leaves the tensor's bytes inside the request's Buffer, at whatever offset.
        const pixels = { type: 'float32', dims: [1, 784], data: new Uint8Array(x.buffer) };
        const res = await fetch(`${server.relay.url}/api/call/digits/model`, {
          method: 'POST',
          headers: { 'content-type': 'application/msgpack', accept: 'application/msgpack' },
          body: Buffer.from(encode({ rpc: variant, input: { inputs: { pixels } }, qos: {} })),
        });
        expect(res.status).toBe(200);
        const answer = decode(new Uint8Array(await res.arrayBuffer())) as {
          rpc: string;
          value: { outputs: { probs: { data: Uint8Array } } };
        };
        expect(answer.rpc).toBe(variant);
        const probs = new Float32Array(answer.value.outputs.probs.data.slice().buffer);
        expect(Array.from(probs)).toEqual(Array.from(local.probs!.data as Float32Array));
      }
    }
  });

  it('gives the caller a typed error when its Logic fails or runs past its cap, and lives on', async () => {
    const before = cloudOf(server)!.id;
    const hog = await call(server, 'hog', {});
    expect(hog.status).toBeGreaterThanOrEqual(400);
    expect(hog.body.error?.code).toBe('E_LOGIC_MEMORY');
    const loop = await call(server, 'loop', {});
    expect(loop.body.error?.code).toBe('E_LOGIC_TIMEOUT');
    expect(loop.body.error?.message).toContain('300 ms');
    // The same node, still joined, still answering; no call left counted in flight.
    const echo = await call(server, 'echo', 'still here');
    expect(echo.body).toMatchObject({ value: 'still here', node: before });
    expect(server.relay.hub.load().calls).toBe(0);
  });
});

describe('the relay’s limits on its cloud node', () => {
  let server: Server;
  beforeAll(async () => {
    server = await inProcessRelay({
      cloudNode: true,
      apps: [app],
      // The Logic would hang for 5 s; the relay gives up on the call at 400 ms.
      logicCaps: { timeoutMs: 5000 },
      callTimeoutMs: 400,
      limits: { callsPerNode: 1 },
    });
    await until(() => cloudOf(server) !== undefined, 'the cloud node to join', 20_000);
    // The echo's worker thread starts on its first call, which may take longer than 400 ms on a
    // busy machine: warm it until it answers in time.
    await until(
      async () => (await call(server, 'echo', 'warm')).status === 200,
      'the echo Logic to answer within the call timeout',
      30_000,
    );
  }, 60_000);
  afterAll(() => server?.close());

  it('refuses a call past callsPerNode and times out a hanging one, then serves again', async () => {
    const cloud = cloudOf(server)!;
    const hanging = call(server, 'loop', {});
    await until(() => server.relay.hub.load().calls === 1, 'the hanging call to be in flight');
    const refused = await call(server, 'echo', 'too many');
    expect(refused.body.error?.code).toBe('E_LIMIT');
    expect(refused.body.error?.message).toContain('limit 1');
    const timedOut = await hanging;
    expect(timedOut.body.error?.code).toBe('E_TIMEOUT');
    expect(timedOut.body.error?.message).toContain('400 ms');
    // The relay let the call go; its cloud node is still joined and takes the next one.
    expect(server.relay.hub.load().calls).toBe(0);
    const echo = await call(server, 'echo', 'after');
    expect(echo.body).toMatchObject({ value: 'after', node: cloud.id });
  });
});
