// Hostile inputs for the relay fuzz suite (tests/unit/fuzz.test.ts), as fast-check arbitraries:
// HTTP requests, upgrade requests, node frames, PeerJS messages and bundle bytes, each mixing
// random bytes with mutations of what an honest client sends, so cases get past the first check.
import fc from 'fast-check';
import { encode } from '../core/codec';

/** Flips, truncates, splices or repeats bytes of `valid`. */
export function mutated(valid: fc.Arbitrary<Uint8Array>): fc.Arbitrary<Uint8Array> {
  return fc.oneof(
    fc.tuple(valid, fc.nat(), fc.integer({ min: 1, max: 255 })).map(([b, at, x]) => {
      const out = b.slice();
      if (out.length) out[at % out.length]! ^= x;
      return out;
    }),
    fc.tuple(valid, fc.nat()).map(([b, at]) => b.subarray(0, b.length ? at % b.length : 0)),
    fc.tuple(valid, fc.nat(), fc.uint8Array({ maxLength: 64 })).map(([b, at, junk]) => {
      const i = b.length ? at % b.length : 0;
      return new Uint8Array([...b.subarray(0, i), ...junk, ...b.subarray(i)]);
    }),
    fc.tuple(valid, fc.integer({ min: 2, max: 4 })).map(([b, n]) => {
      const out = new Uint8Array(b.length * n);
      for (let i = 0; i < n; i++) out.set(b, i * b.length);
      return out;
    }),
  );
}

/** `levels` nested arrays (or maps) around a nil: tiny bytes, deep structure. */
export function nested(levels: number, map = false): Uint8Array {
  const out = new Uint8Array(map ? levels * 2 + 1 : levels + 1);
  if (map) {
    // fixmap of one entry whose key is 0 and whose value is the next level.
    for (let i = 0; i < levels; i++) out.set([0x81, 0x00], i * 2);
  } else out.fill(0x91, 0, levels);
  out[out.length - 1] = 0xc0;
  return out;
}

const nodeId = fc.string({
  unit: fc.constantFrom(...'0123456789abcdef'),
  minLength: 32,
  maxLength: 32,
});

/** Strings of any Unicode, long enough to reach into error messages and close reasons. */
const text = fc.string({ unit: 'grapheme', maxLength: 60 });

const lineChars = fc.oneof(
  fc.string({ maxLength: 40 }),
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.constantFrom('', ' ', '\r\n', '\0', '%', '%zz', '..', '//:', '\u2028', '\x7f'),
);

/** Request lines and headers: valid-looking, broken, and plain noise. */
export const httpRequest: fc.Arbitrary<Uint8Array> = fc.oneof(
  fc
    .record({
      method: fc.oneof(
        fc.constantFrom('GET', 'POST', 'PUT', 'DELETE', 'OPTIONS', 'HEAD', 'PATCH', 'CONNECT'),
        fc.string({ maxLength: 12 }),
      ),
      path: fc.oneof(
        fc.constantFrom(
          '/',
          '/api/health',
          '/api/apps',
          '/api/call/fuzz/echo',
          '/api/context/fuzz/k',
          '/api/blobs/zz',
          '/api/blobs',
          `/api/blobs/${'0'.repeat(64)}`,
          '/api/nodes',
          '/api/jobs',
          '/api/jobs/0mx63qr8x000xzvq87lgzjty',
          '/api/jobs/0mx63qr8x000xzvq87lgzjty/watch',
          '/admin',
          '*',
          '//:',
          'http://relay/',
        ),
        fc.webPath(),
        lineChars,
      ),
      version: fc.constantFrom('HTTP/1.1', 'HTTP/1.0', 'HTTP/2.0', 'HTTP/9', ''),
      headers: fc.array(
        fc.tuple(
          fc.oneof(
            fc.constantFrom(
              'Content-Length',
              'Content-Type',
              'Transfer-Encoding',
              'Accept',
              'Authorization',
              'Host',
              'Origin',
              'Connection',
            ),
            lineChars,
          ),
          fc.oneof(
            fc.constantFrom(
              '0',
              '-1',
              '99999999999',
              'chunked',
              'application/json',
              'application/msgpack',
              'application/vnd.brume.bundle',
              'Bearer x',
            ),
            lineChars,
          ),
        ),
        { maxLength: 8 },
      ),
      body: fc.oneof(fc.constant(''), fc.json(), lineChars),
    })
    .map(({ method, path, version, headers, body }) => {
      const head = [`${method} ${path} ${version}`, ...headers.map(([k, v]) => `${k}: ${v}`)];
      return Buffer.from(`${head.join('\r\n')}\r\n\r\n${body}`, 'latin1');
    }),
  fc.uint8Array({ maxLength: 2048 }),
);

