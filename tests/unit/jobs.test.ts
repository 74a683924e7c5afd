// Jobs through a real relay process on a real port, run by its own cloud node (Logics in worker
// threads): submit, read, list, watch (SSE), cancel, idempotency, MessagePack, results as blobs,
// deadlines, bounds and bad input named by field, and a job of about 30 s that finishes while no
// one holds a connection to it. The echo Logic's `spin` is real work (an LCG loop of n steps),
// sized from a measured rate, never a sleep.
import { rm } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decode } from '../../core/codec';
import { packBundle } from '../../core/manifest';
import { greetApp } from '../apps';
import { jobsApi, jobWhen, spinRate, submitJob } from '../jobs-http';
import { deploy, type RelayProcess, startRelay } from '../relay-process';
import { until } from '../until';

let relay: RelayProcess;
let rate = 0;
/** Spin steps that take about `ms` on the cloud node. */
const spinFor = (ms: number) => Math.round(rate * ms);
const greet = (input: unknown, rpc = 'echo') => ({ app: 'greet', service: 'greet', rpc, input });

beforeAll(async () => {
  relay = await startRelay({
    args: [
      '--logic-timeout-ms',
      '120000',
      '--job-result-blob-kib',
      '1',
      '--max-job-input-kib',
      '4',
    ],
  });
  const b = await greetApp('1.0.0');
  const res = await deploy(relay, packBundle(b.manifest, b.files));
  expect(res.ok).toBe(true);
  rate = await spinRate(relay.url);
}, 120_000);
afterAll(async () => {
  await relay?.stop();
  if (relay) await rm(relay.dataDir, { recursive: true, force: true });
});

