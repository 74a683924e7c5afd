// What every implementation of the relay's store interfaces must do, as one body of tests per
// interface (AppStore, BlobStore, KeyStore, JobStore): tests/unit/store-contracts.test.ts runs
// each against the file implementation and the Redis one (relay/cluster/), so both keep the
// same semantics. `open()` gives a fresh, empty store; `reopen()` another view of the same
// backing data (a relay restarted, or a second relay on the same Redis).
import { createHash, randomBytes } from 'node:crypto';
import { expect, it } from 'vitest';
import { ConflictError, InputError, InternalError, LimitError } from '../core/errors';
import { buildManifest, type Manifest } from '../core/manifest';
import { type Job, moveTo } from '../relay/jobs/job';
import type { JobStore } from '../relay/jobs/store';
import { type KeyStore, makeKey } from '../relay/keys';
import type { AppStore, BlobStore } from '../relay/store';

export interface Backing<T> {
  open(): Promise<T>;
  reopen(): Promise<T>;
}

export const manifest = (name: string, version: string): Promise<Manifest> =>
  buildManifest(
    {
      brume: 1,
      name,
      version,
      services: { echo: { kind: 'logic', file: 'echo.wasm', rpcs: ['echo'] } },
    },
    { 'echo.wasm': new TextEncoder().encode(`${name}@${version}`) },
  );

export function appStoreContract(b: Backing<AppStore>): void {
  it('keeps each version, makes the put one current unless told not to, and reads back after a reopen', async () => {
    const apps = await b.open();
    expect(await apps.names()).toEqual([]);
    expect(await apps.current('greet')).toBeUndefined();
    expect(await apps.get('greet', '1.0.0')).toBeUndefined();
    expect(await apps.versions('greet')).toEqual([]);

    const v1 = await manifest('greet', '1.0.0');
    const v9 = await manifest('greet', '1.9.0');
    const v10 = await manifest('greet', '1.10.0');
    await apps.put(v1);
    await apps.put(v10);
    await apps.put(v9, { current: false });
    await apps.put(await manifest('alpha', '0.1.0'));
    await apps.put(await manifest('beta', '2.0.0'), { current: false }); // recorded, not current
    expect(await apps.names()).toEqual(['alpha', 'greet']);
    expect(await apps.current('beta')).toBeUndefined();
    expect(await apps.versions('beta')).toEqual(['2.0.0']);
    expect(await apps.current('greet')).toEqual(v10);
    expect(await apps.get('greet', '1.9.0')).toEqual(v9);
    expect(await apps.versions('greet')).toEqual(['1.0.0', '1.9.0', '1.10.0']);

    const again = await b.reopen();
    expect(await again.names()).toEqual(['alpha', 'greet']);
    expect(await again.current('greet')).toEqual(v10);
    expect(await again.get('greet', '1.0.0')).toEqual(v1);
    expect(await again.versions('greet')).toEqual(['1.0.0', '1.9.0', '1.10.0']);
  });

  it('refuses names and versions that are not valid with E_INPUT', async () => {
    const apps = await b.open();
    for (const bad of ['Greet', '../etc', 'a:b', '']) {
      await expect(apps.current(bad)).rejects.toBeInstanceOf(InputError);
      await expect(apps.versions(bad)).rejects.toBeInstanceOf(InputError);
    }
    await expect(apps.get('greet', '1.0')).rejects.toBeInstanceOf(InputError);
    await expect(apps.get('greet', '1.0.0/../x')).rejects.toBeInstanceOf(InputError);
  });
}

const sha = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

/** `largeBytes`: a size the implementation keeps apart from small blobs, if it does. */
export function blobStoreContract(b: Backing<BlobStore>, largeBytes: number): void {
  it('stores bytes under their sha256, once, and reads them back after a reopen, small and large', async () => {
    const blobs = await b.open();
    const small = new Uint8Array(randomBytes(100));
    const large = new Uint8Array(randomBytes(largeBytes));
    const empty = new Uint8Array(0);
    for (const bytes of [small, large, empty]) {
      expect(await blobs.has(sha(bytes))).toBe(false);
      expect(await blobs.get(sha(bytes))).toBeUndefined();
      await blobs.put(sha(bytes), bytes);
      await blobs.put(sha(bytes), bytes); // present: a no-op
      expect(await blobs.has(sha(bytes))).toBe(true);
    }
    const again = await b.reopen();
    for (const bytes of [small, large, empty])
      expect(Buffer.from((await again.get(sha(bytes)))!)).toEqual(Buffer.from(bytes));
  });

  it('refuses bytes that are not their name (E_INTERNAL, nothing kept) and names that are not a sha256 (E_INPUT)', async () => {
    const blobs = await b.open();
    const bytes = new Uint8Array(randomBytes(64));
    const other = sha(new Uint8Array(randomBytes(64)));
    await expect(blobs.put(other, bytes)).rejects.toBeInstanceOf(InternalError);
    expect(await blobs.has(other)).toBe(false);
    for (const bad of ['ABC', 'a'.repeat(63), `${'a'.repeat(64)}/..`, '../'.repeat(22)]) {
      await expect(blobs.has(bad)).rejects.toBeInstanceOf(InputError);
      await expect(blobs.get(bad)).rejects.toBeInstanceOf(InputError);
      await expect(blobs.put(bad, bytes)).rejects.toBeInstanceOf(InputError);
    }
  });
}

