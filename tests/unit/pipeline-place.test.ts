/**
 * Seed 001 (Houmani et al.) §VI on its own testbed: Table I capacities, Table II links, the
 * object-detection workflow of §II. Cores are the unit of capacity; each intensive task needs a
 * whole fog node (4 cores, so the cloud holds two: "half each" in §VII-A).
 */
import { describe, expect, it } from 'vitest';
import { UnavailableError } from '../../core/errors';
import {
  type PlaceNode,
  type PlaceStage,
  placePipeline,
  type TierLink,
  tierCost,
} from '../../core/pipeline/place';
import type { Role } from '../../core/protocol';

/** Table I: allocatable cores per node. */
const cores: Record<Role, number> = { dew: 1, fog: 4, cloud: 8 };
/** Table II: delay and bandwidth by tier pair (dew = the seed's Edge). */
const table2: Partial<Record<`${Role}-${Role}`, TierLink>> = {
  'dew-dew': { delayMs: 1, mbps: 1000 },
  'fog-fog': { delayMs: 1, mbps: 1000 },
  'cloud-cloud': { delayMs: 1, mbps: 10_000 },
  'dew-fog': { delayMs: 4, mbps: 30 },
  'fog-cloud': { delayMs: 5, mbps: 10_000 },
};
const tierOf = (id: string): Role => (id.startsWith('edge') ? 'dew' : (id.split('-')[0] as Role));
/** One 512×512 RGB frame: S = γ·fr² with γ = 24 bits per pixel. */
const frameMbit = (512 * 512 * 24) / 1e6;
const cost = tierCost(table2, tierOf, frameMbit);

/** §VII-A: 11 Edge, 2 Fog, 1 Cloud. */
function testbed(edit: Partial<Record<Role, number[]>> = {}): PlaceNode[] {
  const make = (tier: Role, prefix: string, caps: number[]) =>
    caps.map((free, i) => ({ id: `${prefix}-${String(i + 1).padStart(2, '0')}`, tier, free }));
  return [
    ...make('dew', 'edge', edit.dew ?? Array(11).fill(cores.dew)),
    ...make('fog', 'fog', edit.fog ?? [cores.fog, cores.fog]),
    ...make('cloud', 'cloud', edit.cloud ?? [cores.cloud]),
  ];
}

/** §II: Resize (NI) → YOLOv4-416 (LI) / YOLOv4-512 (HI) → Draw (HI). */
const workflow: PlaceStage[] = [
  { name: 'resize', class: 'NI', from: ['$input'], need: 1 },
  { name: 'yolo416', class: 'LI', from: ['resize'], need: 4 },
  { name: 'yolo512', class: 'HI', from: ['resize'], need: 4 },
  { name: 'draw', class: 'HI', from: ['yolo416', 'yolo512'], need: 4 },
];

const place = (nodes: PlaceNode[], source = 'edge-01') =>
  placePipeline({ stages: workflow, nodes, source, cost });
const nodesOf = (p: ReturnType<typeof place>) =>
  Object.fromEntries(Object.entries(p.stages).map(([s, x]) => [s, x.node]));
const held = (p: ReturnType<typeof place>) =>
  Object.fromEntries(p.reservations.map((r) => [r.stage, [r.node, r.amount, r.how]]));

