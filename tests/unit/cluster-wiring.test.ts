// Relays sharing one Redis (issue 17, `--redis`): two relays in this process on real ports and a
// real redis-server share apps, API keys, the admin token, the trust list, users and projects, a
// deploy at one reaches the other's nodes, and /api/ready follows Redis down and back; a bad
// --redis URL is refused naming redis; and a whole cluster of relay processes behind a real
// HAProxy (tests/cluster-process.ts) serves HTTP and WebSockets through the balancer, which
// takes a killed relay out.
import { tmpdir } from 'node:os';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { packBundle } from '../../core/manifest';
import { greetApp } from '../apps';
import { brume } from '../cli-process';
import { type ClusterProcess, startCluster } from '../cluster-process';
import { type Relay, useRelayPair } from '../cluster-relays';
import { joinRaw } from '../raw-node';
import { startRedis } from '../redis-process';
import { deploy, inProcessRelay } from '../relay-process';
import { until } from '../until';

/** A P-256 public key as a node's (base64url SPKI), for the trust list. */
async function nodeKey(): Promise<string> {
  const pair = await crypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, [
    'sign',
    'verify',
  ]);
  const spki = await crypto.subtle.exportKey('spki', pair.publicKey);
  return Buffer.from(spki).toString('base64url');
}

const json = (token: string) => ({
  authorization: `Bearer ${token}`,
  'content-type': 'application/json',
});

