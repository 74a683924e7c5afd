import { describe, expect, it } from 'vitest';
import { encode } from '../../core/codec';
import { ProtocolError } from '../../core/errors';
import {
  chunk,
  decodeFrame,
  encodeFrame,
  frameLimits,
  type PeerFrame,
  Reassembler,
  type ToNode,
  type ToRelay,
} from '../../core/protocol';

const node = 'a'.repeat(32);

describe('frames', () => {
  it('round-trips every node → relay frame', () => {
    const frames: ToRelay[] = [
      {
        t: 'hello',
        v: 1,
        role: 'dew',
        publicKey: 'k',
        caps: { backends: [{ name: 'wasm', detail: '1 thread' }] },
      },
      { t: 'join', nonce: new Uint8Array(32).fill(7), signature: new Uint8Array(64).fill(1) },
      {
        t: 'heartbeat',
        load: { queue: 2, maxConcurrency: 1 },
        apps: ['digits'],
        models: { 'digits/model': ['small', 'large'] },
        stats: { 'digits/model/small@wasm': { count: 3, p50: 0.2 } },
        paused: false,
      },
      { t: 'pong', ts: 12.5 },
      {
        t: 'schedule',
        id: 1,
        app: 'digits',
        service: 'classify',
        qos: { accuracy: 0.95, privacy: 'device' },
        exclude: [node],
      },
      {
        t: 'call',
        id: 2,
        to: node,
        app: 'digits',
        service: 'classify',
        rpc: '',
        input: { pixels: new Uint8Array([1, 2]) },
        qos: {},
      },
      { t: 'result', id: 3, value: { digit: 7 }, rpc: 'large', ms: 1.5 },
      {
        t: 'error',
        id: 4,
        error: { code: 'E_QOS', message: 'no', constraint: 'accuracy', best: 0.97 },
      },
    ];
    for (const f of frames) expect(decodeFrame(encodeFrame(f), 'toRelay')).toEqual(f);
  });

  it('refuses garbage, unknown types and bad fields with a reason', () => {
    const bad = (bytes: Uint8Array) => () => decodeFrame(bytes, 'toRelay');
    expect(bad(new Uint8Array([0xc1, 0xff, 0x00]))).toThrow(ProtocolError);
    expect(bad(new Uint8Array([0xc1]))).toThrow(/undecodable frame/);
    expect(bad(encode({ t: 'launch-missiles' }))).toThrow(/invalid "launch-missiles" frame/);
    expect(bad(encode([1, 2, 3]))).toThrow(ProtocolError);
    expect(bad(encode({ t: 'schedule', id: -1, app: 'digits', service: 'x', qos: {} }))).toThrow(
      /id/,
    );
    expect(bad(encode({ t: 'schedule', id: 1, app: 'Digits!', service: 'x', qos: {} }))).toThrow(
      /app/,
    );
    expect(
      bad(encode({ t: 'schedule', id: 1, app: 'a', service: 'x', qos: { accuracy: 2 } })),
    ).toThrow(/qos\.accuracy/);
    expect(
      bad(
        encode({
          t: 'call',
          id: 1,
          to: 'not-a-node',
          app: 'a',
          service: 'b',
          rpc: '',
          input: 1,
          qos: {},
        }),
      ),
    ).toThrow(/to/);
    // A relay-only frame sent by a node is not a node frame.
    expect(
      bad(encode({ t: 'welcome', nodeId: node, role: 'dew', trusted: true, heartbeatMs: 1000 })),
    ).toThrow(ProtocolError);
  });

  it('bounds what it decodes', () => {
    const huge = encode({ t: 'pong', ts: 1, pad: new Uint8Array(frameLimits.maxBytes + 1) });
    expect(() => decodeFrame(huge, 'toRelay')).toThrow(/exceeds/);
    const longStr = encode({
      t: 'hello',
      v: 1,
      role: 'dew',
      publicKey: 'x'.repeat(frameLimits.maxStrLength + 1),
      caps: { backends: [] },
    });
    expect(() => decodeFrame(longStr, 'toRelay')).toThrow(ProtocolError);
  });

  it('does not let a frame pollute prototypes', () => {
    const f = decodeFrame(
      encode({ t: 'pong', ts: 1, ['__proto__']: { polluted: true } }),
      'toRelay',
    );
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(f).toEqual({ t: 'pong', ts: 1 });
  });
});

