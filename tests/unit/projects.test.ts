// Users, projects and the access rule (relay/projects.ts) as a store on a real data directory:
// who may read, write and deploy an app in a project and in none, who may change a project,
// what survives a reopen, the bounds, a damaged file, and keys.json files from before users.
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Principal } from '../../relay/auth';
import { type ApiKey, openKeys } from '../../relay/keys';
import { openProjects, type Projects } from '../../relay/projects';

const admin: Principal = { kind: 'admin' };
const keyOf = (scopes: string[], user?: string): Principal => ({
  kind: 'key',
  key: {
    id: '0123456789abcdef',
    label: '',
    scopes,
    sha256: '0'.repeat(64),
    createdAt: '',
    ...(user && { user }),
  } as ApiKey,
});
const alice = keyOf(['call'], 'alice');
const bob = keyOf(['call'], 'bob');
const carol = keyOf(['call'], 'carol');

let dir: string;
let warnings: string[];
let projects: Projects;
const open = () => openProjects(dir, (m) => warnings.push(m));

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'brume-projects-'));
  warnings = [];
  projects = await open();
  for (const id of ['alice', 'bob', 'carol']) await projects.createUser(admin, { id });
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function vision() {
  await projects.createProject(alice, { id: 'vision', label: 'image apps' });
  await projects.addApp(alice, 'vision', { app: 'digits' }, false);
  await projects.addMember(alice, 'vision', { user: 'bob', role: 'reader' });
}

describe('access', () => {
  it('governs an app in a project by its members: reader reads, deployer and owner deploy', async () => {
    await vision();
    await projects.addMember(alice, 'vision', { user: 'carol', role: 'deployer' });
    expect(projects.access(alice, 'digits', 'deploy')).toBe(true);
    expect(projects.access(carol, 'digits', 'deploy')).toBe(true);
    expect(projects.access(carol, 'digits', 'write')).toBe(true);
    expect(projects.access(bob, 'digits', 'read')).toBe(true);
    expect(projects.access(bob, 'digits', 'write')).toBe(false);
    expect(projects.access(bob, 'digits', 'deploy')).toBe(false);
    expect(projects.roleFor(alice, 'digits')).toBe('owner');
    expect(projects.projectOf('digits')).toBe('vision');
  });

  it('gives a non-member nothing of a project app, whatever its scopes; the admin everything', async () => {
    await vision();
    const stranger = keyOf(['deploy', 'context:write', 'call'], 'dave');
    const unowned = keyOf(['deploy:*']);
    for (const what of ['read', 'write', 'deploy'] as const) {
      expect(projects.access(stranger, 'digits', what)).toBe(false);
      expect(projects.access(unowned, 'digits', what)).toBe(false);
      expect(projects.access(undefined, 'digits', what)).toBe(false);
      expect(projects.access(admin, 'digits', what)).toBe(true);
    }
  });

  it('keeps the deploy scope for an app in no project, and leaves reads and writes to the route', () => {
    const ci = keyOf(['deploy:team-*', 'context:write:team-a']);
    expect(projects.access(ci, 'team-a', 'deploy')).toBe(true);
    expect(projects.access(ci, 'team-b', 'deploy')).toBe(true);
    expect(projects.access(ci, 'other', 'deploy')).toBe(false);
    expect(projects.access(undefined, 'team-a', 'deploy')).toBe(false);
    // The context route asks context:write, the jobs routes jobs: membership adds nothing here.
    expect(projects.access(undefined, 'team-a', 'read')).toBe(true);
    expect(projects.access(undefined, 'team-a', 'write')).toBe(true);
    expect(projects.mayDeploySome(ci)).toBe(true);
    expect(projects.mayDeploySome(alice)).toBe(false);
  });

  it('lets a deployer of some project send a bundle (the app is checked once read)', async () => {
    await vision();
    expect(projects.mayDeploySome(alice)).toBe(true);
    expect(projects.mayDeploySome(bob)).toBe(false); // a reader
  });
});

