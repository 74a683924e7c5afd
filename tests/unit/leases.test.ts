// The relay's lease table (relay/hub/leases.ts) on its own: bounds per node and in all, expiry,
// a lease asked again replacing the old one, what revokes a lease ("materially") and what not.
import { describe, expect, it } from 'vitest';
import type { NodeRecord } from '../../core/api';
import type { ToNode } from '../../core/protocol';
import { createLeases, type LeaseRequest } from '../../relay/hub/leases';
import { id, node } from '../node-view';

/** A connected node as the relay's registry holds it: the placement view plus what joining adds. */
function record(n: number, over: Partial<NodeRecord> = {}): NodeRecord {
  return {
    ...node(n, {
      maxConcurrency: 2,
      models: { 'digits/model': ['small', 'large'] },
      stats: { 'digits/model/large@wasm': { count: 5, p50: 2 } },
    }),
    measured: {},
    caps: { backends: [{ name: 'wasm', detail: 'test' }] },
    joinedAt: 0,
    lastSeen: 0,
    ...over,
  };
}

const ask = (latencyMs: number, over: Partial<LeaseRequest> = {}): LeaseRequest => ({
  app: 'digits',
  service: 'classify',
  rpc: '',
  qos: { latencyMs },
  exclude: [],
  ...over,
});

function table(options: { perNode?: number; total?: number } = {}) {
  let clock = 0;
  const sent: { to: string; frame: ToNode }[] = [];
  const leases = createLeases({
    ms: 1000,
    ...options,
    send: (to, frame) => sent.push({ to, frame }),
    now: () => clock,
  });
  return { leases, sent, tick: (ms: number) => (clock += ms) };
}

describe('the relay lease table', () => {
  it('grants at most perNode leases to one node and total in all, and frees them on expiry', () => {
    const { leases, tick } = table({ perNode: 3, total: 5 });
    const target = record(9);
    const granted = (holder: string, k: number) => leases.grant(holder, ask(k), target);
    for (let k = 1; k <= 3; k++) expect(granted(id(1), k)).toMatchObject({ ms: 1000 });
    expect(granted(id(1), 4)).toBeUndefined();
    // The same key again replaces its lease: not a fourth.
    expect(granted(id(1), 2)).toBeDefined();
    expect(leases.stats()).toMatchObject({ held: 3, holders: 1, refused: 1 });
    expect(granted(id(2), 1)).toBeDefined();
    expect(granted(id(2), 2)).toBeDefined();
    expect(granted(id(3), 1)).toBeUndefined(); // 5 in all
    expect(leases.stats()).toMatchObject({ held: 5, refused: 2 });
    tick(1000);
    expect(leases.stats().held).toBe(0);
    expect(granted(id(3), 1)).toBeDefined();
  });

  it('covers only first placements of calls that are not verified', () => {
    const { leases } = table();
    const target = record(9);
    const me = id(1);
    expect(leases.grant(me, ask(5, { exclude: [me] }), target)).toBeDefined();
    expect(leases.grant(me, ask(5, { exclude: [me, id(7)] }), target)).toBeUndefined();
    expect(leases.grant(me, ask(5, { qos: { verify: true } }), target)).toBeUndefined();
    expect(leases.grant('', ask(5), target)).toBeUndefined();
    // The key says which QoS class: the call's QoS without verify.
    expect(leases.grant(me, ask(5, { qos: { accuracy: 0.9 } }), target)).toMatchObject({
      app: 'digits',
      service: 'classify',
      rpc: '',
      qos: { accuracy: 0.9 },
    });
  });

  it('revokes every lease to a node that moved materially, one frame per holder', () => {
    const { leases, sent } = table();
    const target = record(9);
    const a = leases.grant(id(1), ask(1), target)!;
    const b = leases.grant(id(1), ask(2), target)!;
    const c = leases.grant(id(2), ask(1), target)!;
    leases.grant(id(2), ask(3), record(8)); // another node: stays
    // Better figures, or worse by less than the thresholds, keep the leases.
    for (const over of [
      { queue: 1 }, // 0.5 a slot more
      { stats: { 'digits/model/large@wasm': { count: 9, p50: 2.9 } } }, // +0.9 ms
      { stats: { 'digits/model/large@wasm': { count: 9, p50: 0.5 } } },
      { maxConcurrency: 4 },
      { apps: ['digits', 'other'] },
    ]) {
      leases.heartbeat({ ...target, ...over });
      expect(sent, JSON.stringify(over)).toEqual([]);
    }
    leases.heartbeat({ ...target, queue: 2 });
    expect(sent).toEqual([
      {
        to: id(1),
        frame: {
          t: 'lease-revoke',
          node: id(9),
          ids: [a.id, b.id],
          reason: 'its load rose from 0.00 to 1.00 per slot',
        },
      },
      {
        to: id(2),
        frame: { t: 'lease-revoke', node: id(9), ids: [c.id], reason: expect.any(String) },
      },
    ]);
    expect(leases.stats()).toMatchObject({ held: 1, revoked: 3 });
  });

  it('names each material move', () => {
    const moves: [Partial<NodeRecord>, RegExp][] = [
      [{ paused: true }, /paused/],
      [{ quarantined: true }, /quarantined/],
      [{ maxConcurrency: 1 }, /1 calls at once, down from 2/],
      [{ backends: ['cpu'] }, /backend/],
      [{ apps: [] }, /no longer has app digits/],
      [{ models: { 'digits/model': ['small'] } }, /no longer holds digits\/model\/large/],
      [{ stats: { 'digits/model/large@wasm': { count: 9, p50: 3.5 } } }, /p50 rose from 2.00/],
    ];
    for (const [over, reason] of moves) {
      const { leases, sent } = table();
      const target = record(9);
      leases.grant(id(1), ask(1), target);
      leases.heartbeat({ ...target, ...over });
      expect(sent).toHaveLength(1);
      expect((sent[0]!.frame as { reason: string }).reason).toMatch(reason);
    }
  });

  it('on leaving: leases to the node are revoked, those it held forgotten without a word', () => {
    const { leases, sent, tick } = table();
    leases.grant(id(1), ask(1), record(9));
    leases.grant(id(9), ask(1), record(1));
    tick(10);
    leases.left(id(9));
    expect(sent.map((s) => [s.to, s.frame.t])).toEqual([[id(1), 'lease-revoke']]);
    expect(leases.stats().held).toBe(0);
    // An expired lease is not worth a frame.
    leases.grant(id(1), ask(1), record(9));
    tick(1000);
    leases.revoke(id(9), 'paused');
    expect(sent).toHaveLength(1);
  });

  it('refuses a lease longer than a minute or a bound past what one frame names', () => {
    const send = () => {};
    expect(() => createLeases({ ms: 60_001, send })).toThrow(/leaseMs/);
    expect(() => createLeases({ ms: 1000, perNode: 1025, send })).toThrow(/per node/);
    expect(() => createLeases({ ms: 1000, total: 0, send })).toThrow(/in all/);
    expect(createLeases({ ms: 0, send }).grant(id(1), ask(1), record(9))).toBeUndefined();
  });
});
