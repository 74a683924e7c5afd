// Users, projects, permissions and the project and user context scopes against the relay as a
// real process on a real port (issue 15): a member of another project can neither deploy nor
// read a project's app, its owner and the admin can, keys made before users still work, the
// seed-003 REST shape answers for users, projects, functions and workers, and everything of it
// survives a kill -9.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NodeContext } from '../../core/context/client';
import { memoryKV } from '../../core/context/outbox';
import { loadOrCreateIdentity, memoryKeyStore } from '../../core/identity';
import { packBundle } from '../../core/manifest';
import { hashSecret } from '../../relay/keys';
import { contextApp } from '../apps';
import { type RelayProcess, startRelay } from '../relay-process';
import { testNode } from '../test-node';
import { until } from '../until';

const OLD_SECRET = 'brume_an-old-key-made-before-users';
let dataDir: string;
let relay: RelayProcess;
const keys: Record<string, string> = {};

type Who = string | undefined;
async function api(method: string, path: string, who: Who, body?: unknown) {
  const headers: Record<string, string> = {};
  if (who !== undefined) headers.authorization = `Bearer ${who}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(`${relay.url}${path}`, {
    method,
    headers,
    ...(body !== undefined && { body: JSON.stringify(body) }),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : undefined };
}
async function deploy(name: string, version: string, who: Who) {
  const b = await contextApp(name, version);
  const res = await fetch(`${relay.url}/api/apps`, {
    method: 'POST',
    headers: {
      'content-type': 'application/vnd.brume.bundle',
      ...(who !== undefined && { authorization: `Bearer ${who}` }),
    },
    body: Buffer.from(packBundle(b.manifest, b.files)),
  });
  return { status: res.status, body: await res.json() };
}
const admin = () => relay.token;

beforeAll(async () => {
  dataDir = await mkdtemp(join(tmpdir(), 'brume-projects-relay-'));
  // A keys.json as relays wrote it before keys could belong to a user.
  const old = {
    id: 'aaaaaaaaaaaaaaaa',
    label: 'old CI',
    scopes: ['deploy:*', 'context:write:*'],
    sha256: hashSecret(OLD_SECRET),
    createdAt: '2026-01-01T00:00:00.000Z',
  };
  await writeFile(join(dataDir, 'keys.json'), JSON.stringify([old]));
  relay = await startRelay({ dataDir, args: ['--no-cloud'] });
  for (const id of ['alice', 'bob', 'carol']) {
    expect((await api('POST', '/api/users', admin(), { id })).status).toBe(201);
    const made = await api('POST', `/api/users/${id}/createKey`, admin(), { label: 'laptop' });
    expect(made.status).toBe(200);
    expect(made.body).toMatchObject({ user: id, scopes: ['call', 'jobs'] });
    keys[id] = made.body.key;
  }
}, 60_000);
afterAll(async () => {
  await relay?.stop();
  await rm(dataDir, { recursive: true, force: true });
});

describe('projects and deploys', () => {
  it('keeps a key from before users working for apps in no project', async () => {
    expect((await deploy('loose', '1.0.0', OLD_SECRET)).status).toBe(201);
    const put = await api('PUT', '/api/context/loose/greeting', OLD_SECRET, { value: 'hi' });
    expect(put.status).toBe(200);
    expect((await api('GET', '/api/context/loose/greeting', undefined)).body.value).toBe('hi');
  });

  it('lets a user make a project they own, put a new app in it and deploy it', async () => {
    const made = await api('POST', '/api/projects', keys.alice, { id: 'vision', label: 'eyes' });
    expect(made.status).toBe(201);
    expect(made.body.members).toEqual([{ user: 'alice', role: 'owner' }]);
    expect((await api('POST', '/api/projects', keys.bob, { id: 'audio' })).status).toBe(201);
    for (const app of ['seen', 'seen-too']) {
      const added = await api('POST', '/api/projects/vision/addApp', keys.alice, { app });
      expect(added.status).toBe(200);
    }
    expect((await deploy('seen', '1.0.0', keys.alice)).status).toBe(201);
    expect((await deploy('seen-too', '1.0.0', keys.alice)).status).toBe(201);
    const member = await api('POST', '/api/projects/vision/addMember', keys.alice, {
      user: 'carol',
      role: 'deployer',
    });
    expect(member.body.members).toContainEqual({ user: 'carol', role: 'deployer' });
    expect((await deploy('seen', '1.0.1', keys.carol)).status).toBe(201);
  });

  it('refuses a member of another project, and a key with deploy:*, the deploy of a project app', async () => {
    for (const who of [keys.bob, OLD_SECRET]) {
      const r = await deploy('seen', '1.0.2', who);
      expect(r.status).toBe(403);
      expect(r.body.error).toMatchObject({
        code: 'E_FORBIDDEN',
        message: expect.stringContaining('project "vision"'),
      });
    }
    // Being a reader of another project changes nothing of what a member may deploy here.
    const r = await api('POST', '/api/projects/audio/addMember', keys.bob, {
      user: 'alice',
      role: 'reader',
    });
    expect(r.status).toBe(200);
    expect((await deploy('seen', '1.0.2', keys.alice)).status).toBe(201);
    expect((await deploy('seen', '1.0.3', admin())).status).toBe(201);
    expect((await deploy('seen', '1.0.4', undefined)).status).toBe(401);
  });

  it('lets an owner or the admin make an older version current, not a deployer', async () => {
    const carol = await api('POST', '/api/apps/seen/current', keys.carol, { version: '1.0.0' });
    expect(carol.status).toBe(403);
    expect(
      (await api('POST', '/api/apps/seen/current', keys.alice, { version: '1.0.0' })).status,
    ).toBe(200);
    expect(
      (await api('POST', '/api/apps/seen/current', admin(), { version: '1.0.3' })).status,
    ).toBe(200);
    expect((await api('GET', '/api/apps/seen', undefined)).body.version).toBe('1.0.3');
  });

  it('keeps an app deployed outside any project from being taken into one by a user who may not deploy it', async () => {
    const r = await api('POST', '/api/projects/audio/addApp', keys.bob, { app: 'loose' });
    expect(r.status).toBe(403);
    expect(r.body.error.message).toContain('deploy:loose');
  });
});

describe('reading a project', () => {
  it('shows a project to its members and the admin, and to no one else', async () => {
    expect((await api('GET', '/api/projects/vision', keys.carol)).body.apps).toEqual([
      'seen',
      'seen-too',
    ]);
    expect((await api('GET', '/api/projects/vision', admin())).status).toBe(200);
    expect((await api('GET', '/api/projects/vision', keys.bob)).status).toBe(404);
    expect((await api('GET', '/api/projects/vision', undefined)).status).toBe(401);
    expect(
      (await api('GET', '/api/projects', keys.bob)).body.map((p: { id: string }) => p.id),
    ).toEqual(['audio']);
    expect(
      (await api('GET', '/api/projects', keys.alice)).body.map((p: { id: string }) => p.id),
    ).toEqual(['vision', 'audio']);
  });

  it("refuses a non-member a project app's context, app- and project-scoped", async () => {
    expect((await api('PUT', '/api/context/seen/k', keys.carol, { value: 1 })).status).toBe(200);
    expect((await api('GET', '/api/context/seen/k', keys.alice)).body.value).toBe(1);
    expect((await api('GET', '/api/context/seen/k', admin())).body.value).toBe(1);
    const bob = await api('GET', '/api/context/seen/k', keys.bob);
    expect(bob.status).toBe(403);
    expect(bob.body.error.message).toContain('project "vision"');
    expect((await api('GET', '/api/context/seen/k', undefined)).status).toBe(401);
    expect((await api('PUT', '/api/context/seen/k', keys.bob, { value: 2 })).status).toBe(403);
    expect((await api('PUT', '/api/context/seen/k', OLD_SECRET, { value: 2 })).status).toBe(403);
  });

  it("lets a project's members submit and read its apps' jobs, and no one else", async () => {
    const job = { app: 'seen', service: 'main', rpc: 'echo', input: { hi: 1 } };
    const made = await api('POST', '/api/jobs', keys.alice, job);
    expect(made.status).toBe(202);
    const { id } = made.body;
    // A deployer of the project and the admin read it; a member of another project does not.
    expect((await api('GET', `/api/jobs/${id}`, keys.carol)).body.id).toBe(id);
    expect((await api('GET', `/api/jobs/${id}`, admin())).status).toBe(200);
    const bob = await api('GET', `/api/jobs/${id}`, keys.bob);
    expect(bob.status).toBe(403);
    expect(bob.body.error).toMatchObject({
      code: 'E_FORBIDDEN',
      message: expect.stringContaining('"seen"'),
    });
    expect((await api('DELETE', `/api/jobs/${id}`, keys.bob)).status).toBe(403);
    expect((await api('POST', '/api/jobs', keys.bob, job)).status).toBe(403);
    const listed = await api('GET', '/api/jobs?app=seen', keys.bob);
    expect(listed.status).toBe(200);
    expect(listed.body.jobs).toEqual([]);
    expect(
      (await api('GET', '/api/jobs?app=seen', keys.carol)).body.jobs.map(
        (j: { id: string }) => j.id,
      ),
    ).toContain(id);
    // The owner cancels it: it was queued (this relay has no node to run it).
    expect((await api('DELETE', `/api/jobs/${id}`, keys.alice)).body.state).toBe('cancelled');
  });

  it('lists functions of apps in no project to anyone, of a project to its members', async () => {
    // The relay seeds its sample apps too: those are in no project either.
    const ids = async (who: Who) =>
      (await api('GET', '/api/functions', who)).body.map((f: { id: string }) => f.id);
    for (const who of [undefined, keys.bob]) {
      const seen = await ids(who);
      expect(seen).toContain('loose.main');
      expect(seen.filter((id: string) => id.startsWith('seen'))).toEqual([]);
    }
    expect(await ids(keys.alice)).toEqual(
      expect.arrayContaining(['loose.main', 'seen-too.main', 'seen.main']),
    );
    const one = await api('GET', '/api/functions/seen.main', keys.carol);
    expect(one.body).toMatchObject({
      app: 'seen',
      service: 'main',
      kind: 'logic',
      project: 'vision',
      version: '1.0.3',
    });
    expect((await api('GET', '/api/functions/seen.main', keys.bob)).status).toBe(404);
    expect((await api('POST', '/api/functions', admin(), {})).status).toBe(404);
  });

  it('shows workers to the admin only', async () => {
    expect((await api('GET', '/api/workers', undefined)).status).toBe(401);
    expect((await api('GET', '/api/workers', keys.alice)).status).toBe(403);
    const all = await api('GET', '/api/workers', admin());
    expect(all.status).toBe(200);
    expect(Array.isArray(all.body)).toBe(true);
  });

  it('shows a user themselves, the admin everyone', async () => {
    expect(
      (await api('GET', '/api/users', keys.bob)).body.map((u: { id: string }) => u.id),
    ).toEqual(['bob']);
    expect((await api('GET', '/api/users/alice', keys.bob)).status).toBe(404);
    expect((await api('GET', '/api/users', admin())).body).toHaveLength(3);
    expect((await api('POST', '/api/users', keys.alice, { id: 'mallory' })).status).toBe(403);
    expect((await api('POST', '/api/users/bob/createKey', keys.bob, {})).status).toBe(403);
    const ghost = await api('POST', '/api/keys', admin(), { scopes: ['call'], user: 'ghost' });
    expect(ghost.status).toBe(404);
    expect(ghost.body.error.message).toContain('user');
  });
});

describe('project and user scopes', () => {
  it('shares a project-scoped key between the apps of the project, with its members only', async () => {
    const put = await api('PUT', '/api/context/seen/model?scope=project', keys.carol, {
      value: 'v2',
    });
    expect(put.status).toBe(200);
    const other = await api('GET', '/api/context/seen-too/model?scope=project', keys.alice);
    expect(other.body.value).toBe('v2');
    expect((await api('GET', '/api/context/seen-too/model', keys.alice)).status).toBe(404); // app scope: none
    expect((await api('GET', '/api/context/seen/model?scope=project', keys.bob)).status).toBe(403);
    const none = await api('GET', '/api/context/loose/model?scope=project', undefined);
    expect(none.status).toBe(404);
    expect(none.body.error.message).toContain('in no project');
  });

  it("gives each user their own keys in an app, and the admin token (no user's) none", async () => {
    expect(
      (await api('PUT', '/api/context/loose/pref?scope=user', keys.alice, { value: 'a' })).status,
    ).toBe(200);
    expect(
      (await api('PUT', '/api/context/loose/pref?scope=user', keys.bob, { value: 'b' })).status,
    ).toBe(200);
    expect((await api('GET', '/api/context/loose/pref?scope=user', keys.alice)).body.value).toBe(
      'a',
    );
    expect((await api('GET', '/api/context/loose/pref?scope=user', keys.bob)).body.value).toBe('b');
    expect((await api('GET', '/api/context/loose/pref', keys.bob)).status).toBe(404);
    expect((await api('GET', '/api/context/loose/pref?scope=user', undefined)).status).toBe(401);
    const adm = await api('GET', '/api/context/loose/pref?scope=user', admin());
    expect(adm.status).toBe(403);
    expect(adm.body.error.message).toContain("no user's");
    // A user-scoped key of a project app is its members' only.
    expect(
      (await api('PUT', '/api/context/seen/pref?scope=user', keys.bob, { value: 'x' })).status,
    ).toBe(403);
    const bad = await api('GET', '/api/context/loose/pref?scope=node', keys.alice);
    expect(bad.status).toBe(400);
    expect(bad.body.error.message).toContain('scope');
  });

  it('lists the new scopes to the admin, each under its namespace', async () => {
    const all = (await api('GET', '/api/context', admin())).body as {
      key: string;
      scope: string;
      owner?: string;
    }[];
    const project = (await api('GET', '/api/projects/vision', admin())).body.namespace;
    const bob = (await api('GET', '/api/users/bob', admin())).body.namespace;
    expect(project).toMatch(/^n[0-9a-f]{16}$/);
    expect(all).toContainEqual(
      expect.objectContaining({ key: 'model', scope: 'project', owner: project }),
    );
    expect(all).toContainEqual(expect.objectContaining({ key: 'pref', scope: 'user', owner: bob }));
  });
});

describe('nodes', () => {
  it("give a node that keeps the app its app keys, never its project's or its users'", async () => {
    const identity = await loadOrCreateIdentity(memoryKeyStore(), 'scopes-node');
    const ctx = new NodeContext(identity, memoryKV());
    const fabric = await testNode(`${relay.url.replace('http', 'ws')}/ws`, identity, {
      context: ctx,
      runtime: { logicWorkers: 1 },
    });
    try {
      await fabric.whenJoined(10_000);
      ctx.use('seen');
      ctx.use('loose');
      await ctx.fresh();
      // Written after the node keeps the apps: each goes out as it is stored, or not at all.
      await api('PUT', '/api/context/seen/secret?scope=project', keys.alice, { value: 'p' });
      await api('PUT', '/api/context/loose/mine?scope=user', keys.alice, { value: 'u' });
      await api('PUT', '/api/context/seen/last', keys.alice, { value: 'barrier' });
      await until(() => ctx.get('seen', 'last') !== undefined, 'the app-scoped write on the node');
      const held = [...ctx.replica.state('seen'), ...ctx.replica.state('loose')];
      expect(held.map((op) => op.scope)).not.toContain('project');
      expect(held.map((op) => op.scope)).not.toContain('user');
      expect(held.map((op) => op.key)).toEqual(expect.arrayContaining(['k', 'last', 'greeting']));
    } finally {
      fabric.close();
    }
  });
});

describe('the REST shape', () => {
  it('leaves other classes to their own routes and names the methods a class has', async () => {
    // /api/jobs is the jobs routes' own (their page shape), not a class of this router.
    const jobs = await api('GET', '/api/jobs', admin());
    expect(jobs.status).toBe(200);
    expect(Array.isArray(jobs.body.jobs)).toBe(true);
    const m = await api('POST', '/api/projects/vision/launch', keys.alice, {});
    expect(m.status).toBe(404);
    expect(m.body.error.message).toContain('addMember');
    expect((await api('POST', '/api/projects/vision/toString', keys.alice, {})).status).toBe(404);
  });

  it('refuses hostile bodies with typed errors', async () => {
    const arr = await api('POST', '/api/projects', keys.alice, [1, 2]);
    expect(arr.status).toBe(400);
    const long = await api('POST', '/api/projects', keys.alice, { id: 'x'.repeat(100) });
    expect(long.body.error).toMatchObject({
      code: 'E_INPUT',
      message: expect.stringContaining('id:'),
    });
    const role = await api('POST', '/api/projects/vision/addMember', keys.alice, {
      user: 'bob',
      role: { $gt: 1 },
    });
    expect(role.body.error).toMatchObject({
      code: 'E_INPUT',
      message: expect.stringContaining('role:'),
    });
    const junk = await api('GET', '/api/projects', 'brume_not-a-key');
    expect(junk.status).toBe(401);
  });
});

describe('after kill -9', () => {
  it('keeps users, projects, user keys and the scoped context', async () => {
    const exited = new Promise((r) => relay.child.once('exit', r));
    relay.child.kill('SIGKILL');
    await exited;
    relay = await startRelay({ dataDir, args: ['--no-cloud'] });
    expect((await api('GET', '/api/projects/vision', keys.alice)).body.members).toContainEqual({
      user: 'carol',
      role: 'deployer',
    });
    expect((await deploy('seen', '1.0.5', keys.bob)).status).toBe(403);
    expect((await deploy('seen', '1.0.5', keys.carol)).status).toBe(201);
    expect(
      (await api('GET', '/api/context/seen-too/model?scope=project', keys.alice)).body.value,
    ).toBe('v2');
    expect((await api('GET', '/api/context/loose/pref?scope=user', keys.bob)).body.value).toBe('b');
  }, 60_000);

  it("revokes a deleted user's keys, and one made again under the name reads none of the old one's", async () => {
    const put = await api('PUT', '/api/context/loose/diary?scope=user', keys.carol, {
      value: 'old',
    });
    expect(put.status).toBe(200);
    expect((await api('DELETE', '/api/users/carol', admin())).status).toBe(204);
    expect((await api('GET', '/api/projects', keys.carol)).status).toBe(401);
    expect((await api('GET', '/api/projects/vision', admin())).body.members).not.toContainEqual(
      expect.objectContaining({ user: 'carol' }),
    );
    expect((await api('POST', '/api/users', admin(), { id: 'carol' })).status).toBe(201);
    const again = (await api('POST', '/api/users/carol/createKey', admin(), {})).body.key;
    expect((await api('GET', '/api/context/loose/diary?scope=user', again)).status).toBe(404);
    expect((await api('GET', '/api/projects', again)).body).toEqual([]);
    const listed = (await api('GET', '/api/context', admin())).body as {
      key: string;
      deleted: boolean;
    }[];
    expect(listed.filter((k) => k.key === 'diary')).toEqual([
      expect.objectContaining({ deleted: true }),
    ]);
  });

  it("deletes a deleted project's keys, and its apps go back to the key scopes", async () => {
    expect((await api('POST', '/api/projects', admin(), { id: 'temp' })).status).toBe(201);
    expect((await api('POST', '/api/projects/temp/addApp', admin(), { app: 'loose' })).status).toBe(
      200,
    );
    const put = await api('PUT', '/api/context/loose/shared?scope=project', admin(), { value: 1 });
    expect(put.status).toBe(200);
    expect((await deploy('loose', '1.0.1', OLD_SECRET)).status).toBe(403);
    expect((await api('DELETE', '/api/projects/temp', admin())).status).toBe(204);
    const listed = (await api('GET', '/api/context', admin())).body as {
      key: string;
      deleted: boolean;
    }[];
    expect(listed.filter((k) => k.key === 'shared')).toEqual([
      expect.objectContaining({ deleted: true }),
    ]);
    expect((await deploy('loose', '1.0.1', OLD_SECRET)).status).toBe(201);
  });
});