describe('two relays on one Redis', () => {
  const pair = useRelayPair('cluster-blobs');

  it('share one admin token, made by the first relay; rotated, both take the new one', async () => {
    expect(pair.a.relay.admin.created).toBe(true);
    expect(pair.b.relay.admin.created).toBe(false);
    expect(pair.b.relay.admin.token).toBe(pair.a.relay.admin.token);
    const old = pair.a.relay.admin.token;
    const keysAt = (url: string, token: string) =>
      fetch(`${url}/api/keys`, { headers: json(token) }).then((r) => r.status);
    expect(await keysAt(pair.b.relay.url, old)).toBe(200);
    const rotated = await brume(['token', '--redis', pair.redis.url, '--rotate', '--reveal']);
    expect(rotated.code, rotated.stderr).toBe(0);
    const fresh = rotated.stdout.trim();
    expect(fresh).toMatch(/^[\w-]{32,}$/);
    expect(fresh).not.toBe(old);
    for (const r of [pair.a, pair.b]) {
      await until(async () => (await keysAt(r.relay.url, fresh)) === 200, 'the new token to work');
      expect(await keysAt(r.relay.url, old)).toBe(401);
    }
    const read = await brume(['token', '--redis', pair.redis.url, '--reveal']);
    expect(read.stdout.trim()).toBe(fresh);
  }, 60_000);

  it("an app deployed at A is listed at B, and B's nodes hear of its new version", async () => {
    const { node } = await joinRaw(pair.b.ws);
    const v1 = await greetApp('1.0.0');
    const res = await deploy(
      { url: pair.a.relay.url, token: pair.a.relay.admin.token },
      packBundle(v1.manifest, v1.files),
    );
    expect(res.status).toBe(201);
    const listed = (await (await fetch(`${pair.b.relay.url}/api/apps`)).json()) as {
      name: string;
    }[];
    expect(listed.map((x) => x.name)).toContain('greet');
    expect((await node.next('app', 20_000)).version).toBe('1.0.0');
    const v2 = await greetApp('1.1.0');
    await pair.a.relay.deploy(packBundle(v2.manifest, v2.files));
    expect((await node.next('app', 20_000)).version).toBe('1.1.0');
    const at = (await (await fetch(`${pair.b.relay.url}/api/apps/greet`)).json()) as {
      version: string;
    };
    expect(at.version).toBe('1.1.0');
    // Its files are in the shared blob directory: B serves them.
    const file = Object.values(v2.manifest.files)[0]!;
    expect((await fetch(`${pair.b.relay.url}/api/blobs/${file.sha256}`)).status).toBe(200);
    node.ws.close();
  }, 60_000);

  it('an API key made at A works at B, and revoked at A is refused at B', async () => {
    const made = await fetch(`${pair.a.relay.url}/api/keys`, {
      method: 'POST',
      headers: json(pair.a.relay.admin.token),
      body: JSON.stringify({ scopes: ['metrics'], label: 'cluster' }),
    });
    expect(made.status).toBe(201);
    const { id, key } = (await made.json()) as { id: string; key: string };
    const metrics = () =>
      fetch(`${pair.b.relay.url}/metrics`, { headers: { authorization: `Bearer ${key}` } });
    await until(async () => (await metrics()).status === 200, 'the key to work at B');
    const gone = await fetch(`${pair.a.relay.url}/api/keys/${id}`, {
      method: 'DELETE',
      headers: { authorization: `Bearer ${pair.a.relay.admin.token}` },
    });
    expect(gone.status).toBe(204);
    await until(async () => (await metrics()).status === 401, 'the key to be refused at B');
  });

  it('a fog key trusted at A is trusted at B; revoked at A, not any more', async () => {
    const publicKey = await nodeKey();
    const added = await fetch(`${pair.a.relay.url}/api/trust`, {
      method: 'POST',
      headers: json(pair.a.relay.admin.token),
      body: JSON.stringify({ publicKey, label: 'lab' }),
    });
    expect(added.status).toBe(201);
    await until(() => pair.b.relay.admin.trusted(publicKey), 'B to trust the key');
    const list = (await (
      await fetch(`${pair.b.relay.url}/api/trust`, { headers: json(pair.b.relay.admin.token) })
    ).json()) as { publicKey: string; label: string }[];
    expect(list.find((e) => e.publicKey === publicKey)?.label).toBe('lab');
    // Changes at both at once all land (optimistic saves retried on the newer list).
    const others = await Promise.all([nodeKey(), nodeKey(), nodeKey(), nodeKey()]);
    await Promise.all(
      others.map((k, i) => (i % 2 ? pair.a : pair.b).relay.admin.trust(k, `k${i}`)),
    );
    for (const r of [pair.a, pair.b])
      await until(() => others.every((k) => r.relay.admin.trusted(k)), 'every key at both');
    await pair.a.relay.admin.revoke(publicKey);
    await until(() => !pair.b.relay.admin.trusted(publicKey), 'B to drop the key');
  });

  it('users and projects made at A are seen at B; changes at both land', async () => {
    const post = (r: Relay, path: string, body: unknown) =>
      fetch(`${r.relay.url}${path}`, {
        method: 'POST',
        headers: json(r.relay.admin.token),
        body: JSON.stringify(body),
      });
    expect((await post(pair.a, '/api/users', { id: 'ada' })).status).toBe(201);
    const ids = ['p1', 'p2', 'p3', 'p4'];
    const made = await Promise.all(
      ids.map((id, i) => post(i % 2 ? pair.a : pair.b, '/api/projects', { id })),
    );
    expect(made.map((r) => r.status)).toEqual([201, 201, 201, 201]);
    for (const r of [pair.a, pair.b]) {
      await until(() => r.relay.projects.userExists('ada'), 'the user at both');
      await until(
        () =>
          ids.every((id) =>
            r.relay.projects.listProjects({ kind: 'admin' } as never).some((p) => p.id === id),
          ),
        'every project at both',
      );
    }
    // The same id made at B after A: refused there as it would be on one relay.
    expect((await post(pair.b, '/api/users', { id: 'ada' })).status).toBe(409);
  });

  it('the hub of each relay is known by its cluster relay id', async () => {
    const { challenge, node } = await joinRaw(pair.a.ws);
    expect(challenge.relayId).toBe(pair.a.relay.cluster!.relayId);
    expect(pair.a.relay.cluster!.relayId).not.toBe(pair.b.relay.cluster!.relayId);
    node.ws.close();
  });

  it('/api/ready reports Redis ok, not ok while it is down, and ok again once back', async () => {
    const ready = async (r: Relay) => {
      const res = await fetch(`${r.relay.url}/api/ready`);
      const body = (await res.json()) as {
        checks: Record<string, { ok: boolean; detail: string }>;
      };
      return { status: res.status, redis: body.checks.redis! };
    };
    const up = await ready(pair.a);
    expect(up.status).toBe(200);
    expect(up.redis.ok).toBe(true);
    expect(up.redis.detail).toMatch(/answers PING/);
    await pair.redis.kill();
    const down = await until(async () => {
      const r = await ready(pair.b);
      return !r.redis.ok && r;
    }, 'B to see Redis down');
    expect(down.status).toBe(503);
    expect(down.redis.detail).toMatch(/Redis is unreachable/);
    // A write needing Redis is refused, typed, and nothing crashes.
    const refused = await fetch(`${pair.a.relay.url}/api/keys`, {
      method: 'POST',
      headers: json(pair.a.relay.admin.token),
      body: JSON.stringify({ scopes: ['call'] }),
    });
    expect(refused.status).toBe(503);
    const { error } = (await refused.json()) as { error: { code: string; message: string } };
    expect(error.code).toBe('E_UNAVAILABLE');
    expect(error.message).toMatch(/Redis at .* is unreachable/);
    // A change made while Redis is away is refused; B still trusts what it heard before.
    await expect(pair.a.relay.admin.trust(await nodeKey(), 'late')).rejects.toThrow(/unreachable/);
    await pair.redis.restart();
    for (const r of [pair.a, pair.b])
      await until(async () => (await ready(r)).redis.ok, 'Redis ok again', 30_000);
    // Both listen again: a trust at A after the restart reaches B.
    const after = await nodeKey();
    await until(
      () => pair.a.relay.admin.trust(after, 'after').then(Boolean, () => false),
      'a trust at A to be taken again',
      30_000,
      200,
    );
    await until(() => pair.b.relay.admin.trusted(after), 'B to hear of it', 30_000);
  }, 60_000);
});

