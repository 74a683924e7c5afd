// Two sites federated (seed 003, relay/federation/): two in-process relays on real loopback
// ports, each the other's peer with one shared key. Site 1 runs no node; site 2 runs its cloud
// node. An app deployed at site 1 reaches site 2 unasked; global context spreads and local
// context stays; a blob of site 1 reaches site 2 only when a job there needs it; a call no node
// of site 1 can take is answered by site 2, and the answer says so. The federation routes refuse
// anyone without the key, and hostile bodies by field.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encode } from '../../core/codec';
import { NodeContext } from '../../core/context/client';
import { memoryKV } from '../../core/context/outbox';
import { loadOrCreateIdentity, memoryKeyStore } from '../../core/identity';
import { packBundle } from '../../core/manifest';
import { loadConfig } from '../../relay/cli/config';
import { startOptions } from '../../relay/cli/start';
import { createRelay, type Relay } from '../../relay/server';
import { greetApp } from '../apps';
import { call, type Sites, siteOptions, startSites, TOKEN1, TOKEN2 } from '../federation-sites';
import { freePort } from '../free-port';
import { jobWhen, submitJob } from '../jobs-http';
import { until } from '../until';

const KEY = 'federation-test-key-0123456789';

let sites: Sites;
let site1: Relay;
let site2: Relay;

const api = (relay: Relay, token: string) => (method: string, path: string, body?: unknown) =>
  call(relay, token, method, path, body);

beforeAll(async () => {
  sites = await startSites(KEY, [
    { site: 'site-1', token: TOKEN1 },
    { site: 'site-2', token: TOKEN2, cloud: true },
  ]);
  [site1, site2] = sites.relays as [Relay, Relay];
  await until(
    () => site2.hub.nodes().some((n) => n.role === 'cloud'),
    'the cloud node of site 2',
    60_000,
  );
}, 90_000);

afterAll(() => sites?.close());

describe('two federated sites', () => {
  it('an app deployed at site 1 appears at site 2 without being asked', async () => {
    const b = await greetApp('1.0.0');
    const res = await fetch(`${site1.url}/api/apps`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TOKEN1}`, 'content-type': 'application/octet-stream' },
      body: Buffer.from(packBundle(b.manifest, b.files)),
    });
    expect(res.status).toBeLessThan(300);
    const there = await until(async () => {
      const r = await call(site2, TOKEN2, 'GET', '/api/apps/greet');
      return r.status === 200 && r.body;
    }, 'greet at site 2');
    expect(there.version).toBe('1.0.0');

    // A newer version there too, made current as at site 1.
    const b2 = await greetApp('1.1.0');
    await site1.deploy(packBundle(b2.manifest, b2.files));
    await until(
      async () => (await site2.store.apps.current('greet'))?.version === '1.1.0',
      '1.1.0 at site 2',
    );
  }, 60_000);

  it('global context spreads to site 2; context written local never leaves site 1', async () => {
    const put = api(site1, TOKEN1);
    expect(
      (await put('PUT', '/api/context/greet/kept-here', { value: 'mine', local: true })).status,
    ).toBe(200);
    expect((await put('PUT', '/api/context/greet/shared', { value: { n: 1 } })).status).toBe(200);
    // Pushes go in order: once the later global write is there, the local one would be too.
    const read = api(site2, TOKEN2);
    const shared = await until(async () => {
      const r = await read('GET', '/api/context/greet/shared');
      return r.status === 200 && r.body;
    }, 'the shared key at site 2');
    expect(shared.value).toEqual({ n: 1 });
    expect((await read('GET', '/api/context/greet/kept-here')).status).toBe(404);
    expect((await put('GET', '/api/context/greet/kept-here')).body.value).toBe('mine');
    // And the local flag is what the replica keeps.
    expect(site1.context.replica.state().find((op) => op.key === 'kept-here')?.local).toBe(true);
  }, 60_000);

  it('a blob of site 1 reaches site 2 only when a job there needs it', async () => {
    const res = await fetch(`${site1.url}/api/blobs`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${TOKEN1}`, 'content-type': 'application/octet-stream' },
      body: Buffer.from(encode('input from site 1')),
    });
    expect(res.status).toBe(201);
    const { hash } = (await res.json()) as { hash: string };
    expect(await site2.blobs.stat(hash)).toBeUndefined();
    // Not by a read of the blob API either: only jobs fetch.
    const plain = await fetch(`${site2.url}/api/blobs/${hash}`, {
      headers: { authorization: `Bearer ${TOKEN2}` },
    });
    expect(plain.status).toBe(404);
    expect(await site2.blobs.stat(hash)).toBeUndefined();

    const relay2 = { url: site2.url, token: TOKEN2 };
    const id = await submitJob(relay2, {
      app: 'greet',
      service: 'greet',
      rpc: 'echo',
      inputBlob: hash,
    });
    const done = await jobWhen(relay2, id, ['succeeded', 'failed'], 60_000);
    expect(done.state).toBe('succeeded');
    expect(done.result).toBe('input from site 1');
    expect((await site2.blobs.stat(hash))?.size).toBeGreaterThan(0);
  }, 90_000);

  it('a call no node of site 1 can take is answered by site 2, which the answer names', async () => {
    const answer = await until(
      async () => {
        const r = await call(site1, TOKEN1, 'POST', '/api/call/greet/greet', {
          input: 'hello from site 1',
          rpc: 'echo',
        });
        return r.status === 200 && r.body;
      },
      'a call placed at site 2',
      30_000,
      100,
    );
    expect(answer.value).toBe('hello from site 1');
    expect(answer.site).toBe('site-2');
    expect(site2.hub.nodes().map((n) => n.id)).toContain(answer.node);
    // Nodes never move: site 1 lists none of site 2's.
    expect(site1.hub.nodes()).toEqual([]);

    // A budget shorter than the round trip to site 2 is not offered there (site 2 decides
    // nothing more): the caller gets site 1's own refusal.
    const decided = site2.hub.decisions().length;
    const tight = await call(site1, TOKEN1, 'POST', '/api/call/greet/greet', {
      input: 'x',
      rpc: 'echo',
      qos: { latencyMs: 0.000001 },
    });
    expect(tight.status).toBe(503);
    expect(tight.body.error.code).toBe('E_UNAVAILABLE');
    expect(site2.hub.decisions().length).toBe(decided);
  }, 60_000);

  it('refuses federation requests without the shared key, and hostile bodies by field', async () => {
    const none = await fetch(`${site2.url}/api/federation/context`, { method: 'POST' });
    expect(none.status).toBe(401);
    const wrong = await fetch(`${site2.url}/api/federation/blobs/${'a'.repeat(64)}`, {
      headers: { authorization: 'Bearer not-the-key-at-all-000000' },
    });
    expect(wrong.status).toBe(401);

    const peer = { authorization: `Bearer ${KEY}`, 'content-type': 'application/msgpack' };
    const post = (body: unknown) =>
      fetch(`${site2.url}/api/federation/context`, {
        method: 'POST',
        headers: peer,
        body: Buffer.from(encode(body)),
      }).then(async (r) => ({ status: r.status, body: await r.json() }));
    const op = {
      opId: 'op-1',
      app: 'greet',
      key: 'k',
      scope: 'app',
      stamp: { wall: Date.now(), count: 0, node: 'relay' },
      kind: 'put',
      value: encode(1),
    };
    const local = await post({ op: { ...op, local: true } });
    expect(local.status).toBe(400);
    expect(local.body.error.message).toMatch(/op\.local/);
    const bad = await post({ op: { ...op, scope: 'galaxy' } });
    expect(bad.status).toBe(400);
    expect(bad.body.error.message).toMatch(/scope/);
    const badHash = await fetch(`${site2.url}/api/federation/blobs/nothex`, { headers: peer });
    expect(badHash.status).toBe(400);
  });
});

