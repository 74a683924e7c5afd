// Traces across hops: one trace id, made where a request enters (an HTTP call, with or without
// the caller's W3C traceparent; a page call on a node), travels through a real relay (in this
// process, on a real port) to a node, on through a Logic's nested call to another node, and is
// in the caller's answer, in every trace entry and in every relay log line about the request.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decode, encode } from '../../core/codec';
import { loadOrCreateIdentity, memoryKeyStore } from '../../core/identity';
import type { BrumeNode } from '../../core/node/node';
import { decodeFrame, encodeFrame } from '../../core/protocol';
import type { TraceEntry } from '../../core/runtime';
import { isTraceId, newTraceId, traceIdOf, traceparent } from '../../core/trace';
import type { LogFields, RelayLogger } from '../../relay/server';
import { hopsApp } from '../apps';
import { inProcessRelay } from '../relay-process';
import { testNode } from '../test-node';
import { until } from '../until';

describe('trace ids and traceparent', () => {
  it('makes W3C trace ids and reads only valid traceparents', () => {
    const id = newTraceId();
    expect(isTraceId(id)).toBe(true);
    expect(newTraceId()).not.toBe(id);
    expect(traceIdOf(traceparent(id))).toBe(id);
    const good = `00-${id}-00f067aa0ba902b7-01`;
    expect(traceIdOf(good)).toBe(id);
    // A later version may add fields after the flags; version 00 may not.
    expect(traceIdOf(`01-${id}-00f067aa0ba902b7-01-more`)).toBe(id);
    for (const bad of [
      undefined,
      '',
      `${good}-more`,
      `ff-${id}-00f067aa0ba902b7-01`,
      `00-${'0'.repeat(32)}-00f067aa0ba902b7-01`,
      `00-${id}-${'0'.repeat(16)}-01`,
      `00-${id.toUpperCase()}-00f067aa0ba902b7-01`,
      `00-${id.slice(1)}-00f067aa0ba902b7-01`,
      ['a', 'b'],
      `00-${id}-00f067aa0ba902b7-01${' '.repeat(600)}`,
    ]) {
      expect(traceIdOf(bad), String(bad)).toBeUndefined();
    }
  });
});

describe('trace ids in frames', () => {
  it('are a validated field: a frame with anything but a trace id is refused', () => {
    const call = { t: 'call', id: 1, to: 'a'.repeat(32), app: 'hops', service: 'front' };
    const frame = (traceId: unknown) => ({ ...call, rpc: '', input: 1, qos: {}, traceId });
    const id = newTraceId();
    expect(decodeFrame(encode(frame(id)), 'toRelay')).toMatchObject({ traceId: id });
    for (const bad of ['0'.repeat(32), id.toUpperCase(), `${id}0`, 7]) {
      expect(() => decodeFrame(encode(frame(bad)), 'toRelay'), String(bad)).toThrow(/traceId/);
    }
    const drain = encodeFrame({ t: 'drain', ms: 10_000 });
    expect(decodeFrame(drain, 'toNode')).toEqual({ t: 'drain', ms: 10_000 });
    expect(() => decodeFrame(encode({ t: 'drain', ms: -1 }), 'toNode')).toThrow(/ms/);
  });
});

/** The relay's info lines that carry fields, as pino would get them. */
const lines: { fields: LogFields; message: string }[] = [];
const logger: RelayLogger = {
  info: (f: LogFields | string, message?: string) => {
    if (typeof f !== 'string') lines.push({ fields: f, message: message ?? '' });
  },
  warn() {},
  error() {},
};

let server: Awaited<ReturnType<typeof inProcessRelay>>;
/** `front` runs here: it holds no model, so its call to `classify` must go to `big`. */
let small: BrumeNode;
let big: BrumeNode;
const input = { width: 28, height: 28, pixels: new Uint8Array(784).fill(0).fill(255, 300, 420) };

beforeAll(async () => {
  server = await inProcessRelay({
    heartbeatMs: 200,
    logger,
    apps: [await hopsApp({ frontAlone: true })],
  });
  const ids = [memoryKeyStore(), memoryKeyStore()];
  small = await testNode(server.ws, await loadOrCreateIdentity(ids[0]!, 'small'), {
    runtime: { maxModelBytes: 1 },
    refresh: true,
  });
  big = await testNode(server.ws, await loadOrCreateIdentity(ids[1]!, 'big'), { refresh: true });
  await small.whenJoined();
  await big.whenJoined();
  // `front` alone could run on either; `big` says it is slow at it (its own figures, as its
  // heartbeat reports them), so the relay places it on `small` and the request must hop again.
  for (let i = 0; i < 3; i++) big.runtime.stats.record('hops/front/entry@logic', 60_000);
  await until(
    () =>
      server.relay.hub.nodes().find((n) => n.id === big.nodeId && n.apps.includes('hops'))?.stats[
        'hops/front/entry@logic'
      ],
    'big to report its figure for front',
  );
  await until(
    () => server.relay.hub.nodes().find((n) => n.id === small.nodeId && n.apps.includes('hops')),
    'small to report the hops app',
  );
}, 60_000);
afterAll(async () => {
  small?.close();
  big?.close();
  await server?.close();
});