describe('a bad cluster configuration', () => {
  it('a bad --redis URL is refused naming redis, by createRelay and by brume start', async () => {
    await expect(
      inProcessRelay({ redis: 'http://127.0.0.1:6379', blobDir: tmpdir() }),
    ).rejects.toThrow(/redis: .* redis:\/\/host:port/);
    const started = await brume(['start', '--port', '0', '--no-cloud', '--redis', 'nope']);
    expect(started.code).not.toBe(0);
    expect(started.stderr).toMatch(/redis/);
  }, 30_000);

  it('a Redis that does not answer: E_UNAVAILABLE naming Redis; no --blob-dir: refused naming it', async () => {
    const redis = await startRedis();
    try {
      await expect(inProcessRelay({ redis: redis.url })).rejects.toThrow(/blobDir: .*--blob-dir/);
      const { port } = redis;
      await redis.kill();
      await expect(
        inProcessRelay({ redis: `redis://127.0.0.1:${port}`, blobDir: tmpdir() }),
      ).rejects.toThrow(/Redis at .* is unreachable/);
    } finally {
      await redis.close();
    }
  }, 30_000);
});

describe('a cluster behind HAProxy', () => {
  let cluster: ClusterProcess;
  beforeAll(async () => {
    cluster = await startCluster({ relays: 2, args: ['--no-cloud'] });
  }, 120_000);
  afterAll(async () => {
    await cluster?.stop();
  });

  it('routes HTTP and WebSockets to every relay, and takes a killed relay out', async () => {
    const before = await cluster.balancer.servers();
    expect(before.map((s) => s.status)).toEqual(['UP', 'UP']);
    // Round robin: every relay answers some of these.
    for (let i = 0; i < 6; i++) {
      const res = await fetch(`${cluster.url}/api/health`);
      expect(res.status).toBe(200);
    }
    const served = await cluster.balancer.servers();
    for (const s of served) expect(s.served).toBeGreaterThan(0);
    // The shared token works through the balancer; a deploy through it is listed at each relay.
    const app = await greetApp('1.0.0');
    const res = await deploy(
      { url: cluster.url, token: cluster.token },
      packBundle(app.manifest, app.files),
    );
    expect(res.status).toBe(201);
    for (const r of cluster.relays) {
      const names = (await (await fetch(`${r.url}/api/apps`)).json()) as { name: string }[];
      expect(names.map((x) => x.name)).toContain('greet');
    }
    // A node joins through the balancer (the WebSocket upgrade passes).
    const ws = `${cluster.url.replace('http', 'ws')}/ws`;
    const first = await joinRaw(ws);
    expect(first.welcome.t).toBe('welcome');
    first.node.ws.close();

    await cluster.kill(0);
    await cluster.balancer.untilDown(cluster.name(0));
    for (let i = 0; i < 4; i++) expect((await fetch(`${cluster.url}/api/health`)).status).toBe(200);
    const again = await joinRaw(ws);
    expect(again.welcome.t).toBe('welcome');
    again.node.ws.close();

    await cluster.restart(0);
    expect((await cluster.balancer.servers()).map((s) => s.status)).toEqual(['UP', 'UP']);
  }, 120_000);
});
