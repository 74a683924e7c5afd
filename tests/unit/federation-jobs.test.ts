// A job read at a site that does not hold it (relay/federation/jobs.ts): two in-process relays on
// real loopback ports, each the other's peer; site 2 has a third peer that takes connections and
// never answers (a site down behind a live balancer). Site 1 runs its cloud node and its jobs;
// site 2 runs none. A job submitted and finished at site 1 is read through site 2 with its result,
// its result blob and the site that holds it; an unknown id is 404 within the bound although one
// peer never answers; a caller whom site 1 refuses the job is refused it through site 2 too.
import type { AddressInfo, Socket } from 'node:net';
import { createServer } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decode } from '../../core/codec';
import { packBundle } from '../../core/manifest';
import { JOB_READ_TIMEOUT_MS } from '../../relay/federation/jobs';
import type { Relay } from '../../relay/server';
import { greetApp } from '../apps';
import { call as request, type Sites, startSites, TOKEN1, TOKEN2 } from '../federation-sites';
import { jobsApi, jobWhen } from '../jobs-http';
import { until } from '../until';

const KEY = 'federation-jobs-key-0123456789';
/** Far past the read's bound, far below vitest's: a read that hangs fails here, by name. */
const HANG_MS = JOB_READ_TIMEOUT_MS + 25_000;

let sites: Sites;
let site1: Relay;
let site2: Relay;
/** The peer that never answers: its sockets, and the request lines it was sent. */
const hole = { server: createServer(), sockets: new Set<Socket>(), asked: [] as string[] };

/** A JSON request to `relay` with `Bearer <credential>`, cut short past HANG_MS. */
const call = (relay: Relay, credential: string, method: string, path: string, body?: unknown) =>
  request(relay, credential, method, path, body, HANG_MS);

beforeAll(async () => {
  hole.server.on('connection', (s) => {
    hole.sockets.add(s);
    s.on('data', (d) => hole.asked.push(d.toString('latin1').split('\r\n')[0]!));
    s.on('close', () => hole.sockets.delete(s));
  });
  await new Promise<void>((r) => hole.server.listen(0, '127.0.0.1', r));
  const holePort = (hole.server.address() as AddressInfo).port;
  // A result over 1 KiB is a blob: the read through site 2 must bring it.
  const extra = { jobs: { resultBlobBytes: 1024 } };
  sites = await startSites(KEY, [
    { site: 'site-1', token: TOKEN1, cloud: true, extra },
    { site: 'site-2', token: TOKEN2, morePeers: [holePort], extra },
  ]);
  [site1, site2] = sites.relays as [Relay, Relay];
  await until(
    () => site1.hub.nodes().some((n) => n.role === 'cloud'),
    'the cloud node of site 1',
    60_000,
  );
  const b = await greetApp('1.0.0');
  await site1.deploy(packBundle(b.manifest, b.files));
  await until(async () => (await site2.store.apps.current('greet')) !== undefined, 'greet at 2');
}, 120_000);

afterAll(async () => {
  // The silent peer first: requests to it end now instead of at their timeouts.
  for (const s of hole.sockets) s.destroy();
  await new Promise((r) => hole.server.close(r));
  await sites?.close();
});

