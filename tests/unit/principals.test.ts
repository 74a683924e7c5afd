// Principals and permissions (issue 10, item 2) against a real relay on a real port: deploys
// need `deploy` for the app, an older version becomes current only by an admin's decision,
// HTTP context writes need `context:write` and a deployed app, anonymous calls are rate limited
// per address (or switched off), and API keys are made, stored hashed, and revoked.
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildManifest, type ManifestDraft, packBundle } from '../../core/manifest';
import type { Relay } from '../../relay/server';
import { wasm } from '../apps';
import { inProcessRelay } from '../relay-process';

const bytes = (text: string) => new TextEncoder().encode(text);
// A real Logic exporting `run`: a deploy checks the rpcs against the wasm's exports.
const files = { 'logic/main.wasm': wasm('loop-forever') };

async function bundle(name: string, version: string, description = 'test app') {
  const draft: ManifestDraft = {
    brume: 1,
    name,
    version,
    description,
    services: { main: { kind: 'logic', file: 'logic/main.wasm', rpcs: ['run'] } },
  };
  return packBundle(await buildManifest(draft, files), files);
}

let server: Awaited<ReturnType<typeof inProcessRelay>>;
let relay: Relay;
const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
const admin = () => bearer(relay.admin.token);

function deploy(b: Uint8Array, headers: Record<string, string> = {}) {
  return fetch(`${relay.url}/api/apps`, {
    method: 'POST',
    headers: { 'content-type': 'application/vnd.brume.bundle', ...headers },
    body: b.slice(),
  });
}
async function makeKey(scopes: string[], label = '') {
  const res = await fetch(`${relay.url}/api/keys`, {
    method: 'POST',
    headers: { ...admin(), 'content-type': 'application/json' },
    body: JSON.stringify({ scopes, label }),
  });
  expect(res.status).toBe(201);
  return (await res.json()) as { id: string; key: string; scopes: string[]; label: string };
}
const current = async (name: string) =>
  ((await (await fetch(`${relay.url}/api/apps/${name}`)).json()) as { description: string })
    .description;

beforeAll(async () => {
  server = await inProcessRelay({ anonymousCallLimit: { max: 3, windowMs: 60_000 } });
  relay = server.relay;
});
afterAll(async () => {
  await server.close();
});

describe('deploy', () => {
  it('refuses an anonymous deploy with 401 before reading the bundle, and stores nothing', async () => {
    const res = await deploy(await bundle('echo', '1.0.0'));
    expect(res.status).toBe(401);
    const { error } = await res.json();
    expect(error.code).toBe('E_AUTH');
    expect(error.message).toContain('deploy');
    expect((await fetch(`${relay.url}/api/apps`).then((r) => r.json())).length).toBe(0);
    const junk = await deploy(bytes('x'), bearer('not-a-key'));
    expect(junk.status).toBe(401);
    expect((await junk.json()).error.message).toContain('not a key this relay knows');
  });

  it('takes a deploy from a key whose deploy pattern matches the app, and only then', async () => {
    const team = await makeKey(['deploy:team-*'], 'team CI');
    const other = await deploy(await bundle('echo', '1.0.0'), bearer(team.key));
    expect(other.status).toBe(403);
    expect((await other.json()).error).toMatchObject({
      code: 'E_FORBIDDEN',
      message: expect.stringContaining('"echo"'),
    });
    expect((await deploy(await bundle('team-a', '1.0.0'), bearer(team.key))).status).toBe(201);
    const callOnly = await makeKey(['call']);
    const refused = await deploy(await bundle('team-b', '1.0.0'), bearer(callOnly.key));
    expect(refused.status).toBe(403);
    expect((await refused.json()).error.message).toContain('deploy');
    const echo = await makeKey(['deploy:echo']);
    expect((await deploy(await bundle('echo', '1.0.0', 'first'), bearer(echo.key))).status).toBe(
      201,
    );
  });

  it('stores an older version without making it current; an admin makes it current', async () => {
    expect((await deploy(await bundle('echo', '1.1.0', 'second'), admin())).status).toBe(201);
    expect(await current('echo')).toBe('second');

    // Re-posting the older version used to roll the app back silently.
    const again = await deploy(await bundle('echo', '1.0.0', 'first'), admin());
    expect(again.status).toBe(200);
    const body = await again.json();
    expect(body).toMatchObject({ version: '1.0.0', current: false, currentVersion: '1.1.0' });
    expect(body.note).toContain('POST /api/apps/echo/current');
    expect(await current('echo')).toBe('second');

    // A new version lower than the current one: kept in the history, not current.
    const lower = await deploy(await bundle('echo', '0.9.0', 'older'), admin());
    expect(lower.status).toBe(201);
    expect(await lower.json()).toMatchObject({ current: false, currentVersion: '1.1.0' });
    const versions = await (await fetch(`${relay.url}/api/apps/echo/versions`)).json();
    expect(versions).toEqual(['0.9.0', '1.0.0', '1.1.0']);
    expect(await current('echo')).toBe('second');

    const setCurrent = (version: string, headers: Record<string, string>) =>
      fetch(`${relay.url}/api/apps/echo/current`, {
        method: 'POST',
        headers: { ...headers, 'content-type': 'application/json' },
        body: JSON.stringify({ version }),
      });
    const deployer = await makeKey(['deploy:echo']);
    expect((await setCurrent('1.0.0', bearer(deployer.key))).status).toBe(403);
    expect((await setCurrent('1.0.0', {})).status).toBe(401);
    const missing = await setCurrent('7.0.0', admin());
    expect(missing.status).toBe(404);
    expect((await missing.json()).error.message).toContain('7.0.0');
    const rolled = await setCurrent('1.0.0', admin());
    expect(rolled.status).toBe(200);
    expect(await rolled.json()).toEqual({ name: 'echo', version: '1.0.0' });
    expect(await current('echo')).toBe('first');
    // A newer version than the current one is a normal deploy again.
    expect(
      await (await deploy(await bundle('echo', '1.1.0', 'second'), admin())).json(),
    ).toMatchObject({ current: true });
    expect(await current('echo')).toBe('second');
  });
});