describe('jobs on a relay and its cloud node', () => {
  it('a job of about 30 s finishes while the submitter holds no connection, and is read later', async () => {
    const n = spinFor(30_000);
    const id = await submitJob(relay, greet({ n }, 'spin'));
    // Nothing is held open: the relay has the job on disk; read it back only when it is over.
    const running = await jobWhen(relay, id, ['running'], 30_000);
    expect(running.node).toMatch(/^[0-9a-f]{32}$/);
    const done = await jobWhen(relay, id, ['succeeded', 'failed'], 180_000);
    expect(done.state).toBe('succeeded');
    expect((done.result as { n: number }).n).toBe(n);
    expect(done.attempts).toBe(1);
    expect((done.finished as number) - (done.started as number)).toBeGreaterThan(10_000);
  }, 240_000);

  it('answers 202 { id, state } at once, runs the job, and GET, list and watch show it', async () => {
    const r = await jobsApi(relay.url, 'POST', '/api/jobs', {
      body: greet('hello'),
      token: relay.token,
    });
    expect(r.status).toBe(202);
    expect(r.body).toEqual({ id: expect.stringMatching(/^[0-9a-z]{24}$/), state: 'queued' });
    const done = await jobWhen(relay, r.body.id!);
    expect(done).toMatchObject({ id: r.body.id, state: 'succeeded', result: 'hello', attempts: 1 });
    for (const k of ['created', 'started', 'finished']) expect(done[k]).toBeTypeOf('number');

    const metrics = await fetch(`${relay.url}/metrics`, {
      headers: { authorization: `Bearer ${relay.token}` },
    });
    expect(await metrics.text()).toMatch(/^brume_jobs\{state="succeeded"\} [1-9]/m);
    const counts = await jobsApi(relay.url, 'GET', '/api/jobs/counts', { token: relay.token });
    expect(counts.body).toMatchObject({
      queued: expect.any(Number),
      succeeded: expect.any(Number),
    });
    const listed = await jobsApi(relay.url, 'GET', '/api/jobs?state=succeeded&app=greet', {
      token: relay.token,
    });
    expect((listed.body.jobs as { id: string }[]).map((j) => j.id)).toContain(r.body.id);

    // A watch on a finished job says so and closes.
    const res = await fetch(`${relay.url}/api/jobs/${r.body.id}/watch`, {
      headers: { authorization: `Bearer ${relay.token}` },
    });
    expect(res.headers.get('content-type')).toBe('text/event-stream');
    expect(await res.text()).toMatch(/^event: state\ndata: \{.*"state":"succeeded".*\}\n\n$/);
  });

  it('streams each state of a job over SSE until it is over', async () => {
    const id = await submitJob(relay, greet({ n: spinFor(1500) }, 'spin'));
    const res = await fetch(`${relay.url}/api/jobs/${id}/watch`, {
      headers: { authorization: `Bearer ${relay.token}` },
    });
    const text = await res.text(); // ends when the relay closes the stream
    const states = [...text.matchAll(/"state":"(\w+)"/g)].map((m) => m[1]);
    expect(states.at(-1)).toBe('succeeded');
    expect(states).toContain('running');
  });

  it('pages through the list with limit and after', async () => {
    const ids = [];
    for (let i = 0; i < 5; i++) ids.push(await submitJob(relay, { ...greet(i), priority: -1 }));
    const seen: string[] = [];
    let after = '';
    for (let page = 0; page < 100; page++) {
      const q = `/api/jobs?app=greet&limit=2${after ? `&after=${after}` : ''}`;
      const r = await jobsApi(relay.url, 'GET', q, { token: relay.token });
      const jobs = r.body.jobs as { id: string }[];
      expect(jobs.length).toBeLessThanOrEqual(2);
      seen.push(...jobs.map((j) => j.id));
      if (!r.body.next) break;
      after = r.body.next as string;
    }
    expect([...seen].sort()).toEqual(seen);
    for (const id of ids) expect(seen).toContain(id);
  });

  it('takes and answers MessagePack; a result over the threshold is a blob of its MessagePack', async () => {
    const bytes = new Uint8Array(3000).map((_, i) => i % 251);
    const r = await jobsApi(relay.url, 'POST', '/api/jobs', {
      body: greet({ bytes }),
      token: relay.token,
      msgpack: true,
    });
    expect(r.status).toBe(202);
    await jobWhen(relay, r.body.id!);
    const got = await jobsApi(relay.url, 'GET', `/api/jobs/${r.body.id}`, {
      token: relay.token,
      msgpack: true,
    });
    expect(got.body.state).toBe('succeeded');
    expect(got.body.result).toBeUndefined();
    const hash = got.body.resultBlob as string;
    expect(hash).toMatch(/^[0-9a-f]{64}$/);
    // A result blob is no app's file: reading it needs the jobs scope (PROTOCOL.md §6).
    expect((await fetch(`${relay.url}/api/blobs/${hash}`)).status).toBe(401);
    const blob = await fetch(`${relay.url}/api/blobs/${hash}`, {
      headers: { authorization: `Bearer ${relay.token}` },
    });
    expect(decode(new Uint8Array(await blob.arrayBuffer()))).toEqual({ bytes });
    // A small binary result comes back inline.
    const small = new Uint8Array([1, 2, 3]);
    const s = await jobsApi(relay.url, 'POST', '/api/jobs', {
      body: greet(small),
      token: relay.token,
      msgpack: true,
    });
    await jobWhen(relay, s.body.id!);
    const sg = await jobsApi(relay.url, 'GET', `/api/jobs/${s.body.id}`, {
      token: relay.token,
      msgpack: true,
    });
    expect(sg.body.result).toEqual(small);
  });

  it('answers the same job for the same idempotency key and owner (200), another for another owner', async () => {
    const body = { ...greet('once'), idempotencyKey: 'order-17' };
    const a = await jobsApi(relay.url, 'POST', '/api/jobs', { body, token: relay.token });
    const b = await jobsApi(relay.url, 'POST', '/api/jobs', { body, token: relay.token });
    expect(a.status).toBe(202);
    expect(b.status).toBe(200);
    expect(b.body.id).toBe(a.body.id);
    // At once, with a new key: still one job.
    const burst = await Promise.all(
      Array.from({ length: 8 }, () =>
        jobsApi(relay.url, 'POST', '/api/jobs', {
          body: { ...body, idempotencyKey: 'order-18' },
          token: relay.token,
        }),
      ),
    );
    expect(new Set(burst.map((r) => r.body.id)).size).toBe(1);
    expect(burst.filter((r) => r.status === 202).length).toBe(1);
    const anon = await jobsApi(relay.url, 'POST', '/api/jobs', { body });
    expect(anon.status).toBe(202);
    expect(anon.body.id).not.toBe(a.body.id);
    // An anonymous job is read by its id alone; an admin's is not.
    expect((await jobsApi(relay.url, 'GET', `/api/jobs/${anon.body.id}`)).status).toBe(200);
    const denied = await jobsApi(relay.url, 'GET', `/api/jobs/${a.body.id}`);
    expect(denied.status).toBe(401);
    expect((await jobsApi(relay.url, 'GET', '/api/jobs')).status).toBe(401);
  });

  it('cancels a running job, and drops its result when the node answers after', async () => {
    const id = await submitJob(relay, greet({ n: spinFor(3000) }, 'spin'));
    await jobWhen(relay, id, ['running']);
    const calls = async () =>
      (await jobsApi(relay.url, 'GET', '/api/calls', { token: relay.token })).body as unknown as {
        variant: string;
        ok: boolean;
        at: number;
      }[];
    const t = Date.now();
    const c = await jobsApi(relay.url, 'DELETE', `/api/jobs/${id}`, { token: relay.token });
    expect(c.status).toBe(200);
    expect(c.body.state).toBe('cancelled');
    // The node finishes the spin and answers; the job stays cancelled, with no result.
    await until(
      async () => (await calls()).some((r) => r.variant === 'spin' && r.at >= t),
      'the cancelled run to answer',
      60_000,
      100,
    );
    const after = await jobsApi(relay.url, 'GET', `/api/jobs/${id}`, { token: relay.token });
    expect(after.body.state).toBe('cancelled');
    expect(after.body.result).toBeUndefined();
    const again = await jobsApi(relay.url, 'DELETE', `/api/jobs/${id}`, { token: relay.token });
    expect(again.status).toBe(409);
    expect(again.body.error?.code).toBe('E_CONFLICT');
  });

  it('refuses bad input naming the field, unknown apps and services, and inputs over the bound', async () => {
    const post = (body: unknown, token = relay.token) =>
      jobsApi(relay.url, 'POST', '/api/jobs', { body, token });
    const cases: [unknown, number, RegExp][] = [
      [{ service: 'greet', input: 1 }, 400, /app/],
      [{ ...greet(1), priority: 1000 }, 400, /priority/],
      [{ ...greet(1), deadlineMs: -5 }, 400, /deadlineMs/],
      [{ ...greet(1), inputBlob: 'a'.repeat(64) }, 400, /exactly one of input and inputBlob/],
      [{ app: 'greet', service: 'greet' }, 400, /exactly one of input and inputBlob/],
      [{ ...greet(1), colour: 'red' }, 400, /colour/],
      [{ ...greet(1), qos: { accuracy: 2 } }, 400, /qos\.accuracy/],
      [{ ...greet(1), idempotencyKey: 'has space' }, 400, /idempotencyKey/],
      [{ ...greet(1), app: 'nope' }, 404, /app: no app named "nope"/],
      [{ ...greet(1), service: 'nope' }, 404, /service: app "greet" has no service "nope"/],
      [{ app: 'greet', service: 'greet', inputBlob: 'b'.repeat(64) }, 404, /inputBlob: no blob/],
      [greet('x'.repeat(5000)), 413, /max-job-input-kib/],
      [greet('x'.repeat(100_000)), 413, /limit 73728: twice --max-job-input-kib/],
    ];
    for (const [body, status, message] of cases) {
      const r = await post(body);
      expect([r.status, r.body.error?.message]).toEqual([status, expect.stringMatching(message)]);
    }
    let deep: unknown = 1;
    for (let i = 0; i < 500; i++) deep = [deep];
    const nested = await post(greet(deep));
    expect([nested.status, nested.body.error?.code]).toEqual([400, 'E_CODEC']);
    expect(nested.body.error?.message).toMatch(/^input/);
    const raw = await jobsApi(relay.url, 'POST', '/api/jobs', {
      raw: '{not json',
      token: relay.token,
    });
    expect(raw.status).toBe(400);
    const unknownKey = await post(greet(1), 'brume_not-a-key-this-relay-knows');
    expect(unknownKey.status).toBe(401);
    expect((await jobsApi(relay.url, 'GET', '/api/jobs/nope', { token: relay.token })).status).toBe(
      404,
    );
    expect(
      (await jobsApi(relay.url, 'GET', '/api/jobs?limit=5000', { token: relay.token })).body.error
        ?.message,
    ).toMatch(/limit/);
  });
});