/** POST /api/call/hops/front in MessagePack, with these headers. */
async function callFront(headers: { traceparent?: string } = {}) {
  const res = await fetch(`${server.relay.url}/api/call/hops/front`, {
    method: 'POST',
    headers: { 'content-type': 'application/msgpack', ...headers },
    body: Buffer.from(encode({ input, qos: { accuracy: 0.96 } })),
  });
  const body = decode(new Uint8Array(await res.arrayBuffer())) as {
    value: { via: string; hops: number };
    node: string;
    traceId: string;
    trace: TraceEntry[];
  };
  return { res, body };
}

describe('a request that hops twice (HTTP → relay → node → relay → node)', () => {
  it('carries the caller traceparent’s id to every hop, entry and relay log line', async () => {
    const id = newTraceId();
    lines.length = 0;
    const { res, body } = await callFront({ traceparent: `00-${id}-00f067aa0ba902b7-01` });
    expect(res.status, JSON.stringify(body)).toBe(200);
    expect(body.value).toMatchObject({ via: 'front', hops: 2 });
    expect(body.node).toBe(small.nodeId);
    // The answer: the same trace, a span of the relay's.
    expect(body.traceId).toBe(id);
    const header = res.headers.get('traceparent')!;
    expect(traceIdOf(header)).toBe(id);
    expect(header).not.toBe(`00-${id}-00f067aa0ba902b7-01`);
    // Every service that ran, on both nodes, says which request it ran for.
    expect(body.trace.map((t) => t.service)).toEqual(['model', 'classify', 'front']);
    expect(body.trace.map((t) => t.traceId)).toEqual([id, id, id]);
    // The relay's lines: placing the nested call, and each hop answered, all with this trace.
    const about = lines.filter((l) => l.fields.trace !== undefined);
    expect(about.map((l) => l.fields.trace)).toEqual(about.map(() => id));
    const hops = about.map((l) => `${l.message}: ${l.fields.caller} → ${l.fields.node}`);
    expect(hops).toEqual([
      `call placed: ${small.nodeId} → ${big.nodeId}`,
      `call answered: ${small.nodeId} → ${big.nodeId}`,
      `call answered: http → ${small.nodeId}`,
    ]);
  });

  it('starts a new trace for a caller without a valid traceparent, and answers it', async () => {
    for (const headers of [{}, { traceparent: 'not-a-traceparent' }]) {
      lines.length = 0;
      const { res, body } = await callFront(headers);
      expect(res.status).toBe(200);
      expect(isTraceId(body.traceId)).toBe(true);
      expect(traceIdOf(res.headers.get('traceparent') ?? undefined)).toBe(body.traceId);
      expect(new Set(body.trace.map((t) => t.traceId))).toEqual(new Set([body.traceId]));
      const about = lines.filter((l) => l.fields.trace !== undefined);
      expect(new Set(about.map((l) => l.fields.trace))).toEqual(new Set([body.traceId]));
      // Placing the nested call may come from small's lease now: both hops are answered here.
      const answered = about.filter((l) => l.message === 'call answered');
      expect(answered.map((l) => l.fields.caller)).toEqual([small.nodeId, 'http']);
    }
  });
});

describe('a page call', () => {
  it('makes the trace at its entry and carries it through the relay', async () => {
    lines.length = 0;
    // `small` holds no model: `classify` goes through the relay to `big`.
    const r = await small.call('hops', 'classify', input, { accuracy: 0.96 });
    expect(r.via).toBe('relay');
    expect(isTraceId(r.traceId)).toBe(true);
    expect(r.trace.map((t) => t.traceId)).toEqual([r.traceId, r.traceId]);
    const traces = lines.filter((l) => l.fields.trace !== undefined).map((l) => l.fields.trace);
    expect(traces).toEqual([r.traceId, r.traceId]);
  });

  it('keeps a trace id the page gives, and refuses one that is not one', async () => {
    const traceId = newTraceId();
    const r = await small.call('hops', 'classify', input, { accuracy: 0.96 }, { traceId });
    expect(r.traceId).toBe(traceId);
    await expect(
      small.call('hops', 'classify', input, {}, { traceId: 'ABC' }),
    ).rejects.toMatchObject({ code: 'E_INPUT', message: expect.stringContaining('opts.traceId') });
  });
});
