// Jobs shared by relays through a real redis-server (relay/cluster/job-queue.ts): two jobs services
// (openJobs), each with its own Redis link and its own hub, share one queue. Jobs submitted across
// both run once each; a relay that stops without a word (its link closed, its runs never answered)
// has its running and held jobs claimed and finished by the other, none lost, none succeeded
// twice; watchers on one relay see the other's changes; Redis down refuses submits with
// E_UNAVAILABLE and they work again once it is back; garbage in the stream and the state is
// skipped. The hub here is the smallest JobHub: one node of the test's, whose answers the test
// gives (the hub's own placement and forwarding are tested in hub*.test.ts).
import { mkdtempSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { NodeRecord } from '../../core/api';
import { encode } from '../../core/codec';
import type { Manifest } from '../../core/manifest';
import { openBlobs } from '../../relay/blobs';
import { openJobQueue } from '../../relay/cluster/job-queue';
import { openRedis, type RedisLink } from '../../relay/cluster/redis';
import { clusterStore } from '../../relay/cluster/store';
import type { Call } from '../../relay/hub';
import { type JobHub, type Jobs, openJobs } from '../../relay/jobs';
import { jobIds } from '../../relay/jobs/ids';
import { type JobView, moveTo } from '../../relay/jobs/job';
import { type RedisProcess, startRedis } from '../redis-process';
import { job, manifest } from '../store-contracts';
import { until } from '../until';

let redis: RedisProcess;
const dir = mkdtempSync(join(tmpdir(), 'brume-cluster-jobs-'));
const opened: { jobs: Jobs; link: RedisLink }[] = [];
let prefixes = 0;

beforeAll(async () => {
  redis = await startRedis();
}, 60_000);
afterAll(async () => {
  for (const r of opened) {
    await r.jobs.close().catch(() => undefined);
    await r.link.close();
  }
  await redis?.close();
  await rm(dir, { recursive: true, force: true });
});

interface TestRelay {
  id: string;
  jobs: Jobs;
  link: RedisLink;
  /** Calls its node got: answer them, or leave them hanging. */
  calls: { call: Call; answer(value: unknown): void }[];
  /** Answers every call at once when true. */
  auto: boolean;
}

/** A jobs service as a relay of a cluster opens it, with a node of 4 slots. */
async function relay(id: string, prefix: string, auto = true): Promise<TestRelay> {
  const link = await openRedis(redis.url, { prefix, commandTimeoutMs: 2000, maxBackoffMs: 200 });
  const queue = await openJobQueue(link, {
    relayId: id,
    heartbeatMs: 200,
    warn: () => {},
  });
  const node = `node-${id}`;
  const r: TestRelay = { id, link, calls: [], auto, jobs: undefined as unknown as Jobs };
  let open = 0;
  const hub: JobHub = {
    nodes: () => [{ id: node, caps: {}, queue: open, maxConcurrency: 4 } as unknown as NodeRecord],
    decide: async (_app, _service, _qos, _pin, exclude, rpc) => {
      if (exclude?.includes(node)) throw new Error('no free node');
      return { node, rpc: rpc || 'echo' } as Awaited<ReturnType<JobHub['decide']>>;
    },
    runOn(call, reply) {
      open++;
      const answer = (value: unknown) => {
        open--;
        reply({ ok: true, value, rpc: call.rpc, ms: 1, node });
      };
      if (r.auto) setImmediate(() => answer({ echoed: call.input, by: id }));
      else r.calls.push({ call, answer });
    },
    forwardedTo: () => 0,
  };
  const store = await clusterStore(link, join(dir, prefix));
  r.jobs = await openJobs({
    queue,
    blobs: openBlobs(store, { graceMs: 60_000, maxUploads: 4 }),
    hub,
    manifest: async () => ({ services: { greet: {} } }) as unknown as Manifest,
    log: { info: () => {}, warn: () => {} },
    pumpMs: 20,
  });
  opened.push({ jobs: r.jobs, link });
  return r;
}

const greet = (input: unknown) => ({ app: 'greet', service: 'greet', rpc: 'echo', input });
const stateOf = (r: TestRelay, id: string) => r.jobs.view(id)?.state;

it('runs 50 jobs submitted across two relays once each, and each relay sees them all', async () => {
  const prefix = `t${++prefixes}:`;
  const a = await relay('a', prefix);
  const b = await relay('b', prefix);
  const ids: string[] = [];
  for (let i = 0; i < 50; i++) {
    const { job } = await (i % 2 ? a : b).jobs.submit('admin', greet(i));
    ids.push(job.id);
  }
  for (const r of [a, b])
    await until(
      () => ids.every((id) => stateOf(r, id) === 'succeeded'),
      `relay ${r.id} sees 50 succeeded`,
      60_000,
    );
  for (const [i, id] of ids.entries()) {
    const view = a.jobs.view(id)!;
    expect(view.attempts).toBe(1);
    expect((view.result as { echoed: number }).echoed).toBe(i);
    expect(b.jobs.view(id)?.result).toEqual(view.result);
  }
  expect(a.jobs.counts().succeeded).toBe(50);
  // One key from one owner makes one job, whichever relay is asked.
  const first = await a.jobs.submit('admin', { ...greet('k'), idempotencyKey: 'once' });
  const again = await b.jobs.submit('admin', { ...greet('k'), idempotencyKey: 'once' });
  expect([first.created, again.created, again.job.id]).toEqual([true, false, first.job.id]);
}, 120_000);

it('a relay that stops without a word has its jobs finished by the other, none twice, watched there', async () => {
  const prefix = `t${++prefixes}:`;
  const a = await relay('a', prefix, false);
  const ids: string[] = [];
  for (let i = 0; i < 12; i++) ids.push((await a.jobs.submit('admin', greet(i))).job.id);
  // Its node takes 4 (its slots) and answers none; 8 more are held or still in the stream.
  await until(() => a.calls.length === 4, 'four runs started on a');
  const b = await relay('b', prefix);
  const running = ids.find((id) => stateOf(a, id) === 'running')!;
  const seen: JobView['state'][] = [];
  b.jobs.watch(running, (v) => seen.push(v.state));
  // a dies: its runs are never answered, its link goes without a goodbye.
  a.auto = false;
  await a.jobs.close();
  await a.link.close();
  for (const c of a.calls) c.answer('too late'); // a stopped: never recorded
  await until(
    () => ids.every((id) => stateOf(b, id) === 'succeeded'),
    'b finishes all twelve',
    60_000,
  );
  for (const id of ids) {
    const v = b.jobs.view(id)!;
    expect((v.result as { by: string }).by).toBe('b');
  }
  const taken = b.jobs.view(running)!;
  expect(taken.attempts).toBe(2);
  expect(taken.reasons?.[0]).toMatch(/stopped while it ran/);
  expect(seen).toContain('queued');
  expect(seen.at(-1)).toBe('succeeded');
  // What Redis keeps says succeeded once, with b's result: a relay that reads it all agrees.
  const c = await relay('c', prefix);
  for (const id of ids) expect(c.jobs.view(id)?.result).toMatchObject({ by: 'b' });
}, 120_000);

it('refuses submits with E_UNAVAILABLE while Redis is down, and takes them again once it is back', async () => {
  const prefix = `t${++prefixes}:`;
  const a = await relay('a', prefix);
  const b = await relay('b', prefix);
  await redis.kill();
  const refused = await a.jobs.submit('admin', greet('down')).catch((e: Error) => e);
  expect((refused as { code?: string }).code).toBe('E_UNAVAILABLE');
  await redis.restart();
  const { job } = await until(
    () => a.jobs.submit('admin', greet('back')).catch(() => undefined),
    'a submit accepted again',
    30_000,
  );
  await until(() => stateOf(b, job.id) === 'succeeded', 'b hears it succeeded', 30_000);
  expect(a.jobs.view(job.id)?.result).toMatchObject({ echoed: 'back' });
}, 120_000);

it('skips garbage in the stream and the job state without a crash', async () => {
  const prefix = `t${++prefixes}:`;
  const raw = await openRedis(redis.url, { prefix });
  opened.push({ jobs: { close: async () => {} } as Jobs, link: raw });
  const c = raw.client;
  await c.xadd(raw.key('jobs', 'queue'), '*', 'id', 'not-a-job');
  await c.xadd(raw.key('jobs', 'queue'), '*', 'nothing', 'here');
  await c.xadd(raw.key('jobs', 'queue'), '*', 'id', '0'.repeat(24));
  await c.hset(raw.key('jobs'), '1'.repeat(24), Buffer.from([0xc1, 0xff]));
  await c.hset(raw.key('jobs', 'meta'), '1'.repeat(24), 'nonsense');
  await c.publish(raw.key('jobs', 'changed'), 'garbage');
  const a = await relay('a', prefix);
  const { job } = await a.jobs.submit('admin', greet('fine'));
  await until(() => stateOf(a, job.id) === 'succeeded', 'a job runs past the garbage', 30_000);
  await until(
    async () => (await c.xlen(raw.key('jobs', 'queue'))) === 0,
    'garbage entries dropped',
  );
}, 60_000);

it('lets only the relay holding a job move it: a stalled relay’s late answer is refused, a final state stays', async () => {
  const prefix = `t${++prefixes}:`;
  const la = await openRedis(redis.url, { prefix });
  const lb = await openRedis(redis.url, { prefix });
  // a stalls (it refreshes once a minute); b claims what a held 3 of its own heartbeats idle.
  const qa = await openJobQueue(la, { relayId: 'qa', heartbeatMs: 60_000, warn: () => {} });
  const qb = await openJobQueue(lb, { relayId: 'qb', heartbeatMs: 50, warn: () => {} });
  opened.push({ jobs: { close: () => qa.close() } as Jobs, link: la });
  opened.push({ jobs: { close: () => qb.close() } as Jobs, link: lb });
  const made = job(jobIds().next());
  expect(await qa.add(made)).toBeUndefined();
  const [held] = await qa.take(1);
  expect(held).toMatchObject({ id: made.id, state: 'queued' });
  const runA = moveTo(held!, 'running', { attempts: 1, node: 'n1' });
  expect(await qa.move(held!, runA)).toBe(true);
  const [claimed] = await until(async () => {
    const t = await qb.take(1);
    return t.length > 0 ? t : undefined;
  }, 'b claims the idle entry');
  expect(claimed).toMatchObject({ id: made.id, state: 'running', attempts: 1 });
  // a answers late: refused, b holds it now.
  expect(await qa.move(runA, moveTo(runA, 'succeeded', { result: 'a' }))).toBe(false);
  const again = moveTo(claimed!, 'queued');
  expect(await qb.move(claimed!, again)).toBe(true);
  const runB = moveTo(again, 'running', { attempts: 2 });
  expect(await qb.move(again, runB)).toBe(true);
  const done = moveTo(runB, 'succeeded', { result: 'b' });
  expect(await qb.move(runB, done)).toBe(true);
  // Final: neither a second success nor a cancel moves it, even forced.
  expect(await qb.move(runB, moveTo(runB, 'succeeded', { result: 'twice' }))).toBe(false);
  expect(await qa.move(runB, moveTo(runB, 'cancelled'), true)).toBe(false);
  expect(await qa.get(made.id)).toMatchObject({ state: 'succeeded', result: 'b', attempts: 2 });
  // Its entry is acknowledged and gone: nobody takes it again.
  expect(await la.client.xlen(la.key('jobs', 'queue'))).toBe(0);
  expect(await qa.take(10)).toEqual([]);
}, 60_000);

it('a relay restarted under its id takes back the jobs it held and runs them again', async () => {
  const prefix = `t${++prefixes}:`;
  const first = await relay('r', prefix, false);
  const ids: string[] = [];
  for (let i = 0; i < 6; i++) ids.push((await first.jobs.submit('admin', greet(i))).job.id);
  await until(() => first.calls.length === 4, 'four runs started');
  await first.jobs.close();
  await first.link.close();
  const again = await relay('r', prefix);
  await until(() => ids.every((id) => stateOf(again, id) === 'succeeded'), 'all six succeeded');
  const attempts = ids.map((id) => again.jobs.view(id)!.attempts).sort();
  expect(attempts).toEqual([1, 1, 2, 2, 2, 2]);
}, 60_000);

it('keeps every blob as a file in the shared directory, so one relay reads what another stored', async () => {
  const prefix = `t${++prefixes}:`;
  const shared = join(dir, 'shared-blobs');
  const stores = [];
  for (let i = 0; i < 2; i++) {
    const l = await openRedis(redis.url, { prefix });
    opened.push({ jobs: { close: async () => {} } as Jobs, link: l });
    stores.push(await clusterStore(l, shared));
  }
  const [one, two] = stores.map((s) => openBlobs(s, { graceMs: 60_000, maxUploads: 2 }));
  const small = new Uint8Array([1, 2, 3]);
  const large = new Uint8Array(3 << 20).map((_, i) => i % 251);
  const a = await one!.putBytes(small);
  const b = await one!.putBytes(large);
  expect(new Uint8Array((await two!.get(a.hash))!)).toEqual(small);
  expect(await two!.stat(b.hash)).toEqual({ size: large.byteLength });
  expect(stores[1]!.location).toBe(shared);
  // The bytes are files, none in Redis: small and large alike.
  const l = opened.at(-1)!.link;
  expect(await l.client.keys(`${prefix}blob*`)).toEqual([]);
  const apps = stores[0]!.apps;
  await apps.put(await manifest('shared', '1.0.0'));
  expect((await stores[1]!.apps.current('shared'))?.version).toBe('1.0.0');
}, 60_000);

it('never gives back from load a job older than a change already heard (a relay starting or resyncing)', async () => {
  const prefix = `t${++prefixes}:`;
  const link = await openRedis(redis.url, { prefix });
  const queue = await openJobQueue(link, { relayId: 'q', heartbeatMs: 60_000, warn: () => {} });
  opened.push({ jobs: { close: () => queue.close() } as Jobs, link });
  const heard: JobView['state'][] = [];
  await queue.listen({ change: (j) => heard.push(j.state), resync: () => {} });
  const made = job(jobIds().next());
  expect(await queue.add(made)).toBeUndefined();
  // Another relay's newer change is heard before the read of every job reaches this one (the
  // race of a relay starting: it listens, then loads); its rev is past the one Redis holds now.
  const later = moveTo(moveTo(made, 'running', { attempts: 1 }), 'succeeded', { result: 'done' });
  const message = Buffer.concat([Buffer.from('9 other '), Buffer.from(encode(later))]);
  await link.client.publish(link.key('jobs', 'changed'), message);
  await until(() => heard.includes('succeeded'), 'the change heard');
  // The older state read after it is not given back: the tables keep what was heard.
  expect((await queue.load()).map((j) => j.id)).not.toContain(made.id);
  // A job with no newer change is loaded as kept.
  const other = job(jobIds().next());
  await queue.add(other);
  expect((await queue.load()).map((j) => j.id)).toContain(other.id);
}, 60_000);