describe('jobs read at a site that does not hold them', () => {
  let id = '';
  let resultBlob = '';
  const bytes = new Uint8Array(3000).map((_, i) => i % 251);

  it('a job finished at site 1 is read through site 2 with its result blob and its site', async () => {
    // MessagePack: binary input stays binary.
    const made = await jobsApi(site1.url, 'POST', '/api/jobs', {
      body: { app: 'greet', service: 'greet', rpc: 'echo', input: { bytes } },
      token: TOKEN1,
      msgpack: true,
    });
    expect(made.status).toBe(202);
    id = made.body.id!;
    const done = await jobWhen({ url: site1.url, token: TOKEN1 }, id, ['succeeded', 'failed']);
    expect(done.state).toBe('succeeded');
    expect(site2.jobs.get(id)).toBeUndefined();

    const there = await jobsApi(site2.url, 'GET', `/api/jobs/${id}`, {
      token: TOKEN2,
      msgpack: true,
    });
    expect(there.status).toBe(200);
    expect(there.body).toMatchObject({ id, app: 'greet', state: 'succeeded', site: 'site-1' });
    resultBlob = there.body.resultBlob as string;
    expect(resultBlob).toMatch(/^[0-9a-f]{64}$/);
    // The result blob was fetched with it: site 2's blob API serves it.
    const blob = await fetch(`${site2.url}/api/blobs/${resultBlob}`, {
      headers: { authorization: `Bearer ${TOKEN2}` },
    });
    expect(blob.status).toBe(200);
    expect(decode(new Uint8Array(await blob.arrayBuffer()))).toEqual({ bytes });
    // Read, not moved: site 2 still holds no such job, and it stays site 1's.
    expect(site2.jobs.get(id)).toBeUndefined();
    expect(site1.jobs.get(id)?.state).toBe('succeeded');
  }, 90_000);

  it('an unknown id is 404 within the bound though one peer never answers', async () => {
    const unknown = 'zzzzzzzzzzzz000000000000';
    const asked = hole.asked.length;
    const r = await call(site2, TOKEN2, 'GET', `/api/jobs/${unknown}`);
    expect(r.status).toBe(404);
    expect(r.body.error.code).toBe('E_NOT_FOUND');
    // The silent peer was asked, and is named as the one that did not say.
    expect(hole.asked.slice(asked)).toContain(`GET /api/federation/jobs/${unknown} HTTP/1.1`);
    expect(r.body.error.message).toContain('not answered in time');
    // Not a job id: 404 here, and no peer is asked.
    const before = hole.asked.length;
    expect((await call(site2, TOKEN2, 'GET', '/api/jobs/..%2F..%2Fapi%2Fhealth')).status).toBe(404);
    expect(hole.asked.slice(before).some((l) => l.includes('/api/federation/jobs/'))).toBe(false);
  }, 60_000);

  it('a caller site 1 refuses the job is refused it through site 2', async () => {
    // Alice owns project vision, which holds greet; bob has the jobs scope but no part in it.
    for (const user of ['alice', 'bob'])
      expect((await call(site1, TOKEN1, 'POST', '/api/users', { id: user })).status).toBe(201);
    const keyOf = async (user: string) =>
      (await call(site1, TOKEN1, 'POST', `/api/users/${user}/createKey`, { scopes: ['jobs'] })).body
        .key as string;
    const [alice, bob] = [await keyOf('alice'), await keyOf('bob')];
    expect((await call(site1, alice, 'POST', '/api/projects', { id: 'vision' })).status).toBe(201);
    const added = await call(site1, TOKEN1, 'POST', '/api/projects/vision/addApp', {
      app: 'greet',
    });
    expect(added.status).toBe(200);
    expect((await call(site1, bob, 'GET', `/api/jobs/${id}`)).status).toBe(403);
    expect((await call(site1, alice, 'GET', `/api/jobs/${id}`)).status).toBe(200);

    // Once the project has reached site 2 (pushed, relay/federation/objects.ts):
    await until(async () => {
      const r = await call(site2, TOKEN2, 'GET', '/api/projects/vision');
      return r.status === 200 && r.body.apps?.includes('greet');
    }, 'project vision holding greet at site 2');
    const refused = await call(site2, bob, 'GET', `/api/jobs/${id}`);
    expect(refused.status).toBe(403);
    expect(refused.body.error.code).toBe('E_FORBIDDEN');
    expect(refused.body.result).toBeUndefined();
    // Without a credential: refused before any peer is asked.
    const anonymous = await fetch(`${site2.url}/api/jobs/${id}`);
    expect(anonymous.status).toBe(401);
    // Alice, a member, reads it through site 2 with her key made at site 1.
    const read = await call(site2, alice, 'GET', `/api/jobs/${id}`);
    expect(read.status).toBe(200);
    expect(read.body).toMatchObject({ id, state: 'succeeded', site: 'site-1', resultBlob });
  }, 90_000);

  it('the federation route answers only a peer, and only a job id', async () => {
    const route = `/api/federation/jobs/${id}`;
    expect((await call(site1, TOKEN1, 'GET', route)).status).toBe(401);
    expect((await call(site1, KEY, 'GET', '/api/federation/jobs/NOT-AN-ID')).status).toBe(400);
    const res = await fetch(`${site1.url}${route}`, {
      headers: { authorization: `Bearer ${KEY}` },
    });
    expect(res.status).toBe(200);
    const answer = decode(new Uint8Array(await res.arrayBuffer())) as Record<string, unknown>;
    expect(answer).toMatchObject({ site: 'site-1', anonymous: false, view: { id } });
  }, 30_000);
});
