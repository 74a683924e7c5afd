// The relay's job options that have no flag, on a relay in this process on a real port: per-app
// access beyond the `jobs` scope (`jobAccess`, which projects fill in: who may submit, read and
// cancel an app's jobs) and the bound on SSE watchers (`jobs.maxWatchers`).
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { Relay } from '../../relay/server';
import { greetApp } from '../apps';
import { jobsApi } from '../jobs-http';
import { inProcessRelay } from '../relay-process';
import { until } from '../until';

let deny: 'read' | 'write' = 'write';
let server: Awaited<ReturnType<typeof inProcessRelay>>;
let relay: Relay;
beforeAll(async () => {
  server = await inProcessRelay({
    apps: [await greetApp('1.0.0')],
    jobAccess: (_p, app, what) => !(app === 'greet' && what === deny),
    jobs: { maxWatchers: 1 },
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
  const body = { app: 'greet', service: 'greet', rpc: 'echo', input: 2 };
  // Anonymous (jobAccess is not asked), and no node: the job stays queued, its watch open.
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
