// The Nimbus simulator (tests/bench/nimbus-campus.ts) on a small seeded campus: its invariants,
// not its timings. Crowded on purpose (300 devices, 16 nodes over 3 km) so that greedy, without
// the look-ahead, overfills nodes and the within-budget check has something to catch.
import { describe, expect, it } from 'vitest';
import { queueMs } from '../../core/session/nimbus';
import { nimbusSection } from '../bench/nimbus';
import {
  type CampusConfig,
  makeCampus,
  type SimResult,
  simulate,
  tiers,
} from '../bench/nimbus-campus';

const config: CampusConfig = {
  seed: 11,
  devices: 300,
  accessPoints: 30,
  nodes: { T1: 10, T2: 5, T3: 1 },
  sideKm: 3,
};
const campus = makeCampus(config);
const runs = {
  nimbus: simulate(campus, 'nimbus'),
  greedy: simulate(campus, 'greedy'),
  kappa: simulate(campus, 'nimbus', 3),
  local: simulate(campus, 'local'),
  wifi: simulate(campus, 'cloud-wifi'),
  lte: simulate(campus, 'cloud-4g'),
};

/** Edge sessions whose frame, with their node's final queue, exceeds their ε_t. */
function overBudget(r: SimResult): number {
  let over = 0;
  r.placed.forEach((p) => {
    const j = campus.nodes.findIndex((n) => n.id === p.node);
    if (j < 0) return;
    const spec = tiers[campus.nodes[j]!.tier];
    if (p.netMs + spec.execMs + queueMs(spec, r.loads[j]!) > p.latencyBudgetMs) over++;
  });
  return over;
}

describe('the Nimbus simulator', () => {
  it('places every device exactly once, and the node loads count them', () => {
    for (const r of Object.values(runs)) {
      expect(r.placed).toHaveLength(config.devices);
      const edge = r.placed.filter((p) => p.where !== 'local' && p.where !== 'cloud');
      expect(r.loads.reduce((a, b) => a + b, 0)).toBe(edge.length);
      campus.nodes.forEach((n, j) => {
        expect(edge.filter((p) => p.node === n.id)).toHaveLength(r.loads[j]!);
        for (const p of edge.filter((x) => x.node === n.id)) expect(p.where).toBe(n.tier);
      });
      const shares = Object.values(r.summary.share).reduce((a, b) => a + b, 0);
      expect(shares).toBeCloseTo(1, 9);
    }
  });

  it("with the look-ahead every edge session is within its ε_t at the end; greedy's are not", () => {
    expect(overBudget(runs.nimbus)).toBe(0);
    expect(overBudget(runs.kappa)).toBe(0);
    expect(runs.nimbus.summary.overBudget).toBe(0);
    // The same check catches the sessions greedy broke by packing nodes past their budgets.
    expect(overBudget(runs.greedy)).toBeGreaterThan(0);
    expect(runs.greedy.summary.overBudget).toBe(overBudget(runs.greedy));
  });

  it('never offloads a device for more energy than running locally', () => {
    for (const [name, r] of Object.entries(runs)) {
      const radio = name === 'lte' ? 2.5 : 1.21;
      for (const [i, p] of r.placed.entries()) {
        const phone = campus.devices[i]!.phone;
        expect(p.energyBudgetMj).toBe(phone.localEnergyMj);
        if (p.where === 'local') {
          expect(p).toMatchObject({ energyMj: phone.localEnergyMj, latencyMs: phone.localMs });
        } else {
          expect(p.energyMj).toBeLessThan(p.energyBudgetMj);
          expect(p.energyMj).toBeCloseTo(p.netMs * radio, 9);
        }
      }
    }
  });

  it('Nimbus offloads at least as many devices within budget as greedy', () => {
    const n = runs.nimbus.summary.offloadedWithinBudget;
    expect(n).toBeGreaterThanOrEqual(runs.greedy.summary.offloadedWithinBudget);
    expect(n).toBeGreaterThan(0.5);
  });

  it('the baselines place only where they may', () => {
    expect(runs.local.summary.share.local).toBe(1);
    for (const r of [runs.wifi, runs.lte]) {
      expect(r.placed.every((p) => p.where === 'cloud' || p.where === 'local')).toBe(true);
    }
    // 4G's slower uplink and longer path leave fewer devices within 1000/FPS than Wi-Fi.
    expect(runs.lte.summary.share.cloud).toBeLessThan(runs.wifi.summary.share.cloud);
  });

  it('is reproducible from its seed, and its summary is the mean of its placements', () => {
    const again = simulate(makeCampus(config), 'nimbus', 3);
    expect(again.placed).toEqual(runs.kappa.placed);
    const mean = runs.nimbus.placed.reduce((a, p) => a + p.latencyMs, 0) / config.devices;
    expect(runs.nimbus.summary.meanLatencyMs).toBeCloseTo(mean, 9);
    const fps = campus.devices.reduce((a, d) => a + d.fps, 0) / config.devices;
    expect(Math.abs(fps - 15)).toBeLessThan(0.5);
  });

  it('its report section is a valid table with the thesis row beside the figures', () => {
    const bench = {
      runs: 1,
      results: (['nimbus', 'greedy', 'local'] as const).map((strategy) => ({
        campus: 'small',
        config,
        strategy,
        kappa: 0,
        summary: runs[strategy].summary,
      })),
    };
    const s = nimbusSection(bench);
    expect(s.id).toBe('nimbus');
    expect(s.rows.map((r) => r.label)).toContain('thesis: Nimbus, LRZ campus trace');
    expect(s.rows.find((r) => r.label === 'small: local')).toMatchObject({
      'energy saved vs local (%)': 0,
      'local (%)': 100,
    });
  });
});
