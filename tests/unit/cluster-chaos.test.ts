// Issue 17's "done when", as a seeded chaos run over a real cluster (tests/cluster-process.ts: 3
// relay processes with --no-cloud, a real HAProxy, a real redis-server with its AOF fsynced on
// every write). A schedule drawn from the seed kills relays (SIGKILL) and restarts them, kills
// Redis (SIGKILL) and restarts it on its AOF, and takes raw nodes away and back, all through the
// balancer, while a workload writes context over HTTP, submits jobs and places calls. Then, all
// healed: every acknowledged context write is readable through every relay (its value or a later
// one of the same key), every accepted job is final through every relay with one state and one
// result, no relay exited on its own, and every refusal was a typed error (the balancer's own page
// is allowed: the relay HAProxy chose died under the request). BRUME_SEED=<n> replays one seed; a
// failure prints the seed, the schedule and what happened.
import { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import { packBundle } from '../../core/manifest';
import { contextApp, hostileApp } from '../apps';
import {
  type ChurnNode,
  churnNode,
  drawSchedule,
  type Outcome,
  request,
  type Step,
  seeded,
} from '../chaos-kit';
import { type ClusterProcess, startCluster } from '../cluster-process';
import { deploy } from '../relay-process';
import { until } from '../until';

const RELAYS = 3;
const NODES = 3;
/** Faults per seed: with pauses of 0.2–2 s, about half a minute of chaos. */
const STEPS = 14;
/** The seeds run by default: fixed, so CI is reproducible; about a minute each here. */
const DEFAULT_SEEDS = [7, 1717];
const seeds = process.env.BRUME_SEED ? [Number(process.env.BRUME_SEED)] : DEFAULT_SEEDS;
/** Keys each context writer cycles over (its own: a later write of a key is by the same writer). */
const KEYS_PER_WRITER = 4;
const WRITERS = 2;

type Phase = { kind: string; outcome: Outcome };

let cluster: ClusterProcess | undefined;
let nodes: ChurnNode[] = [];
afterEach(async () => {
  for (const n of nodes) n.offline();
  nodes = [];
  await cluster?.stop();
  cluster = undefined;
}, 60_000);

describe.each(seeds)('the cluster under chaos, seed %i', (seed) => {
  it('keeps every acknowledged write and accepted job, refuses only with typed errors', async () => {
    const schedule = drawSchedule(seed, { steps: STEPS, relays: RELAYS, nodes: NODES });
    const log: string[] = [];
    const t0 = Date.now();
    const note = (m: string) => log.push(`${((Date.now() - t0) / 1000).toFixed(1)}s ${m}`);
    try {
      await run(seed, schedule, note);
      // What the run came to, for whoever reads CI's output.
      console.log(`seed ${seed}:\n${log.filter((l) => !l.includes(' step ')).join('\n')}`);
    } catch (e) {
      const err = e as Error;
      err.message = [
        `seed ${seed} (replay: BRUME_SEED=${seed}): ${err.message}`,
        `schedule: ${JSON.stringify(schedule)}`,
        'what happened:',
        ...log.slice(-200),
      ].join('\n');
      throw err;
    }
  }, 600_000);
});

async function run(seed: number, schedule: Step[], note: (m: string) => void): Promise<void> {
  const c = await startCluster({ relays: RELAYS, args: ['--no-cloud'] });
  cluster = c;
  const token = c.token;
  // A relay exiting when this test did not kill it is a crash: caught here, not just printed.
  const crashes: string[] = [];
  const expected = new Set<unknown>();
  const watch = (i: number) => {
    const child = c.relays[i]!.child;
    child.once('exit', (code, signal) => {
      if (!expected.has(child)) {
        crashes.push(`relay r${i} exited on its own (${signal ?? code})`);
        note(`CRASH r${i}: ${c.relays[i]!.output().slice(-2000)}`);
      }
    });
  };
  for (let i = 0; i < RELAYS; i++) watch(i);

  for (const b of [await hostileApp(), await contextApp('chaos')]) {
    const res = await deploy({ url: c.url, token }, packBundle(b.manifest, b.files));
    expect(res.status, await res.text()).toBe(201);
  }
  const ws = `${c.url.replace('http', 'ws')}/ws`;
  for (let i = 0; i < NODES; i++) nodes.push(await churnNode(ws, `chaos-${seed}-${i}`, note));
  for (const n of nodes) n.online();
  await until(() => nodes.every((n) => n.joined()), 'every node joined', 60_000);

  // The workload: its own seeded draws, so a replay sends the same requests (timing aside).
  const rng = seeded(seed ^ 0x5eed);
  const seen: Phase[] = [];
  /** Per context key: the highest value sequence written at all, and acknowledged. */
  const tried = new Map<string, number>();
  const acked = new Map<string, number>();
  const jobs: { id: string; n: number }[] = [];
  /** Answers that are 2xx but not this request's. */
  const wrong: string[] = [];
  let calls = 0;
  let callsAnswered = 0;
  let chaos = true;
  // The workload's pace (a seeded think time between requests), not a barrier.
  const pause = () => new Promise((r) => setTimeout(r, rng.int(20, 150)));

  const writer = async (w: number) => {
    for (let seq = 1; chaos; seq++) {
      const key = `w${w}-k${seq % KEYS_PER_WRITER}`;
      tried.set(key, seq);
      const outcome = await request(`${c.url}/api/context/chaos/${key}`, {
        method: 'PUT',
        token,
        body: { value: { w, seq } },
      });
      seen.push({ kind: `context ${key}=${seq}`, outcome });
      if (outcome.kind === 'ok') acked.set(key, seq);
      await pause();
    }
  };
  const submitter = async () => {
    for (let n = 1; chaos; n++) {
      const outcome = await request(`${c.url}/api/jobs`, {
        method: 'POST',
        token,
        body: { app: 'hostile', service: 'echo', rpc: 'echo', input: { job: n } },
      });
      seen.push({ kind: `job ${n}`, outcome });
      if (outcome.kind === 'ok' && outcome.status === 202)
        jobs.push({ id: (outcome.body as { id: string }).id, n });
      else if (outcome.kind === 'ok') wrong.push(`job ${n} answered ${outcome.status}`);
      await pause();
    }
  };
  const caller = async () => {
    for (let n = 1; chaos; n++) {
      calls++;
      const outcome = await request(`${c.url}/api/call/hostile/echo`, {
        method: 'POST',
        token,
        body: { input: { call: n } },
      });
      seen.push({ kind: `call ${n}`, outcome });
      if (outcome.kind === 'ok') {
        callsAnswered++;
        // The answer is this call's, from a node of the cluster.
        const echo = (outcome.body as { value?: { echo?: { call?: number } } }).value?.echo;
        if (echo?.call !== n) wrong.push(`call ${n} answered ${JSON.stringify(outcome.body)}`);
      }
      await pause();
    }
  };
  const workload = Promise.all([
    ...Array.from({ length: WRITERS }, (_, w) => writer(w)),
    submitter(),
    caller(),
  ]);

  const down = new Set<number>();
  for (const step of schedule) {
    note(`step ${JSON.stringify(step)}`);
    switch (step.do) {
      case 'kill-relay':
        expected.add(c.relays[step.relay]!.child);
        await c.kill(step.relay);
        down.add(step.relay);
        break;
      case 'restart-relay':
        await c.restart(step.relay);
        watch(step.relay);
        down.delete(step.relay);
        break;
      case 'redis-outage':
        await c.redis.kill();
        // How long the outage lasts is part of the seeded schedule; restart() then waits for PING.
        await new Promise((r) => setTimeout(r, step.downMs));
        await c.redis.restart();
        break;
      case 'node-leave':
        nodes[step.node]!.offline();
        break;
      case 'node-join':
        nodes[step.node]!.online();
        break;
    }
    // The schedule's gap between steps (the workload runs through it); healing below polls.
    await new Promise((r) => setTimeout(r, step.pauseMs));
  }
  chaos = false;
  await workload;
  note(`chaos over: ${seen.length} requests, ${jobs.length} jobs accepted`);

  // Healing: every relay up, every node joined.
  for (const i of down) {
    await c.restart(i);
    watch(i);
  }
  for (const n of nodes) n.online();
  await until(() => nodes.every((n) => n.joined()), 'every node joined again', 60_000);
  note('healed');

  // Every refusal typed; the balancer's own page only for the relay that died under a request.
  const tally = new Map<string, number>();
  for (const { kind, outcome } of seen) {
    const what = kind.split(' ')[0];
    const k =
      outcome.kind === 'typed'
        ? `${what} ${outcome.status} ${outcome.code}`
        : outcome.kind === 'ok' || outcome.kind === 'balancer'
          ? `${what} ${outcome.kind} ${outcome.status}`
          : `${what} ${outcome.kind}`;
    if (!tally.has(k) && outcome.kind !== 'ok')
      note(`first ${k}: ${kind} ${JSON.stringify(outcome)}`);
    tally.set(k, (tally.get(k) ?? 0) + 1);
  }
  note(
    `outcomes: ${JSON.stringify(Object.fromEntries(tally))}; calls answered ${callsAnswered}/${calls}`,
  );
  const anomalies = seen.filter((p) => p.outcome.kind === 'anomaly');
  expect(anomalies, 'answers that are no typed error').toEqual([]);
  expect(wrong, '2xx answers that are not the request’s').toEqual([]);
  expect(acked.size, 'some context writes acknowledged').toBeGreaterThan(0);
  expect(jobs.length, 'some jobs accepted').toBeGreaterThan(0);
  expect(callsAnswered, 'some calls answered').toBeGreaterThan(0);

  // Every accepted job final through every relay, in one state with one result.
  const final = ['succeeded', 'failed', 'cancelled'];
  for (const { id, n } of jobs) {
    const views: Record<string, unknown>[] = [];
    for (const [i, relay] of c.relays.entries()) {
      let last: Outcome | undefined;
      const view = await until(
        async () => {
          last = await request(`${relay.url}/api/jobs/${id}`, { method: 'GET', token });
          const v = last.kind === 'ok' && (last.body as Record<string, unknown>);
          return v && final.includes(v.state as string) ? v : undefined;
        },
        `job ${id} (${n}) final through r${i}`,
        120_000,
        100,
      ).catch(async (e: Error) => {
        e.message += `; it reads ${JSON.stringify(last)}; in Redis ${await inRedis(c, id)}`;
        throw e;
      });
      views.push(view);
    }
    const [first] = views;
    for (const v of views) {
      expect(v.state).toBe(first!.state);
      expect(v.result).toEqual(first!.result);
      expect(v.attempts).toBe(first!.attempts);
    }
    if (first!.state === 'succeeded')
      expect((first!.result as { echo: unknown }).echo).toEqual({ job: n });
    else expect(first!.error ?? first!.reasons, `job ${id} ${first!.state} says why`).toBeTruthy();
  }
  note('jobs checked');

  // Every acknowledged context write readable through every relay: its value or a later one.
  for (const [i, relay] of c.relays.entries()) {
    for (const [key, seq] of acked) {
      const got = await until(
        async () => {
          const o = await request(`${relay.url}/api/context/chaos/${key}`, {
            method: 'GET',
            token,
          });
          const v = o.kind === 'ok' && (o.body as { value?: { seq?: number } }).value;
          return v && typeof v.seq === 'number' && v.seq >= seq ? v : undefined;
        },
        `context ${key} (acknowledged at ${seq}) through r${i}`,
        60_000,
        100,
      );
      expect(got.seq).toBeLessThanOrEqual(tried.get(key)!);
    }
  }
  note('context checked');
  expect(crashes).toEqual([]);
  // What was stopped from here on is expected to exit.
  for (const r of c.relays) expected.add(r.child);
}

/** What Redis keeps of job `id` (its meta, its queue entry's consumer and idle time): a stuck job's story. */
async function inRedis(c: ClusterProcess, id: string): Promise<string> {
  const r = new Redis(c.redis.url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  try {
    await r.connect();
    const meta = await r.hget('brume:jobs:meta', id);
    const entry = meta?.split(' ')[3];
    const pending =
      entry && entry !== '-' ? await r.xpending('brume:jobs:queue', 'relays', entry, entry, 1) : [];
    const consumers = await r.xinfo('CONSUMERS', 'brume:jobs:queue', 'relays');
    const relays = await r.zrange('brume:relays', 0, -1);
    return JSON.stringify({ meta, pending, consumers, relays });
  } catch (e) {
    return `unread: ${(e as Error).message}`;
  } finally {
    r.disconnect();
  }
}
