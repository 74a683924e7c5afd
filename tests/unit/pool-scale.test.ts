// Logic worker pools that scale (core/exec/logic-pool.ts over core/exec/scaler.ts), with real
// worker threads (relay/platform.ts): they start with none, grow with queued work up to their
// max, retire one worker per idle period down to none, and a bench's holdMs holds a worker.

import { readFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { decode, encode } from '../../core/codec';
import { maxWorkers } from '../../core/exec/loader';
import { createLogicPool, type LogicPool } from '../../core/exec/logic-pool';
import type { ScaleEvent } from '../../core/exec/scaler';
import { memoryAppSource } from '../../core/sources';
import { nodePlatform } from '../../relay/platform';
import { until } from '../until';

const echo = new WebAssembly.Module(
  readFileSync(new URL('../../logics/build/echo.wasm', import.meta.url)),
);
const platform = nodePlatform(memoryAppSource([]));

const pools: LogicPool[] = [];
afterEach(() => {
  for (const p of pools.splice(0)) p.close();
});

function pool(o: { size: number; idleMs: number; holdMs?: number }) {
  // Each event with the monotonic time it was told at (the scaler's clock; `at` is wall time).
  const events: (ScaleEvent & { t: number })[] = [];
  const p = createLogicPool({
    name: 'test/echo',
    module: echo,
    minPages: 1,
    maxPages: 256,
    timeoutMs: 10_000,
    spawn: () => platform.spawnLogicWorker(),
    onScale: (e) => events.push({ ...e, t: performance.now() }),
    ...o,
  });
  pools.push(p);
  return { p, events };
}

const call = async (p: LogicPool, word: string) =>
  decode(await p.step('echo', encode(word), true)) as { value: string };

describe('a Logic pool that scales', () => {
  it('starts with no worker, grows to its max under queued work, and shrinks one at a time to none', async () => {
    const { p, events } = pool({ size: 3, idleMs: 300, holdMs: 300 });
    expect(p.now()).toMatchObject({ workers: 0, starting: 0, busy: 0, queued: 0, max: 3 });
    const words = Array.from({ length: 6 }, (_, i) => `w${i}`);
    const running = Promise.all(words.map((w) => call(p, w)));
    // Six wait: two workers start (at most two at once), a third once one is up (the max).
    expect(p.now()).toMatchObject({ starting: 2, queued: 6 });
    expect((await running).map((r) => r.value)).toEqual(words);
    expect(p.stats.peak).toBe(3);
    await until(() => p.now().workers === 0, 'the pool to shrink to none', 30_000);
    const shrinks = events.filter((e) => e.kind === 'shrink');
    // One at a time, to none (on a loaded machine a worker may retire before the last call is
    // in and another start for it: then more than three).
    expect(shrinks.length).toBeGreaterThanOrEqual(3);
    for (const e of shrinks) expect(e.from - e.to).toBe(1);
    expect(shrinks.at(-1)!.to).toBe(0);
    // One per idle period at most, on the scaler's own clock.
    for (let i = 1; i < shrinks.length; i++)
      expect(
        shrinks[i]!.t - shrinks[i - 1]!.t,
        JSON.stringify(events.map((e) => [e.kind, e.from, e.to, Math.round(e.t)])),
      ).toBeGreaterThanOrEqual(299);
    const grown = events.filter((e) => e.kind === 'grow').reduce((n, e) => n + e.to - e.from, 0);
    expect(grown).toBe(shrinks.length);
    expect(p.stats.workers).toBe(grown);
    // A pool at none serves again: a new worker starts for the next request.
    expect((await call(p, 'again')).value).toBe('again');
    expect(p.stats.workers).toBe(grown + 1);
  });

  it('keeps its workers, none replaced, through calls inside one idle period', async () => {
    // An idle period far longer than 20 echo calls take on any machine: a worker standing idle
    // with nothing waiting for a whole period retires by design, which is not what this checks.
    const { p, events } = pool({ size: 2, idleMs: 120_000 });
    await Promise.all([call(p, 'a'), call(p, 'b')]);
    // The second worker may still be starting (a thread boots slower than echo answers).
    await until(() => p.now().starting === 0, 'both workers up');
    for (let i = 0; i < 20; i++) await call(p, `c${i}`);
    expect(events.filter((e) => e.kind === 'shrink')).toEqual([]);
    expect([p.now().workers, p.stats.respawns, p.stats.workers]).toEqual([2, 0, 2]);
  });

  it('holds a worker holdMs per call without the CPU: calls on one worker take turns', async () => {
    const { p } = pool({ size: 1, idleMs: 60_000, holdMs: 150 });
    await call(p, 'warm');
    const t0 = performance.now();
    const cpu0 = process.cpuUsage();
    await Promise.all([call(p, 'a'), call(p, 'b'), call(p, 'c')]);
    // Three holds in turn on the one worker: at least 3 × 150 ms, never less.
    expect(performance.now() - t0).toBeGreaterThanOrEqual(450);
    // The worker slept: this process's CPU time (threads included) stays far below the wall time.
    const cpu = process.cpuUsage(cpu0);
    expect((cpu.user + cpu.system) / 1000).toBeLessThan(300);
  });
});

describe('a pool closed while it scales', () => {
  it('fails the waiting requests as unloaded and stops the workers that come up after', async () => {
    let terminated = 0;
    const p = createLogicPool({
      name: 'test/echo',
      module: echo,
      minPages: 1,
      maxPages: 256,
      timeoutMs: 10_000,
      size: 2,
      spawn: () => {
        const w = platform.spawnLogicWorker();
        return {
          api: w.api,
          terminate: () => {
            terminated++;
            w.terminate();
          },
        };
      },
    });
    const pending = [call(p, 'a'), call(p, 'b')].map((c) =>
      c.then(
        () => 'answered',
        (e: { code?: string }) => e.code,
      ),
    );
    expect(p.now().starting).toBe(2);
    p.close();
    expect(await Promise.all(pending)).toEqual(['E_LOGIC_LOAD', 'E_LOGIC_LOAD']);
    await until(() => terminated === 2, 'both workers stopped once up');
    await expect(call(p, 'late')).rejects.toMatchObject({ code: 'E_LOGIC_LOAD' });
  });
});

describe('workers per service on a node', () => {
  it('takes the manifest max within the node cap and its memory for guests', () => {
    expect(maxWorkers(undefined, 64, {})).toBe(1);
    expect(maxWorkers(undefined, 64, { logicWorkers: 2 })).toBe(2);
    expect(maxWorkers({ max: 20 }, 64, { logicWorkers: 2 })).toBe(2);
    expect(maxWorkers({ max: 20 }, 64, { logicWorkers: 1, maxWorkers: 8 })).toBe(8);
    expect(maxWorkers({ max: 20 }, 64, { maxWorkers: 32, workersMemoryMiB: 256 })).toBe(4);
    expect(maxWorkers({ max: 3 }, 64, { maxWorkers: 32, workersMemoryMiB: 1 })).toBe(1);
  });
});