describe('context over HTTP', () => {
  const put = (app: string, key: string, headers: Record<string, string> = {}) =>
    fetch(`${relay.url}/api/context/${app}/${key}`, {
      method: 'PUT',
      headers: { ...headers, 'content-type': 'application/json' },
      body: JSON.stringify({ value: 'v' }),
    });

  it('refuses an anonymous write, even to an app that is not deployed', async () => {
    const res = await put('ghost', 'k');
    expect(res.status).toBe(401);
    expect((await res.json()).error.message).toContain('context:write:ghost');
    expect(relay.context.replica.get('ghost', 'k', {}, Date.now())).toBeUndefined();
    const del = await fetch(`${relay.url}/api/context/echo/k`, { method: 'DELETE' });
    expect(del.status).toBe(401);
  });

  it('needs context:write for that app, and the app deployed (404)', async () => {
    const echo = await makeKey(['context:write:echo']);
    const other = await put('team-a', 'k', bearer(echo.key));
    expect(other.status).toBe(403);
    expect((await other.json()).error.message).toContain('not context:write:team-a');
    const ghost = await put('ghost', 'k', admin());
    expect(ghost.status).toBe(404);
    expect((await ghost.json()).error.message).toContain('"ghost"');
    expect((await put('echo', 'k', bearer(echo.key))).status).toBe(200);
    expect(await (await fetch(`${relay.url}/api/context/echo/k`)).json()).toMatchObject({
      value: 'v',
    });
    const del = await fetch(`${relay.url}/api/context/echo/k`, {
      method: 'DELETE',
      headers: bearer(echo.key),
    });
    expect(del.status).toBe(204);
  });
});