describe('jobs with no node to run them', () => {
  let bare: RelayProcess;
  beforeAll(async () => {
    bare = await startRelay({ args: ['--no-cloud', '--max-jobs', '3'] });
    const b = await greetApp('1.0.0');
    expect((await deploy(bare, packBundle(b.manifest, b.files))).ok).toBe(true);
  }, 60_000);
  afterAll(async () => {
    await bare?.stop();
    if (bare) await rm(bare.dataDir, { recursive: true, force: true });
  });

  it('keeps a job queued saying why, fails it at its deadline with E_TIMEOUT, and bounds the queue', async () => {
    const waiting = await submitJob(bare, { ...greet(1), deadlineMs: 1500 });
    const view = await until(async () => {
      const r = await jobsApi(bare.url, 'GET', `/api/jobs/${waiting}`, { token: bare.token });
      return r.body.waiting ? r.body : undefined;
    }, 'a waiting reason');
    expect(view.waiting).toMatch(/no node is connected/);
    const failed = await jobWhen(bare, waiting);
    expect(failed.state).toBe('failed');
    expect(failed.error).toMatchObject({
      code: 'E_TIMEOUT',
      message: expect.stringMatching(/deadline/),
    });

    // Submitted at once: the bound holds for submits still being written.
    const burst = await Promise.all(
      Array.from({ length: 6 }, (_, i) =>
        jobsApi(bare.url, 'POST', '/api/jobs', { body: greet(i), token: bare.token }),
      ),
    );
    expect(burst.map((r) => r.status).sort()).toEqual([202, 202, 202, 413, 413, 413]);
    const kept = burst.filter((r) => r.status === 202).map((r) => r.body.id!);
    const over = await jobsApi(bare.url, 'POST', '/api/jobs', {
      body: greet(4),
      token: bare.token,
    });
    expect(over.status).toBe(413);
    expect(over.body.error).toMatchObject({
      code: 'E_LIMIT',
      message: expect.stringMatching(/--max-jobs 3/),
    });
    await jobsApi(bare.url, 'DELETE', `/api/jobs/${kept[0]}`, { token: bare.token });
    expect(
      (await jobsApi(bare.url, 'POST', '/api/jobs', { body: greet(4), token: bare.token })).status,
    ).toBe(202);
  });
});
