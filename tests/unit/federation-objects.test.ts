// Users, projects and API keys between two federated sites (relay/federation/objects.ts): two
// in-process relays on real loopback ports, each the other's peer. A user, a project and a key
// made at site 1 exist at site 2 unasked, and the key works there; revoking it at site 1 stops it
// at site 2; a change made at site 2 comes back. The route applies a change only if newer than
// what it has, never revives a revoked key, and refuses hostile bodies by field.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashSecret } from '../../relay/keys';
import type { Relay } from '../../relay/server';
import { call, type Sites, startSites, TOKEN1, TOKEN2 } from '../federation-sites';
import { until } from '../until';

const KEY = 'federation-objects-key-0123456789';

let sites: Sites;
let site1: Relay;
let site2: Relay;

/** Pushes `item` to site 2 as its peer would. */
const push = (item: unknown) => call(site2, KEY, 'POST', '/api/federation/objects', item);

beforeAll(async () => {
  sites = await startSites(KEY, [
    { site: 'site-1', token: TOKEN1 },
    { site: 'site-2', token: TOKEN2 },
  ]);
  [site1, site2] = sites.relays as [Relay, Relay];
}, 60_000);

afterAll(() => sites?.close());

describe('users, projects and keys between federated sites', () => {
  let secret = '';
  let keyId = '';

  it('a user, a key and a project made at site 1 exist at site 2; the key works there', async () => {
    const made = await call(site1, TOKEN1, 'POST', '/api/users', { id: 'alice', label: 'Alice' });
    expect(made.status).toBe(201);
    const key = await call(site1, TOKEN1, 'POST', '/api/users/alice/createKey', {
      scopes: ['call'],
    });
    expect(key.status).toBe(200);
    secret = key.body.key;
    keyId = key.body.id;
    // The key acts as alice at site 1: she makes a project and owns it.
    const project = await call(site1, secret, 'POST', '/api/projects', { id: 'vision' });
    expect(project.status).toBe(201);

    // At site 2, unasked: the user (same context namespace), the key, then the project.
    const user = await until(async () => {
      const r = await call(site2, TOKEN2, 'GET', '/api/users/alice');
      return r.status === 200 && r.body;
    }, 'alice at site 2');
    expect(user).toEqual(made.body);
    const there = await until(async () => {
      const r = await call(site2, secret, 'GET', '/api/projects/vision');
      return r.status === 200 && r.body;
    }, 'project vision at site 2, read with the key made at site 1');
    expect(there).toEqual(project.body);
    expect(there.members).toEqual([{ user: 'alice', role: 'owner' }]);

    // What travelled is the hash: site 2 never held the secret.
    const adopted = site2.keys.list().find((k) => k.id === keyId);
    expect(adopted?.sha256).toBe(hashSecret(secret));
    expect(adopted?.user).toBe('alice');
    const files = await Promise.all(
      ['keys.json', 'federation-objects.json'].map((f) =>
        readFile(join(sites.dirs[1]!, f), 'utf8'),
      ),
    );
    for (const text of files) expect(text).not.toContain(secret);
  }, 60_000);

  it('a change made at site 2 comes back to site 1', async () => {
    const r = await call(site2, secret, 'POST', '/api/projects/vision', { label: 'Vision team' });
    expect(r.status).toBe(200);
    await until(
      async () =>
        (await call(site1, secret, 'GET', '/api/projects/vision')).body?.label === 'Vision team',
      'the new label at site 1',
    );
  }, 60_000);

  it('revoking the key at site 1 stops it at site 2', async () => {
    expect((await call(site2, secret, 'GET', '/api/users/alice')).status).toBe(200);
    expect((await call(site1, TOKEN1, 'DELETE', `/api/keys/${keyId}`)).status).toBe(204);
    expect((await call(site1, secret, 'GET', '/api/users/alice')).status).toBe(401);
    await until(
      async () => (await call(site2, secret, 'GET', '/api/users/alice')).status === 401,
      'the key refused at site 2',
    );
    // Pushed again (a late or replayed create): it stays revoked.
    const key = { ...site1Key(keyId), id: keyId };
    expect((await push({ kind: 'key', key })).status).toBe(204);
    expect(site2.keys.list().some((k) => k.id === keyId)).toBe(false);
  }, 60_000);

  it('a key of site 1 revoked at site 2 stops at site 1 too', async () => {
    const made = await call(site1, TOKEN1, 'POST', '/api/keys', {
      scopes: ['admin'],
      label: 'ops',
    });
    expect(made.status).toBe(201);
    const works = (relay: Relay) => call(relay, made.body.key, 'GET', '/api/keys');
    await until(async () => (await works(site2)).status === 200, 'the key working at site 2');
    expect((await call(site2, TOKEN2, 'DELETE', `/api/keys/${made.body.id}`)).status).toBe(204);
    await until(async () => (await works(site1)).status === 401, 'the key refused at site 1');
  }, 60_000);

  it('an older change never overwrites a newer one; the same change twice is taken once', async () => {
    const user = (label: string) => ({
      id: 'bob',
      label,
      namespace: 'n0123456789abcdef',
      createdAt: '2025-01-01T00:00:00.000Z',
    });
    const now = Date.now();
    const v = (at: number, site = 'site-9') => ({ at, site });
    expect((await push({ kind: 'user', id: 'bob', user: user('new'), v: v(now) })).status).toBe(
      204,
    );
    expect((await push({ kind: 'user', id: 'bob', user: user('old'), v: v(now - 1) })).status).toBe(
      204,
    );
    // Same time, a site that sorts first: older too.
    expect(
      (await push({ kind: 'user', id: 'bob', user: user('tie'), v: v(now, 'site-0') })).status,
    ).toBe(204);
    expect((await call(site2, TOKEN2, 'GET', '/api/users/bob')).body.label).toBe('new');
    // A deletion that is older does not delete; a newer one does.
    expect((await push({ kind: 'user', id: 'bob', v: v(now - 5) })).status).toBe(204);
    expect((await call(site2, TOKEN2, 'GET', '/api/users/bob')).status).toBe(200);
    expect((await push({ kind: 'user', id: 'bob', v: v(now + 1) })).status).toBe(204);
    expect((await call(site2, TOKEN2, 'GET', '/api/users/bob')).status).toBe(404);
    // And an older re-creation after it does not bring bob back.
    expect((await push({ kind: 'user', id: 'bob', user: user('x'), v: v(now) })).status).toBe(204);
    expect((await call(site2, TOKEN2, 'GET', '/api/users/bob')).status).toBe(404);

    // A revoke that arrives before its key: the key never becomes usable.
    const early = { ...site1Key('00000000000000aa'), sha256: hashSecret('brume_early') };
    expect((await push({ kind: 'revoke', id: early.id })).status).toBe(204);
    expect((await push({ kind: 'key', key: early })).status).toBe(204);
    expect((await call(site2, 'brume_early', 'GET', '/api/keys')).status).toBe(401);
  }, 60_000);

  it('the route refuses without the key, and hostile bodies by field', async () => {
    const noKey = await call(site2, 'not-the-key-0123456789', 'POST', '/api/federation/objects', {
      kind: 'revoke',
      id: '0000000000000000',
    });
    expect(noKey.status).toBe(401);
    const refused = async (item: unknown, field: RegExp) => {
      const r = await push(item);
      expect(r.status).toBe(400);
      expect(r.body.error.message).toMatch(field);
    };
    const key = site1Key('00000000000000bb');
    // A plaintext secret is not a field a key has.
    await refused({ kind: 'key', key: { ...key, secret: 'brume_x' } }, /secret/);
    await refused({ kind: 'key', key: { ...key, scopes: ['root'] } }, /scopes/);
    await refused({ kind: 'key', key: { ...key, sha256: 'abc' } }, /sha256/);
    await refused({ kind: 'revoke', id: '../keys' }, /id/);
    await refused(
      { kind: 'user', id: 'eve', v: { at: Date.now() + 24 * 3600_000, site: 's' } },
      /v\.at|at/,
    );
    await refused(
      {
        kind: 'user',
        id: 'eve',
        user: { id: 'mallory', label: '', namespace: 'n0123456789abcdef', createdAt: '' },
        v: { at: 1, site: 's' },
      },
      /id/,
    );
    await refused(
      { kind: 'project', id: 'p', project: { id: 'p' }, v: { at: 1, site: 's' } },
      /project/,
    );
    await refused({ kind: 'nodes' }, /kind/);
    const huge = await push({ kind: 'revoke', id: '0'.repeat(16), pad: 'x'.repeat(100_000) });
    expect(huge.status).toBe(413);
    expect(site2.keys.list().some((k) => k.id === key.id)).toBe(false);
  }, 60_000);
});

/** A key as stored, with id `id` (its secret unknown). */
function site1Key(id: string) {
  return {
    id,
    label: 'pushed',
    scopes: ['call'],
    sha256: hashSecret(`brume_${id}`),
    createdAt: new Date().toISOString(),
  };
}
