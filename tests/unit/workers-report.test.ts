// What a node reports of its worker pools (heartbeat `workers`, `scaled`; PROTOCOL.md §5.2): the
// frame's bounds, the relay's bounded history of changes per node (relay/hub/registry.ts), and
// the flags of `brume node` that set its pools.
import { describe, expect, it } from 'vitest';
import type { NodeRecord } from '../../core/api';
import { encode } from '../../core/codec';
import { ProtocolError } from '../../core/errors';
import { type PlacementRequest, place } from '../../core/placement';
import { decodeFrame, encodeFrame, type ToRelay } from '../../core/protocol';
import { nodeOptions } from '../../relay/cli/node';
import { recordWorkers, WORKERS_HISTORY } from '../../relay/hub/registry';
import { id, node } from '../node-view';

const beat = (extra: Record<string, unknown>) => ({
  t: 'heartbeat',
  load: { queue: 0, maxConcurrency: 1 },
  apps: ['digits'],
  models: {},
  stats: {},
  paused: false,
  ...extra,
});

describe('the heartbeat workers field', () => {
  it('round-trips workers per service and the counted scale events', () => {
    const f = beat({ workers: { 'digits/classify': 3 }, scaled: { grows: 4, shrinks: 1 } });
    expect(decodeFrame(encodeFrame(f as ToRelay), 'toRelay')).toEqual(f);
  });

  it('refuses counts that are not whole, negative or too many, and too many services', () => {
    const bad = (extra: Record<string, unknown>) => () =>
      decodeFrame(encode(beat(extra)), 'toRelay');
    expect(bad({ workers: { 'digits/classify': -1 } })).toThrow(ProtocolError);
    expect(bad({ workers: { 'digits/classify': 1.5 } })).toThrow(/workers/);
    expect(bad({ workers: { 'digits/classify': 5000 } })).toThrow(/workers/);
    expect(bad({ workers: { ['x'.repeat(200)]: 1 } })).toThrow(/workers/);
    const many = Object.fromEntries(Array.from({ length: 1001 }, (_, i) => [`a/s${i}`, 1]));
    expect(bad({ workers: many })).toThrow(/at most 1000 services/);
    expect(bad({ scaled: { grows: -1, shrinks: 0 } })).toThrow(/scaled/);
    expect(bad({ workersMax: { 'digits/classify': 0 } })).toThrow(/workersMax/);
    expect(bad({ workersMax: { 'digits/classify': 65 } })).toThrow(/workersMax/);
  });
});

describe("the relay's history of a node's workers", () => {
  it('keeps a sample per change only, and at most WORKERS_HISTORY of them', () => {
    const node = {} as NodeRecord;
    recordWorkers(node, { 'a/s': 1 }, { grows: 1, shrinks: 0 });
    recordWorkers(node, { 'a/s': 1 }, { grows: 1, shrinks: 0 });
    recordWorkers(node, { 'a/s': 2, 'b/s': 1 }, { grows: 3, shrinks: 0 });
    expect(node.workersHistory!.map((s) => s.total)).toEqual([1, 3]);
    expect(node.workers).toEqual({ 'a/s': 2, 'b/s': 1 });
    expect(node.scaled).toEqual({ grows: 3, shrinks: 0 });
    for (let i = 0; i < 1000; i++)
      recordWorkers(node, { 'a/s': i % 7 }, { grows: 3 + i, shrinks: i });
    expect(node.workersHistory).toHaveLength(WORKERS_HISTORY);
    expect(node.workersHistory!.at(-1)).toMatchObject({ total: 999 % 7, shrinks: 999 });
  });
});

describe("brume node's worker flags", () => {
  const flags = (f: Record<string, string>) => (name: string) => f[name];

  it('caps workers, overrides the idle time, holds per call, and takes calls for every worker', () => {
    const o = nodeOptions(
      flags({ threads: '1', 'max-workers': '20', 'worker-idle-ms': '6000', 'hold-ms': '50' }),
    );
    expect(o.caps).toMatchObject({ maxWorkers: 20, workerIdleMs: 6000, holdMs: 50 });
    expect(o.concurrency).toBe(20);
    expect(nodeOptions(flags({ threads: '2' })).concurrency).toBe(8);
    expect(
      nodeOptions(flags({ threads: '1', 'max-workers': '20', concurrency: '3' })).concurrency,
    ).toBe(3);
  });

  it('refuses values out of range, naming the flag', () => {
    expect(() => nodeOptions(flags({ 'max-workers': '65' }))).toThrow(/--max-workers/);
    expect(() => nodeOptions(flags({ 'max-workers': '0' }))).toThrow(/--max-workers/);
    expect(() => nodeOptions(flags({ 'worker-idle-ms': '5' }))).toThrow(/--worker-idle-ms/);
    expect(() => nodeOptions(flags({ 'hold-ms': '-1' }))).toThrow(/--hold-ms/);
    expect(() => nodeOptions(flags({ 'hold-ms': '60001' }))).toThrow(/--hold-ms/);
  });
});

describe('placement by the pools a node reports', () => {
  // Two fogs, 4 calls queued on each: one takes 64 calls at once but its pool for digits/main
  // grows to 2 workers; the other takes 8 calls at once with no cap reported.
  const logicCall: PlacementRequest = {
    app: 'digits',
    service: 'main',
    logic: { rpc: 'run' },
    variants: [{ rpc: '', accuracy: 1, latencyMs: 10 }],
    qos: {},
    caller: '',
  };
  const fogs = (capped: boolean) => [
    node(2, {
      role: 'fog',
      queue: 4,
      maxConcurrency: 64,
      ...(capped && { workersMax: { 'digits/main': 2 } }),
    }),
    node(3, { role: 'fog', queue: 4, maxConcurrency: 8 }),
  ];

  it("counts a Logic call's slots as its pool's cap, not the node's calls at once", () => {
    expect(place(fogs(false), logicCall).node).toBe(id(2));
    const p = place(fogs(true), logicCall);
    expect(p.node).toBe(id(3));
    // 4 queued over 2 slots: two executions of 10 ms ahead of it there.
    expect(place([fogs(true)[0]!], logicCall).reason).toMatch(/queue 20 /);
    expect(place([fogs(false)[0]!], logicCall).reason).toMatch(/queue 0\.6 /);
  });

  it("counts a model call's slots as its service's sessions where a Node node reports them", () => {
    const modelCall: PlacementRequest = {
      app: 'digits',
      service: 'model',
      variants: [{ rpc: 'large', accuracy: 0.98, latencyMs: 10 }],
      qos: {},
      caller: '',
    };
    const servers = (capped: boolean) => [
      node(2, {
        role: 'cloud',
        queue: 4,
        maxConcurrency: 64,
        ...(capped && { workersMax: { 'digits/model': 2 } }),
      }),
      node(3, { role: 'cloud', queue: 4, maxConcurrency: 8 }),
    ];
    expect(place(servers(false), modelCall).node).toBe(id(2));
    expect(place(servers(true), modelCall).node).toBe(id(3));
    expect(place([servers(true)[0]!], modelCall).reason).toMatch(/queue 20 /);
  });
});
