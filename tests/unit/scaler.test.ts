// The scaling policy of worker pools (core/exec/scaler.ts) on an injected clock: growth with
// queued work up to the max, retirement one worker per full idle period down to none, and the
// flap test of seed 002: a bursty load under OpenFaaS's drop-to-minimum against this hysteresis.

import { describe, expect, it } from 'vitest';
import { type PoolState, type ScalePolicy, Scaler } from '../../core/exec/scaler';

function clocked(policy: ScalePolicy) {
  let t = 0;
  const scaler = new Scaler(policy, () => t);
  return { scaler, at: (ms: number) => (t = ms) };
}

const state = (workers: number, busy: number, queued = 0, starting = 0): PoolState => ({
  workers,
  busy,
  queued,
  starting,
});

describe('the scaler', () => {
  it('starts a worker for each request waiting with none starting for it, up to the max', () => {
    const { scaler } = clocked({ max: 5, idleMs: 1000 });
    expect(scaler.decide(state(0, 0, 1))).toEqual({ grow: 1, shrink: 0 });
    expect(scaler.decide(state(0, 0, 3, 1))).toEqual({ grow: 2, shrink: 0 });
    expect(scaler.decide(state(2, 2, 9, 1))).toEqual({ grow: 2, shrink: 0 });
    expect(scaler.decide(state(5, 5, 9))).toEqual({ grow: 0, shrink: 0 });
  });

  it('retires one worker per full idle period, down to none', () => {
    const { scaler, at } = clocked({ max: 5, idleMs: 1000 });
    at(0);
    expect(scaler.decide(state(3, 0))).toEqual({ grow: 0, shrink: 0, wakeAt: 1000 });
    at(999);
    expect(scaler.decide(state(3, 0)).shrink).toBe(0);
    at(1000);
    expect(scaler.decide(state(3, 0))).toEqual({ grow: 0, shrink: 1, wakeAt: 2000 });
    // Right after a retirement the next one waits a whole period.
    at(1500);
    expect(scaler.decide(state(2, 0)).shrink).toBe(0);
    at(2000);
    expect(scaler.decide(state(2, 0)).shrink).toBe(1);
    at(3000);
    expect(scaler.decide(state(1, 0))).toEqual({ grow: 0, shrink: 1 });
    at(9000);
    expect(scaler.decide(state(0, 0))).toEqual({ grow: 0, shrink: 0 });
  });

  it('starts the idle period again whenever no worker is spare or a request waits', () => {
    const { scaler, at } = clocked({ max: 2, idleMs: 1000 });
    at(0);
    scaler.decide(state(2, 1));
    at(900);
    scaler.decide(state(2, 2)); // both busy: no spare worker
    at(950);
    expect(scaler.decide(state(2, 1)).wakeAt).toBe(1950);
    at(1500);
    scaler.decide(state(2, 1, 1)); // one waits
    at(1600);
    expect(scaler.decide(state(2, 0))).toEqual({ grow: 0, shrink: 0, wakeAt: 2600 });
    at(2600);
    expect(scaler.decide(state(2, 0)).shrink).toBe(1);
  });

  it('starts no more than startAtOnce workers together', () => {
    const { scaler } = clocked({ max: 20, idleMs: 1000, startAtOnce: 2 });
    expect(scaler.decide(state(0, 0, 9))).toEqual({ grow: 2, shrink: 0 });
    expect(scaler.decide(state(0, 0, 9, 2))).toEqual({ grow: 0, shrink: 0 });
    expect(scaler.decide(state(1, 1, 9, 1))).toEqual({ grow: 1, shrink: 0 });
  });

  it('drop-to-minimum retires every idle worker at once (the behaviour compared against)', () => {
    const { scaler } = clocked({ max: 5, idleMs: 1000, mode: 'dropToMin' });
    expect(scaler.decide(state(4, 1))).toEqual({ grow: 0, shrink: 3 });
  });
});

/**
 * A pool driven by `policy` under `arrivals` (request start times, ms), each request holding a
 * worker `serviceMs`; workers start at once. Answers the scale events and the peak size.
 */