describe('HTTP calls', () => {
  const schedule = (headers: Record<string, string> = {}, base = relay.url) =>
    fetch(`${base}/api/schedule/echo/main`, {
      method: 'POST',
      headers: { ...headers, 'content-type': 'application/json' },
      body: '{}',
    });

  it('limits anonymous callers per address with 429 and Retry-After, not key holders', async () => {
    const statuses: number[] = [];
    let limited: Response | undefined;
    for (let i = 0; i < 4; i++) {
      const res = await schedule();
      statuses.push(res.status);
      if (res.status === 429) limited = res;
      else await res.body?.cancel();
    }
    // No node is connected: the three allowed answer 503, the fourth is over the limit.
    expect(statuses).toEqual([503, 503, 503, 429]);
    expect(Number(limited!.headers.get('retry-after'))).toBeGreaterThan(0);
    const { error } = await limited!.json();
    expect(error.code).toBe('E_RATE');
    expect(error.message).toContain('at most 3 per 60 s');

    const caller = await makeKey(['call']);
    for (const headers of [bearer(caller.key), admin()]) {
      for (let i = 0; i < 5; i++) expect((await schedule(headers)).status).toBe(503);
    }
    // A credential is never dropped to anonymous: without `call` (or unknown) it is refused.
    const jobs = await schedule(bearer((await makeKey(['jobs'])).key));
    expect(jobs.status).toBe(403);
    expect((await jobs.json()).error.message).toContain('not call');
    expect((await schedule(bearer('brume_unknown'))).status).toBe(401);
  });

  it('needs the call scope when anonymous calls are switched off', async () => {
    const closed = await inProcessRelay({ anonymousCalls: false });
    try {
      const call = (headers: Record<string, string>) =>
        fetch(`${closed.relay.url}/api/call/echo/main`, {
          method: 'POST',
          headers: { ...headers, 'content-type': 'application/json' },
          body: JSON.stringify({ input: 1 }),
        });
      const anonymous = await call({});
      expect(anonymous.status).toBe(401);
      expect((await anonymous.json()).error.message).toContain('scope call');
      const deployer = (await closed.relay.keys.create(['deploy:echo'], '')).secret;
      expect((await call(bearer(deployer))).status).toBe(403);
      const caller = (await closed.relay.keys.create(['call'], '')).secret;
      expect((await call(bearer(caller))).status).toBe(404); // past the gate: no app "echo"
      expect((await call(bearer(closed.relay.admin.token))).status).toBe(404);
    } finally {
      await closed.close();
    }
  });
});

describe('API keys', () => {
  it('keeps only a hash of each key, shows the secret once, and revokes', async () => {
    const made = await makeKey(['deploy:echo', 'call', 'deploy'], 'laptop');
    expect(made.key).toMatch(/^brume_[A-Za-z0-9_-]{43}$/);
    expect(made.scopes).toEqual(['deploy:echo', 'call', 'deploy:*']);
    const list = (await (await fetch(`${relay.url}/api/keys`, { headers: admin() })).json()) as {
      id: string;
    }[];
    const listed = list.find((k) => k.id === made.id);
    expect(listed).toEqual({
      id: made.id,
      label: 'laptop',
      scopes: made.scopes,
      createdAt: expect.any(String),
    });
    const file = join(server.dataDir, 'keys.json');
    const stored = await readFile(file, 'utf8');
    expect(stored).not.toContain(made.key);
    expect(stored).toContain(made.id);
    expect((await stat(file)).mode & 0o777).toBe(0o600);

    const del = (id: string, headers = admin()) =>
      fetch(`${relay.url}/api/keys/${id}`, { method: 'DELETE', headers });
    // Only admin manages keys; a key with admin may.
    expect((await del(made.id, bearer(made.key))).status).toBe(403);
    expect((await (await fetch(`${relay.url}/api/keys`)).json()).error.code).toBe('E_AUTH');
    const root = await makeKey(['admin']);
    expect((await fetch(`${relay.url}/api/nodes`, { headers: bearer(root.key) })).status).toBe(200);
    expect((await del(made.id, bearer(root.key))).status).toBe(204);
    expect((await del(made.id)).status).toBe(404);
    const revoked = await deploy(await bundle('echo', '5.0.0'), bearer(made.key));
    expect(revoked.status).toBe(401);
  });

  it('refuses a scope that does not exist, naming it', async () => {
    for (const scopes of [['deploy:Bad Name'], ['everything'], []]) {
      const res = await fetch(`${relay.url}/api/keys`, {
        method: 'POST',
        headers: { ...admin(), 'content-type': 'application/json' },
        body: JSON.stringify({ scopes }),
      });
      expect(res.status, JSON.stringify(scopes)).toBe(400);
      const { message } = (await res.json()).error;
      expect(message).toContain(scopes[0] ?? 'at least one scope');
    }
  });
});
