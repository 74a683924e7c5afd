// The relay's job options that have no flag, on a relay in this process on a real port: per-app
// access beyond the `jobs` scope (`jobAccess`, which projects fill in: who may submit, read and
// cancel an app's jobs), the bound on SSE watchers (`jobs.maxWatchers`), and what an anonymous
// submitter may not do (jobs.maxActivePerAddress, inputBlob, idempotency keys) and the bound on
// the inline inputs held (`jobs.maxActiveInputBytes`).
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { Relay } from '../../relay/server';
import { greetApp } from '../apps';
import { jobsApi } from '../jobs-http';
import { inProcessRelay } from '../relay-process';
import { until } from '../until';

let deny: 'read' | 'write' | undefined = 'write';
let server: Awaited<ReturnType<typeof inProcessRelay>>;
let relay: Relay;
beforeAll(async () => {
  server = await inProcessRelay({
    apps: [await greetApp('1.0.0')],
    jobAccess: (_p, app, what) => !(app === 'greet' && what === deny),
    jobs: { maxWatchers: 1, maxActivePerAddress: 3, maxActiveInputBytes: 100_000 },
  });
  relay = server.relay;
});
afterAll(() => server.close());

it('refuses what the access function denies, naming the app, and lists only what it may read', async () => {
  const token = relay.admin.token;
  const body = { app: 'greet', service: 'greet', rpc: 'echo', input: 1 };
  const refused = await jobsApi(relay.url, 'POST', '/api/jobs', { body, token });
  expect([refused.status, refused.body.error?.message]).toEqual([
    403,
    'this credential may not submit jobs of app "greet"',
  ]);

  deny = 'read';
  const ok = await jobsApi(relay.url, 'POST', '/api/jobs', { body, token });
  expect(ok.status).toBe(202);
  const read = await jobsApi(relay.url, 'GET', `/api/jobs/${ok.body.id}`, { token });
  expect([read.status, read.body.error?.code]).toEqual([403, 'E_FORBIDDEN']);
  const listed = await jobsApi(relay.url, 'GET', '/api/jobs', { token });
  expect(listed.body.jobs).toEqual([]);
  const cancelled = await jobsApi(relay.url, 'DELETE', `/api/jobs/${ok.body.id}`, { token });
  expect([cancelled.status, cancelled.body.state]).toEqual([200, 'cancelled']);
});

it('bounds the watchers open at once: one over is 413 E_LIMIT, and a closed one frees its place', async () => {
  deny = undefined;
  const body = { app: 'greet', service: 'greet', rpc: 'echo', input: 2 };
  // Anonymous, and no node: the job stays queued, its watch open.
  const submit = await jobsApi(relay.url, 'POST', '/api/jobs', { body });
  expect(submit.status).toBe(202);
  const path = `${relay.url}/api/jobs/${submit.body.id}/watch`;
  const first = new AbortController();
  const open = await fetch(path, { signal: first.signal });
  expect(open.status).toBe(200);
  const reader = open.body!.getReader();
  await reader.read(); // the first event: the stream is open and counted
  const over = await fetch(path);
  expect(over.status).toBe(413);
  expect(((await over.json()) as { error: { code: string } }).error.code).toBe('E_LIMIT');
  first.abort();
  const again = async () => {
    const r = await fetch(path);
    await r.body?.cancel();
    return r.status === 200;
  };
  await until(again, 'the watcher place freed');
});

it('gives an anonymous address no blob input, no shared idempotency key and a few jobs at most', async () => {
  deny = undefined;
  const body = { app: 'greet', service: 'greet', rpc: 'echo', input: 3 };
  const blob = await jobsApi(relay.url, 'POST', '/api/jobs', {
    body: { ...body, input: undefined, inputBlob: 'a'.repeat(64) },
  });
  expect([blob.status, blob.body.error?.message]).toEqual([
    401,
    'inputBlob: an input from a blob needs a credential with scope jobs',
  ]);
  // The key is ignored: two submits make two jobs (an address may be many people's).
  const keyed = { ...body, idempotencyKey: 'same' };
  const a = await jobsApi(relay.url, 'POST', '/api/jobs', { body: keyed });
  const b = await jobsApi(relay.url, 'POST', '/api/jobs', { body: keyed });
  expect([a.status, b.status]).toEqual([202, 202]);
  expect(a.body.id).not.toBe(b.body.id);
  // With the watch test's job, three from this address are queued: the fourth is refused.
  const over = await jobsApi(relay.url, 'POST', '/api/jobs', { body });
  expect([over.status, over.body.error?.code]).toEqual([413, 'E_LIMIT']);
  expect(over.body.error?.message).toContain('limit 3 without a credential');
  expect(
    (await jobsApi(relay.url, 'POST', '/api/jobs', { body, token: relay.admin.token })).status,
  ).toBe(202);
});

it('bounds the bytes of the inline inputs held by the jobs queued or running', async () => {
  const token = relay.admin.token;
  const body = { app: 'greet', service: 'greet', rpc: 'echo', input: 'x'.repeat(60_000) };
  expect((await jobsApi(relay.url, 'POST', '/api/jobs', { body, token })).status).toBe(202);
  const over = await jobsApi(relay.url, 'POST', '/api/jobs', { body, token });
  expect([over.status, over.body.error?.code]).toEqual([413, 'E_LIMIT']);
  expect(over.body.error?.message).toContain('(limit 100000)');
});
