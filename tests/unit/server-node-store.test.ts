// What a server node keeps in its data directory (relay/node-key.ts, relay/disk-source.ts): its
// key, made once and refused when others may read it, and app files checked before use.
import {
  chmodSync,
  existsSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { InputError } from '../../core/errors';
import { signJoin, verifyJoin } from '../../core/identity';
import { sha256Hex } from '../../core/manifest';
import { memoryAppSource } from '../../core/sources';
import { diskCachedSource } from '../../relay/disk-source';
import { fileIdentity, keyFileName } from '../../relay/node-key';

const dirs: string[] = [];
const fresh = () => {
  const d = mkdtempSync(join(tmpdir(), 'brume-node-store-'));
  dirs.push(d);
  return d;
};
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe('the node key file', () => {
  it('is made once with mode 0600 and gives the same identity, which signs joins', async () => {
    const dir = fresh();
    const first = await fileIdentity(dir);
    expect(statSync(join(dir, keyFileName)).mode & 0o777).toBe(0o600);
    const again = await fileIdentity(dir);
    expect(again.id).toBe(first.id);
    expect(again.publicKey).toBe(first.publicKey);
    expect(again.agreement.kid).toBe(first.agreement.kid);
    const nonce = new Uint8Array(32).fill(7);
    const sig = await signJoin(again, nonce, 'relay-1', 'cloud');
    expect(await verifyJoin(first.publicKey, nonce, 'relay-1', first.id, 'cloud', sig)).toBe(true);
  });

  it('is refused when others may read it, or when it is not a key file', async () => {
    const dir = fresh();
    await fileIdentity(dir);
    const path = join(dir, keyFileName);
    chmodSync(path, 0o644);
    await expect(fileIdentity(dir)).rejects.toThrow(/may be read by other users \(mode 644\)/);
    chmodSync(path, 0o600);
    writeFileSync(path, '{"v":1,"sign":{"kty":"EC"}}');
    await expect(fileIdentity(dir)).rejects.toBeInstanceOf(InputError);
    await expect(fileIdentity(dir)).rejects.toThrow(/sign\.crv/);
    writeFileSync(path, 'not json');
    await expect(fileIdentity(dir)).rejects.toThrow(/is not JSON/);
  });
});

describe('app files on disk', () => {
  const bytes = new TextEncoder().encode('a Logic, say');
  const sha = () => sha256Hex(bytes);
  const source = async () =>
    memoryAppSource([
      {
        manifest: { name: 'a', files: { 'f.wasm': { sha256: await sha() } } },
        files: { 'f.wasm': bytes },
      },
    ]);

  it('are fetched once, then read from disk by the next run, and fetched again when corrupt', async () => {
    const dir = fresh();
    const h = await sha();
    const first = diskCachedSource(await source(), dir);
    expect(await first.blob(h)).toEqual(bytes);
    expect(first.counts).toEqual({ fromDisk: 0, fetched: 1 });
    const second = diskCachedSource(await source(), dir);
    expect(await second.blob(h)).toEqual(bytes);
    expect(second.counts).toEqual({ fromDisk: 1, fetched: 0 });
    writeFileSync(join(dir, h), 'tampered');
    const third = diskCachedSource(await source(), dir);
    expect(await third.blob(h)).toEqual(bytes);
    expect(third.counts).toEqual({ fromDisk: 0, fetched: 1 });
    expect(new Uint8Array(readFileSync(join(dir, h)))).toEqual(bytes);
  });

  it('are removed from disk once no version held names them', async () => {
    const dir = fresh();
    const h = await sha();
    const s = diskCachedSource(await source(), dir);
    await s.blob(h);
    expect(existsSync(join(dir, h))).toBe(true);
    await s.forget!([h, '../../etc/passwd']);
    expect(existsSync(join(dir, h))).toBe(false);
    expect(await s.blob(h)).toEqual(bytes);
    expect(s.counts).toEqual({ fromDisk: 0, fetched: 2 });
  });

  it('are named only by a sha256: anything else is refused before it becomes a path', async () => {
    const s = diskCachedSource(await source(), fresh());
    await expect(s.blob('../../etc/passwd')).rejects.toBeInstanceOf(InputError);
  });
});
