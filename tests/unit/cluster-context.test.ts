// The cluster context (relay/cluster/context.ts) on a real redis-server (tests/redis-process.ts):
// relays sharing one Redis see each other's writes at the same positions; a node's cursor from
// one relay catches up on another; a kill -9 of Redis loses no acknowledged write; Redis down
// refuses writes with E_UNAVAILABLE naming Redis, and everything recovers by itself; garbage in
// the stream is skipped with a warning; compaction keeps the state and bounds the stream.
import { describe, expect, it } from 'vitest';
import { encode } from '../../core/codec';
import { type ContextOp, catchUpFor } from '../../core/context/replica';
import { UnavailableError } from '../../core/errors';
import { type ClusterContext, openClusterContext } from '../../relay/cluster/context';
import { openRedis, type RedisLink } from '../../relay/cluster/redis';
import { useRedis } from '../redis-suite';
import { until } from '../until';

const shared = useRedis();

const { closers } = shared;

interface Relay {
  link: RedisLink;
  ctx: ClusterContext;
  warnings: string[];
  remote: { op: ContextOp; seq: number }[];
}

/** `n` relays on one prefix of the shared Redis. */
async function cluster(n: number, extra: { compactEntries?: number } = {}, prefix?: string) {
  const p = prefix ?? shared.prefix('c');
  const relays: Relay[] = [];
  for (let i = 0; i < n; i++) relays.push(await relay(`r${i}`, p, extra));
  return { prefix: p, relays };
}

async function relay(id: string, prefix: string, extra: { compactEntries?: number } = {}) {
  const link = await openRedis(shared.redis.url, { prefix, commandTimeoutMs: 5000 });
  const warnings: string[] = [];
  const ctx = await openClusterContext(link, {
    relayId: id,
    warn: (m) => warnings.push(m),
    blockMs: 500,
    ...extra,
  });
  const remote: Relay['remote'] = [];
  ctx.onRemote((op, seq) => remote.push({ op, seq }));
  closers.push(async () => {
    await ctx.close();
    await link.close();
  });
  return { link, ctx, warnings, remote };
}

let ops = 0;
function put(key: string, value: unknown, app = 'demo'): ContextOp {
  ops++;
  return {
    opId: `op-${ops}-${Math.random().toString(36).slice(2)}`,
    app,
    key,
    scope: 'app',
    stamp: { wall: Date.now(), count: ops, node: `n${ops % 3}` },
    kind: 'put',
    value: encode(value),
  };
}
const errorOf = (p: Promise<unknown>) =>
  p.then(
    () => undefined,
    (e: unknown) => e,
  );
const read = (r: Relay, key: string) => r.ctx.replica.get('demo', key, {}, Date.now());
/** A key's value as bytes, or undefined. */
const valueAt = (r: Relay, key: string) => {
  const v = read(r, key)?.value;
  return v && Buffer.from(v);
};
const bytes = (v: unknown) => Buffer.from(encode(v));
/** A replica's state, comparable whether its byte fields are Buffers or Uint8Arrays. */
const stateOf = (r: Relay) =>
  r.ctx.replica
    .state()
    .map((op) => Buffer.from(encode(op)))
    .sort(Buffer.compare);