describe('lease frames (§5.3.2)', () => {
  const lease = { id: 4, ms: 2000, app: 'digits', service: 'classify', rpc: '', qos: {} };
  const decision = {
    t: 'decision',
    id: 1,
    node,
    rpc: 'classify',
    variant: 'large',
    estimateMs: 1.5,
    reason: 'r',
  } as const;
  const revoke: ToNode = { t: 'lease-revoke', node, ids: [4, 5], reason: 'the node was paused' };

  it('round-trip: a schedule that takes a lease, a decision with one, a revocation', () => {
    const ask: ToRelay = {
      t: 'schedule',
      id: 1,
      app: 'digits',
      service: 'x',
      qos: {},
      lease: true,
    };
    expect(decodeFrame(encodeFrame(ask), 'toRelay')).toEqual(ask);
    for (const f of [{ ...decision, lease }, decision, revoke] as ToNode[])
      expect(decodeFrame(encodeFrame(f), 'toNode')).toEqual(f);
  });

  it('refuses every bad field, naming it', () => {
    const bad = (f: unknown) => () => decodeFrame(encode(f), 'toNode');
    const withLease = (over: Record<string, unknown>) => ({
      ...decision,
      lease: { ...lease, ...over },
    });
    expect(bad(withLease({ ms: 0 }))).toThrow(/lease\.ms/);
    expect(bad(withLease({ ms: 60_001 }))).toThrow(/lease\.ms/);
    expect(bad(withLease({ ms: 1.5 }))).toThrow(/lease\.ms/);
    expect(bad(withLease({ id: -1 }))).toThrow(/lease\.id/);
    expect(bad(withLease({ app: 'Nope!' }))).toThrow(/lease\.app/);
    expect(bad(withLease({ qos: { verify: true } }))).toThrow(/lease\.qos/);
    expect(bad(withLease({ extra: 1 }))).toThrow(/lease/);
    expect(bad({ ...revoke, ids: [] })).toThrow(/ids/);
    expect(bad({ ...revoke, ids: Array.from({ length: 1025 }, (_, i) => i) })).toThrow(/ids/);
    expect(bad({ ...revoke, ids: [1.5] })).toThrow(/ids/);
    expect(bad({ ...revoke, node: 'nobody' })).toThrow(/node/);
    expect(bad({ ...revoke, reason: 'x'.repeat(257) })).toThrow(/reason/);
    // Relay → node only: a node that sends one is refused.
    expect(() => decodeFrame(encodeFrame(revoke), 'toRelay')).toThrow(ProtocolError);
    expect(() =>
      decodeFrame(
        encode({ t: 'schedule', id: 1, app: 'a', service: 'b', qos: {}, lease: 1 }),
        'toRelay',
      ),
    ).toThrow(/lease/);
  });
});

describe('chunks', () => {
  it('splits and reassembles payloads of any size', () => {
    for (const size of [0, 1, 65_536, 65_537, 300_000]) {
      const bytes = Uint8Array.from({ length: size }, (_, i) => (i * 31) & 0xff);
      const r = new Reassembler();
      const parts = [...chunk(9, bytes)];
      expect(parts.length).toBe(Math.max(1, Math.ceil(size / 65_536)));
      let out: Uint8Array | undefined;
      for (const p of parts) {
        const decoded = decodeFrame(encodeFrame(p), 'peer') as Extract<PeerFrame, { t: 'chunk' }>;
        out = r.add(decoded);
      }
      expect(out).toEqual(bytes);
    }
  });

  it('refuses gaps and oversized messages', () => {
    const parts = [...chunk(1, new Uint8Array(200_000))] as Extract<PeerFrame, { t: 'chunk' }>[];
    const r = new Reassembler();
    r.add(parts[0]!);
    expect(() => r.add(parts[2]!)).toThrow(/arrived where 1 was expected/);
    const small = new Reassembler(100_000);
    small.add(parts[0]!);
    expect(() => small.add(parts[1]!)).toThrow(/exceeds 100000 bytes/);
  });
});