describe('projects', () => {
  it('shows a project to its members and the admin only, and lists each user theirs', async () => {
    await vision();
    expect(projects.getProject(bob, 'vision').members).toEqual([
      { user: 'alice', role: 'owner' },
      { user: 'bob', role: 'reader' },
    ]);
    expect(() => projects.getProject(carol, 'vision')).toThrow(
      expect.objectContaining({ code: 'E_NOT_FOUND' }),
    );
    expect(projects.listProjects(carol)).toEqual([]);
    expect(projects.listProjects(bob).map((p) => p.id)).toEqual(['vision']);
    expect(projects.listProjects(admin).map((p) => p.id)).toEqual(['vision']);
  });

  it('lets only an owner or the admin change a project, and keeps one owner', async () => {
    await vision();
    await expect(projects.addMember(bob, 'vision', { user: 'carol' })).rejects.toMatchObject({
      code: 'E_FORBIDDEN',
    });
    await expect(projects.addApp(carol, 'vision', { app: 'x' }, false)).rejects.toMatchObject({
      code: 'E_NOT_FOUND', // a non-member is not told the project exists
    });
    await expect(projects.removeMember(alice, 'vision', { user: 'alice' })).rejects.toMatchObject({
      code: 'E_CONFLICT',
    });
    await projects.addMember(admin, 'vision', { user: 'bob', role: 'owner' });
    await projects.removeMember(bob, 'vision', { user: 'alice' });
    expect(projects.access(alice, 'digits', 'read')).toBe(false);
    await expect(projects.deleteProject(carol, 'vision')).rejects.toMatchObject({
      code: 'E_NOT_FOUND',
    });
    await projects.deleteProject(bob, 'vision');
    expect(projects.projectOf('digits')).toBeUndefined();
  });

  it('puts an app in one project at most, and a deployed one only by who may deploy it', async () => {
    await vision();
    await projects.createProject(carol, { id: 'audio' });
    await expect(projects.addApp(carol, 'audio', { app: 'digits' }, false)).rejects.toMatchObject({
      code: 'E_CONFLICT',
      message: expect.stringContaining('"vision"'),
    });
    await expect(projects.addApp(carol, 'audio', { app: 'vad' }, true)).rejects.toMatchObject({
      code: 'E_FORBIDDEN',
      message: expect.stringContaining('deploy:vad'),
    });
    const owner = keyOf(['deploy:vad'], 'carol');
    await projects.addApp(owner, 'audio', { app: 'vad' }, true);
    expect(projects.projectOf('vad')).toBe('audio');
  });

  it('refuses bad names, roles and labels with errors that name the field', async () => {
    await expect(projects.createProject(alice, { id: 'Bad Name' })).rejects.toMatchObject({
      code: 'E_INPUT',
      message: expect.stringContaining('id:'),
    });
    await expect(projects.createProject(keyOf(['call']), { id: 'ok' })).rejects.toMatchObject({
      code: 'E_FORBIDDEN',
    });
    await expect(
      projects.createProject(keyOf(['call'], 'gone'), { id: 'ok' }),
    ).rejects.toMatchObject({
      code: 'E_FORBIDDEN',
    });
    await projects.createProject(alice, { id: 'ok' });
    await expect(
      projects.addMember(alice, 'ok', { user: 'bob', role: 'king' }),
    ).rejects.toMatchObject({ code: 'E_INPUT', message: expect.stringContaining('role:') });
    await expect(projects.addMember(alice, 'ok', { user: 'nobody' })).rejects.toMatchObject({
      code: 'E_NOT_FOUND',
    });
    await expect(
      projects.setProject(alice, 'ok', { label: 'x'.repeat(201) }),
    ).rejects.toMatchObject({ code: 'E_LIMIT', message: expect.stringContaining('label') });
    await expect(projects.createUser(alice, { id: 'eve' })).rejects.toMatchObject({
      code: 'E_FORBIDDEN',
    });
    await expect(projects.createUser(admin, { id: 'alice' })).rejects.toMatchObject({
      code: 'E_CONFLICT',
    });
  });

  it('holds at most its limits of users, projects, members and apps', async () => {
    const few = await openProjects(dir, () => {}, { ownedPerUser: 1 });
    await few.createProject(carol, { id: 'mine' });
    await expect(few.createProject(carol, { id: 'more' })).rejects.toMatchObject({
      code: 'E_LIMIT',
      message: expect.stringContaining('limit per user'),
    });
    await few.createProject(admin, { id: 'more' }); // the admin is held to the relay's limit only
    await few.deleteProject(admin, 'mine');
    await few.deleteProject(admin, 'more');
    const small = await openProjects(dir, () => {}, { users: 3, projects: 1, members: 1, apps: 1 });
    await expect(small.createUser(admin, { id: 'dave' })).rejects.toMatchObject({
      code: 'E_LIMIT',
      message: expect.stringContaining('3 users'),
    });
    await small.createProject(alice, { id: 'one' });
    await expect(small.createProject(bob, { id: 'two' })).rejects.toMatchObject({
      code: 'E_LIMIT',
    });
    await expect(small.addMember(alice, 'one', { user: 'bob' })).rejects.toMatchObject({
      code: 'E_LIMIT',
    });
    await small.addApp(alice, 'one', { app: 'a' }, false);
    await expect(small.addApp(alice, 'one', { app: 'b' }, false)).rejects.toMatchObject({
      code: 'E_LIMIT',
    });
  });
});

