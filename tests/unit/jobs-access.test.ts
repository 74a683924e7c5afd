// Per-app access to jobs beyond the `jobs` scope: the relay's `jobAccess` option (which projects
// fill in, relay/projects.ts) decides who may submit, read and cancel an app's jobs. A relay in
// this process on a real port: the option has no flag.
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { Relay } from '../../relay/server';
import { greetApp } from '../apps';
import { jobsApi } from '../jobs-http';
import { inProcessRelay } from '../relay-process';

let deny: 'read' | 'write' = 'write';
let server: Awaited<ReturnType<typeof inProcessRelay>>;
let relay: Relay;
beforeAll(async () => {
  server = await inProcessRelay({
    apps: [await greetApp('1.0.0')],
    jobAccess: (_p, app, what) => !(app === 'greet' && what === deny),
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