/** Upgrade requests: the relay's two socket paths and others, with odd or missing headers. */
export const upgrade: fc.Arbitrary<{ bytes: Uint8Array; reset: boolean }> = fc.record({
  bytes: fc
    .record({
      path: fc.oneof(
        fc.constantFrom(
          '/ws',
          '/peerjs/peerjs',
          '/peerjs/peerjs?key=brume&id=00000000000000000000000000000000&token=x',
          '//:',
          '/ws?x=%',
          '*',
          '/peerjs',
        ),
        fc.webPath(),
        lineChars,
      ),
      key: fc.oneof(fc.constant('dGhlIHNhbXBsZSBub25jZQ=='), lineChars),
      version: fc.constantFrom('13', '8', '', 'x'),
      extra: fc.array(
        fc.tuple(
          fc.constantFrom(
            'Origin',
            'Sec-WebSocket-Protocol',
            'Sec-WebSocket-Extensions',
            'Upgrade',
            'Connection',
          ),
          fc.oneof(
            fc.constantFrom(
              'http://evil.example',
              'permessage-deflate; client_max_window_bits=99',
              'a, a',
              'h2c',
            ),
            lineChars,
          ),
        ),
        { maxLength: 4 },
      ),
    })
    .map(({ path, key, version, extra }) => {
      const lines = [
        `GET ${path} HTTP/1.1`,
        'Host: 127.0.0.1',
        'Connection: Upgrade',
        'Upgrade: websocket',
        `Sec-WebSocket-Version: ${version}`,
        `Sec-WebSocket-Key: ${key}`,
        ...extra.map(([k, v]) => `${k}: ${v}`),
      ];
      return Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'latin1');
    }),
  reset: fc.boolean(),
});

const frameTypes = [
  'hello',
  'join',
  'heartbeat',
  'pong',
  'schedule',
  'call',
  'result',
  'error',
  'ctx-op',
  'ctx-sync',
  'ctx-keys',
  'ctx-unsent',
] as const;

/** Maps shaped like node frames whose fields are anything: they pass decoding, not the schema. */
const wrongShape = fc
  .record({
    t: fc.oneof(fc.constantFrom(...frameTypes), fc.anything()),
    fields: fc.dictionary(
      fc.oneof(
        fc.constantFrom(
          'id',
          'to',
          'app',
          'service',
          'rpc',
          'input',
          'qos',
          'op',
          'value',
          'v',
          'lease',
          'exclude',
        ),
        text,
      ),
      fc.anything({ maxDepth: 3, withTypedArray: true }),
      { maxKeys: 6 },
    ),
  })
  .map(({ t, fields }) => ({ ...fields, t }));

/** Fields an honest node might send, for frames that pass the schema with odd values. */
const plausible = fc.oneof(
  fc.record({
    t: fc.constant('schedule'),
    id: fc.nat(),
    app: fc.constantFrom('fuzz', 'digits', 'nope'),
    service: fc.constantFrom('echo', 'x'),
    qos: fc.record(
      {
        latencyMs: fc.double(),
        accuracy: fc.double(),
        privacy: fc.oneof(fc.constant('device'), nodeId),
      },
      { requiredKeys: [] },
    ),
    // A node that takes leases (§5.3.2), asking as after its own miss or for a retry.
    lease: fc.oneof(fc.boolean(), fc.anything({ maxDepth: 1 })),
    exclude: fc.array(nodeId, { maxLength: 3 }),
  }),
  fc.record({
    t: fc.constant('call'),
    id: fc.nat(),
    to: fc.oneof(fc.constant(''), nodeId),
    app: fc.constant('fuzz'),
    service: fc.constant('echo'),
    rpc: fc.constantFrom('echo', '', 'nope'),
    input: fc.anything({ maxDepth: 4, withTypedArray: true }),
    qos: fc.constant({}),
  }),
  fc.record({
    t: fc.constantFrom('result', 'error'),
    id: fc.nat(),
    value: fc.anything({ maxDepth: 4 }),
    rpc: fc.string({ maxLength: 8 }),
    ms: fc.double(),
    error: fc.record({ code: fc.string(), message: fc.string() }),
  }),
  fc.record({
    t: fc.constant('heartbeat'),
    load: fc.record({ queue: fc.integer(), maxConcurrency: fc.integer() }),
    apps: fc.array(fc.string({ maxLength: 70 }), { maxLength: 5 }),
    models: fc.dictionary(fc.string(), fc.array(fc.string()), { maxKeys: 3 }),
    stats: fc.dictionary(fc.string(), fc.record({ count: fc.double(), p50: fc.double() }), {
      maxKeys: 3,
    }),
    paused: fc.boolean(),
  }),
  fc.record({
    t: fc.constant('ctx-sync'),
    cursor: fc.integer(),
    apps: fc.array(fc.constantFrom('fuzz', 'x'), { maxLength: 3 }),
  }),
  fc.record({
    t: fc.constant('ctx-keys'),
    id: fc.nat(),
    keys: fc.array(fc.string(), { maxLength: 40 }),
  }),
  fc.record({ t: fc.constant('pong'), ts: fc.double() }),
);