describe('the local flag where nodes write', () => {
  it("a page's put and a Logic's put mark the op local only when asked", async () => {
    const sent: { t: string; op?: { key: string; local?: true } }[] = [];
    const identity = await loadOrCreateIdentity(memoryKeyStore(), 'local-flag');
    const ctx = new NodeContext(identity, memoryKV());
    await ctx.online((f) => sent.push(f as never));
    void ctx.put('a', 'here', 1, { local: true });
    void ctx.put('a', 'everywhere', 2);
    void ctx.serve('a', { op: 'put', key: 'logic-here', value: 3, local: true });
    const ops = await until(() => {
      const found = sent.filter((f) => f.t === 'ctx-op').map((f) => f.op!);
      return found.length === 3 && found;
    }, 'three ctx-op frames');
    expect(ops.map((op) => [op.key, op.local])).toEqual([
      ['here', true],
      ['everywhere', undefined],
      ['logic-here', true],
    ]);
  });
});

describe('the outbox to a peer that is down', () => {
  it('keeps what it must push across a restart and delivers it once the peer is up', async () => {
    const [port3, port4] = [await freePort(), await freePort()];
    const [dir3, dir4] = [await sites.dir('site-3'), await sites.dir('site-4')];
    const options = (port: number, peer: number, site: string, dataDir: string) =>
      siteOptions(KEY, port, [peer], dataDir, { site, token: TOKEN1 });
    let site3 = await createRelay(options(port3, port4, 'site-3', dir3));
    const b = await greetApp('2.0.0');
    await site3.deploy(packBundle(b.manifest, b.files));
    expect((await call(site3, TOKEN1, 'PUT', '/api/context/greet/late', { value: 7 })).status).toBe(
      200,
    );
    // Nobody listens at site 4's port yet: the pushes wait on disk, and the relay stops.
    await site3.close();
    site3 = await createRelay(options(port3, port4, 'site-3', dir3));
    const site4 = await createRelay(options(port4, port3, 'site-4', dir4));
    try {
      const late = await until(
        async () => {
          const r = await call(site4, TOKEN1, 'GET', '/api/context/greet/late');
          return r.status === 200 && r.body;
        },
        'the context write of site 3 at site 4',
        60_000,
        50,
      );
      expect(late.value).toBe(7);
      expect((await site4.store.apps.current('greet'))?.version).toBe('2.0.0');
    } finally {
      await site3.close();
      await site4.close();
    }
  }, 90_000);
});

describe('brume start --peer --site, BRUME_PEER_KEYS', () => {
  const pkg = '/opt/brume-package';
  it('pairs each peer with its key, in order; a count that differs is refused by name', async () => {
    const c = await loadConfig(
      { peer: ['http://paris.example:8787', 'https://tokyo.example'], site: 'lyon' },
      { BRUME_PEER_KEYS: `${KEY}-a,${KEY}-b` },
      pkg,
    );
    expect(startOptions(c).federation).toEqual({
      site: 'lyon',
      peers: [
        { url: 'http://paris.example:8787', key: `${KEY}-a` },
        { url: 'https://tokyo.example', key: `${KEY}-b` },
      ],
    });
    const short = await loadConfig({ peer: ['http://paris.example:8787'] }, {}, pkg);
    expect(() => startOptions(short)).toThrow(/peerKeys: one key per peer/);
    expect(startOptions(await loadConfig({}, {}, pkg)).federation).toBeUndefined();
    await expect(loadConfig({ peer: ['ftp://x.example'] }, {}, pkg)).rejects.toThrow(
      /--peer must be http\(s\) URLs/,
    );
  });
});