/** `open(limit)`: a fresh store holding at most `limit` keys. */
export function keyStoreContract(b: {
  open(limit?: number): Promise<KeyStore>;
  reopen(): Promise<KeyStore>;
}): void {
  it('makes keys found by their secret only, revokes them, and lists the same after a reopen', async () => {
    const keys = await b.open();
    expect(keys.list()).toEqual([]);
    const a = await keys.create(['deploy', 'call'], 'CI');
    const c = await keys.create(['context:write:team-*'], 'writer', 'ada');
    expect(a.key.scopes).toEqual(['deploy:*', 'call']);
    expect(keys.find(a.secret)).toEqual(a.key);
    expect(keys.find(c.secret)?.user).toBe('ada');
    expect(keys.find(`${a.secret}x`)).toBeUndefined();
    expect(JSON.stringify(keys.list())).not.toContain(a.secret);
    expect(
      keys
        .list()
        .map((k) => k.id)
        .sort(),
    ).toEqual([a.key.id, c.key.id].sort());

    expect(await keys.revoke(a.key.id)).toBe(true);
    expect(await keys.revoke(a.key.id)).toBe(false);
    expect(keys.find(a.secret)).toBeUndefined();

    const again = await b.reopen();
    expect(again.list()).toEqual([c.key]);
    expect(again.find(c.secret)).toEqual(c.key);
  });

  it('refuses bad scopes and labels (naming them) and a key past the limit, keeping nothing of them', async () => {
    const keys = await b.open(2);
    await expect(keys.create([], 'x')).rejects.toThrow(/scopes: give at least one/);
    await expect(keys.create(['root'], 'x')).rejects.toThrow(/scope "root" is not one of/);
    await expect(keys.create(['call'], 'x'.repeat(201))).rejects.toBeInstanceOf(LimitError);
    await keys.create(['call'], 'one');
    await keys.create(['jobs'], 'two');
    const over = await keys.create(['call'], 'three').catch((e: unknown) => e);
    expect(over).toBeInstanceOf(LimitError);
    expect((over as Error).message).toMatch(/2 keys already/);
    expect(
      keys
        .list()
        .map((k) => k.label)
        .sort(),
    ).toEqual(['one', 'two']);
  });

  it('adopts a key made elsewhere by its hash, once, refusing one whose id or hash is taken', async () => {
    const keys = await b.open(2);
    const made = makeKey(['call'], 'from a peer', 'ada');
    expect(await keys.adopt(made.key)).toBe(true);
    expect(await keys.adopt(made.key)).toBe(false);
    expect(keys.find(made.secret)).toEqual(made.key);
    const other = makeKey(['call'], 'other').key;
    await expect(keys.adopt({ ...other, id: made.key.id })).rejects.toBeInstanceOf(ConflictError);
    await expect(keys.adopt({ ...other, sha256: made.key.sha256 })).rejects.toBeInstanceOf(
      ConflictError,
    );
    await keys.create(['jobs'], 'two');
    await expect(keys.adopt(other)).rejects.toBeInstanceOf(LimitError);
    expect((await b.reopen()).find(made.secret)).toEqual(made.key);
  });
}

const ids = ['0'.repeat(23), 'a'.repeat(23), 'b'.repeat(23)].map((p, i) => `${p}${i}`);
export const job = (id: string, over: Partial<Job> = {}): Job => ({
  id,
  app: 'greet',
  service: 'greet',
  rpc: 'echo',
  input: { n: 1 },
  qos: {},
  priority: 0,
  owner: 'admin',
  state: 'queued',
  attempts: 0,
  reasons: [],
  created: 1,
  ...over,
});

export function jobStoreContract(b: Backing<JobStore>): void {
  it('reads back the last state of each job after a reopen, without those forgotten', async () => {
    const store = await b.open();
    expect(await store.load()).toEqual([]);
    const [ia, ib, ic] = ids as [string, string, string];
    const a = job(ia, { input: new Uint8Array([1, 2, 3]) });
    await Promise.all([store.put(a), store.put(job(ib)), store.put(job(ic))]);
    const running = moveTo(a, 'running', { attempts: 1, node: 'f'.repeat(32) });
    await store.put(running);
    await store.forget([ib]);
    await store.forget([]);
    expect(store.size().liveBytes).toBeGreaterThan(0);
    await store.close();

    const again = await b.reopen();
    const kept = (await again.load()).sort((x, y) => (x.id < y.id ? -1 : 1));
    expect(kept.map((j) => [j.id, j.state])).toEqual([
      [ia, 'running'],
      [ic, 'queued'],
    ]);
    expect(kept[0]).toEqual(running);
    expect(kept[0]!.input).toEqual(new Uint8Array([1, 2, 3]));
    await again.close();
  });
}
