// The streaming blob store (relay/blobs.ts) on a real file system: streamed puts hashed and
// deduplicated, limits, ranged reads, and mark-and-sweep collection driven by an injected clock.
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { text } from 'node:stream/consumers';
import { afterEach, describe, expect, it } from 'vitest';
import { InputError, LimitError, TimeoutError, UnavailableError } from '../../core/errors';
import { withBlobs } from '../../relay/blob-refs';
import { type Blobs, openBlobs } from '../../relay/blobs';
import { createStore } from '../../relay/store';
import { greetApp, wasm } from '../apps';
import { until } from '../until';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const HOUR = 3_600_000;
const sha = (b: Uint8Array | string) => createHash('sha256').update(b).digest('hex');

/** A store in a fresh directory, its clock in the test's hands. */
async function fresh(o: { graceMs?: number; maxUploads?: number } = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'brume-blobs-'));
  dirs.push(dir);
  const clock = { now: Date.now() };
  const blobs = openBlobs(await createStore(dir), {
    graceMs: o.graceMs ?? HOUR,
    maxUploads: o.maxUploads ?? 4,
    now: () => clock.now,
  });
  const files = () => readdirSync(join(dir, 'blobs'));
  return { dir, blobs, clock, files };
}

const put = (blobs: Blobs, bytes: Buffer | string, limit = 1 << 20) =>
  blobs.putStream(Readable.from([Buffer.from(bytes)]), limit);

describe('putStream', () => {
  it('stores a stream under its sha256, answers its size, and keeps one copy of a second upload', async () => {
    const { blobs, files } = await fresh();
    const bytes = randomBytes(300_000);
    // In several chunks, as a socket delivers them.
    const chunks = [bytes.subarray(0, 1), bytes.subarray(1, 65_537), bytes.subarray(65_537)];
    const r = await blobs.putStream(Readable.from(chunks), 1 << 20);
    expect(r).toEqual({ hash: sha(bytes), size: bytes.length });
    expect(Buffer.from((await blobs.get(r.hash))!)).toEqual(bytes);
    expect(await put(blobs, bytes)).toEqual(r);
    expect(files()).toEqual([r.hash]); // no temporary left either
  });

  it('refuses a body over the limit with E_LIMIT naming it, and keeps nothing', async () => {
    const { blobs, files } = await fresh();
    const err = await put(blobs, Buffer.alloc(1025), 1024).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LimitError);
    expect((err as Error).message).toMatch(/over the limit of 1024 bytes/);
    expect(files()).toEqual([]);
    // Exactly the limit is fine.
    expect((await put(blobs, Buffer.alloc(1024), 1024)).size).toBe(1024);
  });

  it('checks an expected hash: a mismatch names x-brume-sha256 and keeps nothing', async () => {
    const { blobs, files } = await fresh();
    const body = () => Readable.from([Buffer.from('hello')]);
    const wrong = sha('other');
    const err = await blobs.putStream(body(), 100, wrong).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InputError);
    expect((err as Error).message).toContain(
      `x-brume-sha256: the body's sha256 is ${sha('hello')}`,
    );
    expect(files()).toEqual([]);
    await expect(blobs.putStream(body(), 100, 'nothex')).rejects.toThrow(/x-brume-sha256/);
    expect((await blobs.putStream(body(), 100, sha('hello'))).hash).toBe(sha('hello'));
  });

  it('refuses an upload past maxUploads at once, and takes one again when one ends', async () => {
    const { blobs, files } = await fresh({ maxUploads: 1 });
    const slow = new PassThrough();
    const first = blobs.putStream(slow, 1 << 20);
    slow.write('part one, ');
    expect(blobs.uploading()).toBe(1);
    const err = await put(blobs, 'x').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UnavailableError);
    expect((err as Error).message).toMatch(/limit 1, --max-uploads/);
    // An upload in progress is a temporary file, which a collection never takes.
    await until(() => files().some((f) => f.endsWith('.tmp')), 'the temporary file');
    slow.end('part two');
    expect((await first).hash).toBe(sha('part one, part two'));
    expect((await put(blobs, 'x')).hash).toBe(sha('x'));
  });

  it('cuts an upload that stalls (E_TIMEOUT), freeing its slot and dropping its temporary', async () => {
    const { dir } = await fresh();
    const blobs = openBlobs(await createStore(dir), { graceMs: HOUR, maxUploads: 1, idleMs: 200 });
    const stalled = new PassThrough();
    const p = blobs.putStream(stalled, 1 << 20);
    stalled.write('a first part, then nothing');
    const err = await p.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TimeoutError);
    expect((err as Error).message).toMatch(/sent nothing for 200 ms/);
    expect(blobs.uploading()).toBe(0);
    expect(readdirSync(join(dir, 'blobs'))).toEqual([]);
  });

  it('stores bytes in memory (a job result) under their hash', async () => {
    const { blobs } = await fresh();
    const bytes = new TextEncoder().encode('a result');
    expect(await blobs.putBytes(bytes)).toEqual({ hash: sha(bytes), size: bytes.length });
    expect(Buffer.from((await blobs.get(sha(bytes)))!).toString()).toBe('a result');
  });

  it('keeps one file when the same bytes arrive twice at once', async () => {
    const { blobs, files } = await fresh();
    const bytes = randomBytes(200_000);
    const both = await Promise.all([put(blobs, bytes), put(blobs, bytes)]);
    expect(both[0]).toEqual(both[1]);
    expect(files()).toEqual([sha(bytes)]);
  });

  it('removes at start an upload a killed relay left half written', async () => {
    const { dir, files } = await fresh();
    writeFileSync(join(dir, 'blobs', '.upload.0123456789ab.tmp'), 'half an upload');
    await createStore(dir);
    expect(files()).toEqual([]);
  });

  it('drops the temporary of a body that errors or is cut off', async () => {
    const { blobs, files } = await fresh();
    const broken = new PassThrough();
    const p = blobs.putStream(broken, 1 << 20);
    broken.write('some bytes');
    broken.destroy(new Error('socket reset'));
    await expect(p).rejects.toThrow();
    const cut = new PassThrough();
    const q = blobs.putStream(cut, 1 << 20);
    cut.write('some bytes');
    cut.destroy();
    await expect(q).rejects.toThrow();
    expect(files()).toEqual([]);
    expect(blobs.uploading()).toBe(0);
  });
});