describe('relays sharing a Redis', () => {
  it('see each other’s writes at the same positions, told through onRemote', async () => {
    const { relays } = await cluster(3);
    const [a, b, c] = relays as [Relay, Relay, Relay];
    const seqs: number[] = [];
    for (let i = 0; i < 30; i++) {
      const r = relays[i % 3]!;
      seqs.push(await r.ctx.accept(put(`k${i % 7}`, i), ''));
    }
    expect(seqs.every((s) => s > 0)).toBe(true);
    expect(new Set(seqs).size).toBe(30);
    const last = Math.max(...seqs);
    await until(() => relays.every((r) => r.ctx.replica.cursor === last), 'every relay at the end');
    for (const r of relays) {
      const log = r.ctx.replica.since(0);
      expect('ops' in log && log.ops.map((e) => e.seq)).toEqual([...seqs].sort((x, y) => x - y));
    }
    // Each relay heard through onRemote exactly the writes of the two others, in order.
    expect(a.remote.map((e) => e.seq)).toEqual(seqs.filter((_, i) => i % 3 !== 0));
    expect(b.remote.map((e) => e.seq)).toEqual(seqs.filter((_, i) => i % 3 !== 1));
    expect(c.remote.map((e) => e.seq)).toEqual(seqs.filter((_, i) => i % 3 !== 2));
    expect(valueAt(c, 'k0')).toEqual(bytes(28));
    // The same write again, through another relay: a duplicate, 0, nothing new.
    const dup = put('dup', 1);
    expect(await a.ctx.accept(dup, '')).toBeGreaterThan(0);
    await until(() => b.ctx.replica.has(dup.opId), 'b to read it');
    expect(await b.ctx.accept(dup, '')).toBe(0);
  });

  it('concurrent writes of one key converge on every relay to the greater stamp', async () => {
    const { relays } = await cluster(2);
    const [a, b] = relays as [Relay, Relay];
    const older = { ...put('race', 'old'), stamp: { wall: 1000, count: 0, node: 'x' } };
    const newer = { ...put('race', 'new'), stamp: { wall: 1000, count: 1, node: 'x' } };
    const [sa, sb] = await Promise.all([b.ctx.accept(newer, ''), a.ctx.accept(older, '')]);
    const end = Math.max(sa, sb);
    await until(() => a.ctx.replica.cursor >= end && b.ctx.replica.cursor >= end, 'both read');
    expect(valueAt(a, 'race')).toEqual(bytes('new'));
    expect(valueAt(b, 'race')).toEqual(bytes('new'));
  });

  it('a node that moves from one relay to another catches up: nothing lost, nothing twice', async () => {
    const { relays } = await cluster(2);
    const [a, b] = relays as [Relay, Relay];
    for (let i = 0; i < 5; i++) await a.ctx.accept(put(`m${i}`, i), '');
    const cursor = a.ctx.replica.cursor; // what a node on relay A has seen
    const later: number[] = [];
    for (let i = 5; i < 12; i++) later.push(await a.ctx.accept(put(`m${i}`, i), ''));
    await until(() => b.ctx.replica.cursor === a.ctx.replica.cursor, 'b to read them');
    const parts = catchUpFor(b.ctx.replica, { cursor }, (op) => op);
    expect(parts).toHaveLength(1);
    expect(parts[0]!.ops.map((op) => op.key)).toEqual(['m5', 'm6', 'm7', 'm8', 'm9', 'm10', 'm11']);
    expect(parts[0]!.cursor).toBe(Math.max(...later));
  });

  it('a relay started later loads the snapshot and the stream, at the same positions', async () => {
    const { prefix, relays } = await cluster(1, { compactEntries: 10 });
    const [a] = relays as [Relay];
    for (let i = 0; i < 25; i++) await a.ctx.accept(put(`s${i % 4}`, i), '');
    expect(await a.ctx.compact()).toBe(true);
    for (let i = 25; i < 30; i++) await a.ctx.accept(put(`s${i % 4}`, i), '');
    const late = await relay('late', prefix);
    expect(late.ctx.replica.cursor).toBe(a.ctx.replica.cursor);
    expect(stateOf(late)).toEqual(stateOf(a));
    // Its next write is numbered after, on both.
    const before = a.ctx.replica.cursor;
    const seq = await late.ctx.accept(put('after', 1), '');
    expect(seq).toBeGreaterThan(before);
    await until(() => a.ctx.replica.cursor === seq, 'a to read it');
    expect(a.remote.at(-1)?.seq).toBe(seq);
  });
});

describe('compaction', () => {
  it('keeps the state and bounds the stream, one relay at a time', async () => {
    const { prefix, relays } = await cluster(2, { compactEntries: 20 });
    const [a, b] = relays as [Relay, Relay];
    for (let i = 0; i < 200; i++) await relays[i % 2]!.ctx.accept(put(`c${i % 10}`, i), '');
    await until(() => b.ctx.replica.cursor === a.ctx.replica.cursor, 'both at the end');
    await until(
      async () => (await a.link.client.xlen(`${prefix}ctx:log`)) <= 60,
      'the stream to be trimmed',
    );
    expect(a.ctx.files().generation + b.ctx.files().generation).toBeGreaterThan(0);
    const fresh = await relay('fresh', prefix);
    expect(fresh.ctx.replica.cursor).toBe(a.ctx.replica.cursor);
    expect(stateOf(fresh)).toEqual(stateOf(a));
    expect(valueAt(fresh, 'c9')).toEqual(bytes(199));
  });
});