const msgpack = (a: fc.Arbitrary<unknown>) =>
  a.chain((v) => {
    try {
      return fc.constant(encode(v));
    } catch {
      // A value the encoder refuses (too deep, cyclic) makes a bare nil frame instead.
      return fc.constant(new Uint8Array([0xc0]));
    }
  });

/** One WebSocket message to /ws: binary MessagePack of every kind, or a text frame. */
export type WsMessage = { data: Uint8Array | string; binary: boolean };

export const wsMessage = (oversize: number): fc.Arbitrary<WsMessage> =>
  fc.oneof(
    { weight: 4, arbitrary: msgpack(wrongShape).map(bin) },
    { weight: 4, arbitrary: msgpack(plausible).map(bin) },
    { weight: 3, arbitrary: mutated(msgpack(fc.oneof(wrongShape, plausible))).map(bin) },
    { weight: 2, arbitrary: fc.uint8Array({ maxLength: 512 }).map(bin) },
    {
      weight: 2,
      arbitrary: fc
        .tuple(fc.integer({ min: 100, max: 200_000 }), fc.boolean())
        .map(([n, map]) => bin(nested(n, map))),
    },
    // A call whose input is nested past the encoder's depth: decoded here, cannot be passed on.
    {
      weight: 1,
      arbitrary: fc.integer({ min: 101, max: 5000 }).map((n) => bin(deepCall(n))),
    },
    {
      weight: 1,
      arbitrary: fc.string({ maxLength: 200 }).map((s) => ({ data: s, binary: false })),
    },
    { weight: 1, arbitrary: fc.constant(bin(new Uint8Array(oversize))) },
  );

function bin(data: Uint8Array): WsMessage {
  return { data, binary: true };
}

/** A call frame to no one in particular whose input is `levels` nested arrays. */
function deepCall(levels: number): Uint8Array {
  const head = encode({ t: 'call', id: 1, to: '', app: 'fuzz', service: 'echo', rpc: '', qos: {} });
  return new Uint8Array([head[0]! + 1, ...head.subarray(1), ...encode('input'), ...nested(levels)]);
}

const peerTypes = ['HEARTBEAT', 'OFFER', 'ANSWER', 'CANDIDATE', 'LEAVE', 'EXPIRE', 'OPEN'];

/** One PeerJS signalling message; `ids` are joined nodes' ids a message may be addressed to. */
export const peerMessage = (ids: string[]): fc.Arbitrary<WsMessage> =>
  fc.oneof(
    {
      weight: 4,
      arbitrary: fc
        .record(
          {
            type: fc.oneof(fc.constantFrom(...peerTypes), fc.anything()),
            dst: fc.oneof(fc.constantFrom(...ids), nodeId, fc.anything()),
            src: fc.anything(),
            payload: fc.anything({ maxDepth: 3 }),
          },
          { requiredKeys: [] },
        )
        .map((m) => ({ data: JSON.stringify(m) ?? 'null', binary: false })),
    },
    { weight: 2, arbitrary: fc.json().map((s) => ({ data: s, binary: false })) },
    {
      weight: 1,
      arbitrary: fc.string({ maxLength: 300 }).map((s) => ({ data: s, binary: false })),
    },
    { weight: 1, arbitrary: fc.uint8Array({ maxLength: 300 }).map(bin) },
    {
      weight: 1,
      arbitrary: fc.integer({ min: 100, max: 10_000 }).map((n) => ({
        data: `${'['.repeat(n)}${']'.repeat(n)}`,
        binary: false,
      })),
    },
    { weight: 1, arbitrary: fc.constant({ data: 'x'.repeat(65 * 1024), binary: false }) },
  );

/** Bundle uploads: random bytes, wrong MessagePack shapes, and mutations of a valid bundle. */
export const bundleBytes = (valid: Uint8Array): fc.Arbitrary<Uint8Array> =>
  fc.oneof(
    { weight: 1, arbitrary: fc.uint8Array({ maxLength: 4096 }) },
    {
      weight: 2,
      arbitrary: msgpack(
        fc.record(
          {
            format: fc.oneof(fc.constant('brume-bundle/1'), fc.anything()),
            manifest: fc.anything({ maxDepth: 4 }),
            files: fc.oneof(
              fc.dictionary(fc.string(), fc.uint8Array({ maxLength: 64 })),
              fc.anything(),
            ),
          },
          { requiredKeys: [] },
        ),
      ),
    },
    { weight: 4, arbitrary: mutated(fc.constant(valid)) },
  );