describe('seed 001 placement on its own testbed', () => {
  it("gives the paper's mapping: Resize on the edge, 416 on fog, 512 and Draw on the cloud", () => {
    const p = place(testbed());
    expect(nodesOf(p)).toEqual({
      resize: 'edge-01',
      yolo416: 'fog-01',
      yolo512: 'cloud-01',
      draw: 'cloud-01',
    });
    expect(held(p)).toEqual({
      yolo512: ['cloud-01', 4, 'full'],
      draw: ['cloud-01', 4, 'full'],
      yolo416: ['fog-01', 4, 'full'],
    });
    expect(p.cuts).toEqual([]);
  });

  it('puts an NI stage on the nearest free node: another edge (1 ms), not the fog (4 ms)', () => {
    const edges = Array(11).fill(1);
    edges[0] = 0; // the source's own edge is full
    const p = place(testbed({ dew: edges }));
    expect(p.stages.resize!.node).toBe('edge-02');
  });

  it('spills HI to fog when the cloud is short, then gives LI its 50% floor (Algorithm 4)', () => {
    // Cloud 6 cores, one fog of 4: 512 takes the cloud, Draw the fog, 416 finds 2 free on cloud.
    const p = place(testbed({ fog: [4], cloud: [6] }));
    expect(held(p)).toEqual({
      yolo512: ['cloud-01', 4, 'full'],
      draw: ['fog-01', 4, 'full'],
      yolo416: ['cloud-01', 2, 'floor'],
    });
    expect(nodesOf(p).yolo416).toBe('cloud-01');
  });

  it('cuts the reservations on the fullest node evenly to reach the floor', () => {
    // No fog, cloud 8: 512 and Draw hold 4 each; 416 needs 2 (its floor) and there are 0 free.
    const p = place(testbed({ fog: [], cloud: [8] }));
    expect(p.cuts).toEqual([
      { stage: 'yolo512', node: 'cloud-01', by: 1 },
      { stage: 'draw', node: 'cloud-01', by: 1 },
    ]);
    expect(held(p)).toEqual({
      yolo512: ['cloud-01', 3, 'full'],
      draw: ['cloud-01', 3, 'full'],
      yolo416: ['cloud-01', 2, 'cut'],
    });
    // Nobody is cut below its own floor.
    for (const r of p.reservations) expect(r.amount).toBeGreaterThanOrEqual(r.need / 2);
  });

  it('cuts only the reservations that stay at their floor, and overcommits past that', () => {
    // Cloud 6, no fog: 512 full (4), Draw at its floor (2), 416 can only cut 512 (by 2).
    const p = place(testbed({ fog: [], cloud: [6] }));
    expect(p.cuts).toEqual([{ stage: 'yolo512', node: 'cloud-01', by: 2 }]);
    expect(held(p)).toEqual({
      yolo512: ['cloud-01', 2, 'full'],
      draw: ['cloud-01', 2, 'floor'],
      yolo416: ['cloud-01', 2, 'cut'],
    });
    // Cloud 2: nothing can be cut to reach a floor any more; the stage still gets a node.
    const q = place(testbed({ fog: [], cloud: [2] }));
    expect(held(q).yolo416).toEqual(['cloud-01', 0, 'overcommitted']);
  });

  it('keeps every stage on the device for privacy "device"', () => {
    const p = placePipeline({
      stages: workflow,
      nodes: testbed(),
      source: 'edge-05',
      cost,
      privacy: 'device',
    });
    expect(new Set(Object.values(nodesOf(p)))).toEqual(new Set(['edge-05']));
    expect(p.reservations).toEqual([]);
  });

  it('places an NI stage after an intensive one next to it, and spreads a fan-out nearest first', () => {
    const stages: PlaceStage[] = [
      { name: 'pre', class: 'NI', from: ['$input'], need: 1 },
      { name: 'detect', class: 'LI', from: ['pre'], need: 1 },
      { name: 'post', class: 'NI', from: ['detect'], need: 1 },
      { name: 'recognize', class: 'HI', from: ['post'], need: 1, fanOut: true },
      { name: 'join', class: 'NI', from: ['post', 'recognize'], need: 1 },
    ];
    const nodes = testbed({ dew: [1, 1], fog: [4], cloud: [8] });
    const p = placePipeline({ stages, nodes, source: 'edge-01', cost });
    expect(nodesOf(p)).toEqual({
      pre: 'edge-01',
      detect: 'fog-01',
      post: 'fog-01',
      recognize: 'cloud-01',
      join: 'cloud-01', // as near the fog (post) as the cloud (recognize): a tie, the lower id
    });
    expect(p.stages.recognize!.spread).toEqual(['fog-01', 'edge-01', 'edge-02']);
  });

  it('prefers the stage of higher priority when capacity is short', () => {
    const stages: PlaceStage[] = [
      { name: 'a', class: 'HI', from: ['$input'], need: 8 },
      { name: 'b', class: 'HI', from: ['a'], need: 8, priority: 5 },
    ];
    const p = placePipeline({ stages, nodes: testbed({ fog: [] }), source: 'edge-01', cost });
    // b reserved the whole cloud first; a then cut it to its floor to reach its own.
    expect(p.reservations.map((r) => r.stage)).toEqual(['b', 'a']);
    expect(p.cuts).toEqual([{ stage: 'b', node: 'cloud-01', by: 4 }]);
    expect(held(p)).toEqual({ b: ['cloud-01', 4, 'full'], a: ['cloud-01', 4, 'cut'] });
  });

  it('refuses a stage no node can run, naming it', () => {
    const nodes = testbed().map((n) => ({ ...n, runs: (s: string) => s !== 'draw' }));
    expect(() => place(nodes)).toThrow(UnavailableError);
    expect(() => place(nodes)).toThrow('stage "draw"');
  });
});