describe('Redis failing', () => {
  it('kill -9 and a restart from its AOF loses no acknowledged write', async () => {
    const { prefix, relays } = await cluster(1);
    const [a] = relays as [Relay];
    const acked: ContextOp[] = [];
    // Writes one after another until one is refused (Redis gone).
    const writing = (async () => {
      for (let i = 0; ; i++) {
        const op = put(`w${i}`, i);
        try {
          if (await a.ctx.accept(op, '')) acked.push(op);
        } catch (e) {
          return e;
        }
      }
    })();
    await until(() => acked.length >= 20, 'some writes acknowledged');
    await shared.redis.kill();
    expect(await writing).toBeInstanceOf(UnavailableError);
    await shared.redis.restart();
    const after = await relay('after', prefix);
    for (const op of acked) expect(after.ctx.replica.has(op.opId)).toBe(true);
    // The first relay reads again by itself and takes writes again.
    await until(() => a.ctx.failed() === undefined, 'the reader to resume');
    await until(
      () =>
        a.ctx.accept(put('again', 1), '').then(
          () => true,
          () => false,
        ),
      'a write to be taken again',
    );
  });

  it('down: writes refused with E_UNAVAILABLE naming Redis, reads served; then it recovers', async () => {
    const { relays } = await cluster(2);
    const [a, b] = relays as [Relay, Relay];
    await a.ctx.accept(put('before', 1), '');
    await until(() => read(b, 'before') !== undefined, 'b to read it');
    await shared.redis.kill();
    const e = await errorOf(a.ctx.accept(put('during', 2), ''));
    expect(e).toBeInstanceOf(UnavailableError);
    expect((e as Error).message).toMatch(/Redis at .* is unreachable/);
    expect(read(a, 'during')).toBeUndefined();
    expect(valueAt(a, 'before')).toEqual(bytes(1));
    await until(() => a.ctx.failed() !== undefined, 'the reader to notice');
    await shared.redis.restart();
    const seq = await until(
      () => a.ctx.accept(put('after', 3), '').catch(() => 0),
      'a write to be taken again',
    );
    await until(() => b.ctx.replica.cursor >= seq, 'b to read it');
    expect(valueAt(b, 'after')).toEqual(bytes(3));
    expect(b.remote.at(-1)?.op.key).toBe('after');
  });
});

describe('garbage in the stream', () => {
  it('is skipped with a warning, the relays go on', async () => {
    const { prefix, relays } = await cluster(2);
    const [a, b] = relays as [Relay, Relay];
    const key = `${prefix}ctx:log`;
    await a.link.client.xadd(key, '*', 'seq', 'x', 'op', 'nope');
    await a.link.client.xadd(key, '*', 'seq', '999999', 'op', Buffer.from([0xc1, 0xff]));
    await a.link.client.xadd(key, '*', 'bind', 'garbage');
    const seq = await a.ctx.accept(put('fine', 1), '');
    await until(() => b.ctx.replica.cursor >= seq, 'b to read past the garbage');
    expect(valueAt(b, 'fine')).toEqual(bytes(1));
    expect(b.warnings.filter((w) => w.includes('skipped')).length).toBeGreaterThanOrEqual(3);
    const late = await relay('late', prefix);
    expect(valueAt(late, 'fine')).toEqual(bytes(1));
  });
});

describe('agreement keys', () => {
  it('bound on one relay are found on another', async () => {
    const { relays } = await cluster(2);
    const [a, b] = relays as [Relay, Relay];
    const binding = {
      publicKey: 'pk-1',
      agreementKey: new Uint8Array(65).fill(4),
      signature: new Uint8Array(64).fill(9),
    };
    a.ctx.bind(binding);
    await until(() => b.ctx.agreements(['pk-1']).length === 1, 'b to know it');
    expect(Buffer.from(b.ctx.agreements(['pk-1'])[0]!.agreementKey)).toEqual(
      Buffer.from(binding.agreementKey),
    );
  });
});