describe('reads', () => {
  it('streams a whole blob or a range of it, and says when there is none', async () => {
    const { blobs } = await fresh();
    const { hash } = await put(blobs, 'abcdefghij');
    expect(await blobs.stat(hash)).toEqual({ size: 10 });
    expect(await text(blobs.open(hash))).toBe('abcdefghij');
    expect(await text(blobs.open(hash, { start: 2, end: 4 }))).toBe('cde');
    const file = (await blobs.openFile(hash))!;
    expect(file.size).toBe(10);
    expect(await text(file.read({ start: 9, end: 9 }))).toBe('j');
    expect(await blobs.stat(sha('absent'))).toBeUndefined();
    expect(await blobs.openFile(sha('absent'))).toBeUndefined();
    expect(() => blobs.open('../../etc/passwd')).toThrow(/hash: .* is not a sha256/);
  });
});

describe('collection', () => {
  it('deletes an unreferenced blob older than the grace; keeps a referenced one and a fresh one', async () => {
    const { blobs, clock, files } = await fresh({ graceMs: HOUR });
    const old = await put(blobs, 'nobody uses me');
    const used = await put(blobs, 'a job uses me');
    const names = new Set([used.hash]);
    blobs.addReferrer('jobs', () => names);
    expect(await blobs.collect()).toEqual({ deleted: [], kept: 2 }); // both within the grace

    const again = await put(blobs, 'uploaded twice');
    clock.now = Date.now() + HOUR + 1; // an hour after they were written
    // Uploading an old blob again makes it young again.
    await put(blobs, 'uploaded twice');
    expect((await blobs.collect()).deleted).toEqual([old.hash]);
    expect(files().sort()).toEqual([used.hash, again.hash].sort());

    // Once its referrer lets go, it goes too.
    names.clear();
    clock.now += 2 * HOUR;
    expect((await blobs.collect()).deleted.sort()).toEqual([used.hash, again.hash].sort());
    expect(files()).toEqual([]);
  });

  it('deletes nothing when a referrer fails (it cannot say what is live)', async () => {
    const { blobs, clock, files } = await fresh();
    await put(blobs, 'old');
    blobs.addReferrer('broken', () => {
      throw new Error('index unreadable');
    });
    clock.now += 10 * HOUR;
    await expect(blobs.collect()).rejects.toThrow('index unreadable');
    expect(files()).toHaveLength(1);
    expect(() => blobs.addReferrer('broken', () => [])).toThrow(/registered twice/);
  });

  it("keeps every deployed app's files (all versions) through the apps referrer", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'brume-blobs-'));
    dirs.push(dir);
    const clock = { now: Date.now() };
    const base = await createStore(dir);
    const { blobs, apps } = withBlobs(base, { graceMs: HOUR }, () => clock.now);
    // Version 1.0.0 with its own file, then 2.0.0 (current) with another: both are kept.
    const v1 = (await greetApp('1.0.0')).manifest;
    const file = Buffer.from(wasm('echo'));
    await blobs.put(sha(file), file);
    const other = Buffer.from('the second version of the file');
    await blobs.put(sha(other), other);
    const v2 = {
      ...(await greetApp('2.0.0')).manifest,
      files: { 'echo.wasm': { sha256: sha(other), size: other.length } },
    };
    await base.apps.put(v1);
    await base.apps.put(v2);
    const stray = await put(blobs, 'stray');
    clock.now += 2 * HOUR;
    expect((await blobs.collect()).deleted).toEqual([stray.hash]);
    expect(await apps.has(sha(file))).toBe(true);
    expect(await apps.has(sha(other))).toBe(true);
    expect(await apps.has(stray.hash)).toBe(false);
    expect(statSync(join(dir, 'blobs', sha(file))).size).toBe(file.length);
  });
});