describe('on disk', () => {
  it('keeps users, projects and members across a reopen; deleting a user drops their memberships', async () => {
    await vision();
    const again = await open();
    expect(again.getProject(admin, 'vision')).toMatchObject({
      label: 'image apps',
      apps: ['digits'],
    });
    expect(again.access(bob, 'digits', 'read')).toBe(true);
    const before = again.userNamespace('bob');
    expect(before).toMatch(/^n[0-9a-f]{16}$/);
    expect(again.projectNamespace('digits')).toBe(projects.projectNamespace('digits'));
    await again.deleteUser(admin, 'bob');
    expect(again.userNamespace('bob')).toBeUndefined();
    await again.createUser(admin, { id: 'bob' });
    expect(again.userNamespace('bob')).not.toBe(before); // none of the old bob's keys
    await again.deleteUser(admin, 'bob');
    const third = await open();
    expect(third.access(bob, 'digits', 'read')).toBe(false);
    expect(third.listUsers(admin).map((u) => u.id)).toEqual(['alice', 'carol']);
  });

  it('moves a damaged projects.json aside and starts with none, saying so', async () => {
    await writeFile(join(dir, 'projects.json'), '{"v":1,"users":[{"id":"../x"}]');
    const fresh = await open();
    expect(fresh.listUsers(admin)).toEqual([]);
    expect(warnings.join('\n')).toContain('projects.json');
    expect(
      (await readdir(dir)).some((f) => f.startsWith('projects.json.') && f !== 'projects.json'),
    ).toBe(true);
  });

  it('loads a keys.json written before keys had users, and stores a user on new keys', async () => {
    const old = [
      {
        id: 'aaaaaaaaaaaaaaaa',
        label: 'CI',
        scopes: ['deploy:*'],
        sha256: 'b'.repeat(64),
        createdAt: '2026-01-01T00:00:00.000Z',
      },
    ];
    await writeFile(join(dir, 'keys.json'), JSON.stringify(old));
    const keys = await openKeys(dir, (m) => warnings.push(m));
    expect(keys.list()).toEqual(old);
    const { key } = await keys.create(['call'], 'alice laptop', 'alice');
    expect(key.user).toBe('alice');
    const stored = JSON.parse(await readFile(join(dir, 'keys.json'), 'utf8'));
    expect(stored.map((k: ApiKey) => k.user)).toEqual([undefined, 'alice']);
    expect(warnings).toEqual([]);
  });
});

describe('adopt (a user or project as a federated site has it)', () => {
  const user = (id: string) => ({ id, label: '', namespace: 'n0123456789abcdef', createdAt: '' });
  const project = (
    id: string,
    apps: string[],
    members = [{ user: 'alice', role: 'owner' as const }],
  ) => ({
    id,
    label: '',
    apps,
    members,
    namespace: 'nfedcba9876543210',
    createdAt: '',
  });

  it('puts, replaces and deletes as told, keeping it across a reopen', async () => {
    await projects.adopt('user', 'dave', user('dave'));
    await projects.adopt('project', 'vision', project('vision', ['digits']));
    expect(projects.userNamespace('dave')).toBe('n0123456789abcdef');
    expect(projects.access(alice, 'digits', 'deploy')).toBe(true);
    await projects.adopt('project', 'vision', project('vision', ['digits'], []));
    expect(projects.access(alice, 'digits', 'deploy')).toBe(false);
    const again = await open();
    expect(again.getProject(admin, 'vision').members).toEqual([]);
    expect(again.userExists('dave')).toBe(true);
  });

  it('a user deleted leaves every project; an app held by another project and the bounds are refused', async () => {
    await projects.adopt('project', 'vision', project('vision', ['digits']));
    await projects.adopt('user', 'alice', undefined);
    expect(projects.userExists('alice')).toBe(false);
    expect(projects.getProject(admin, 'vision').members).toEqual([]);
    await expect(projects.adopt('project', 'other', project('other', ['digits']))).rejects.toThrow(
      /app "digits" belongs to project "vision"/,
    );
    const small = await openProjects(dir, (m) => warnings.push(m), { users: 2 });
    await expect(small.adopt('user', 'erin', user('erin'))).rejects.toThrow(/2 users already/);
    // Replacing one held already is no new entry.
    await small.adopt('user', 'bob', { ...user('bob'), label: 'Bob' });
    expect(small.getUser(admin, 'bob').label).toBe('Bob');
  });
});