function simulate(policy: ScalePolicy, arrivals: number[], serviceMs: number) {
  const { scaler, at } = clocked(policy);
  let workers = 0;
  let busy = 0;
  const queue: number[] = [];
  const ends: number[] = [];
  const events: { at: number; kind: 'grow' | 'shrink' }[] = [];
  let wake: number | undefined;
  let peak = 0;
  const dispatch = (t: number) => {
    while (busy < workers && queue.length) {
      queue.shift();
      busy++;
      ends.push(t + serviceMs);
    }
  };
  const apply = (t: number) => {
    for (;;) {
      // As in the pool: an idle worker takes a request before the scaler looks.
      dispatch(t);
      const d = scaler.decide(state(workers, busy, queue.length));
      wake = d.wakeAt;
      if (d.grow) {
        workers += d.grow;
        events.push({ at: t, kind: 'grow' });
      }
      if (d.shrink) {
        workers -= d.shrink;
        events.push({ at: t, kind: 'shrink' });
      }
      dispatch(t);
      peak = Math.max(peak, workers);
      if (!d.grow && !d.shrink) return;
    }
  };
  const pending = [...arrivals];
  for (;;) {
    ends.sort((a, b) => a - b);
    const next = Math.min(pending[0] ?? Infinity, ends[0] ?? Infinity, wake ?? Infinity);
    if (next === Infinity) break;
    at(next);
    if (ends[0] === next) {
      ends.shift();
      busy--;
    } else if (pending[0] === next) {
      pending.shift();
      queue.push(next);
    }
    apply(next);
  }
  return { events, peak, workers };
}

describe('the flap test (seed 002: OpenFaaS drops abruptly to minimum; long functions flap)', () => {
  // Ten minutes of bursts: every 10 s, 4 requests of 2 s each arrive together.
  const arrivals: number[] = [];
  for (let t = 0; t < 600_000; t += 10_000) arrivals.push(t, t, t, t);

  it('drop-to-minimum scales down after every burst; hysteresis keeps its workers', () => {
    const drop = simulate({ max: 5, idleMs: 30_000, mode: 'dropToMin' }, arrivals, 2000);
    const hyst = simulate({ max: 5, idleMs: 30_000 }, arrivals, 2000);
    const downs = (r: typeof drop, until: number) =>
      r.events.filter((e) => e.kind === 'shrink' && e.at < until).length;
    // Under load: each request's end retires its worker (4 per burst), against none; the
    // hysteresis pool grows once, in the first burst, and keeps its 4 workers.
    expect(downs(drop, 600_000)).toBe(240);
    expect(drop.events.filter((e) => e.kind === 'grow')).toHaveLength(240);
    expect(downs(hyst, 600_000)).toBe(0);
    expect(hyst.events.filter((e) => e.kind === 'grow').map((e) => e.at)).toEqual([0, 0, 0, 0]);
    // Both end with none; the hysteresis pool steps down one worker per idle period.
    expect([drop.workers, hyst.workers]).toEqual([0, 0]);
    const tail = hyst.events.filter((e) => e.kind === 'shrink').map((e) => e.at);
    expect(tail).toHaveLength(4);
    for (let i = 1; i < tail.length; i++)
      expect(tail[i]! - tail[i - 1]!).toBeGreaterThanOrEqual(30_000);
    expect(hyst.peak).toBe(4);
  });

  it('never scales down more than twice a minute, whatever the load', () => {
    // Irregular bursts of 1 to 6 requests, 1 to 41 s apart, from a fixed generator.
    let seed = 7;
    const rand = () => {
      seed = (seed * 48271) % 2147483647;
      return seed / 2147483647;
    };
    const bursty: number[] = [];
    for (let t = 0; t < 900_000; t += 1000 + rand() * 40_000) {
      const n = 1 + Math.floor(rand() * 6);
      for (let i = 0; i < n; i++) bursty.push(Math.round(t));
    }
    const r = simulate({ max: 20, idleMs: 30_000 }, bursty, 1500);
    const downs = r.events.filter((e) => e.kind === 'shrink').map((e) => e.at);
    expect(downs.length).toBeGreaterThan(0);
    for (const t of downs) {
      expect(downs.filter((d) => d > t - 60_000 && d <= t).length).toBeLessThanOrEqual(2);
    }
  });
});
