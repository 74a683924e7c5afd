/**
 * The relay's admin secret and fog trust list, kept in the data directory. The token is made on
 * first start (printed by the CLI, readable by the CLI from the data dir) and guards every
 * endpoint that changes trust.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

export interface TrustEntry {
  publicKey: string;
  label: string;
  addedAt: string;
}

export interface Admin {
  token: string;
  /** Constant-time check of an `Authorization: Bearer …` header. */
  authorized(header: string | undefined): boolean;
  trusted(publicKey: string): boolean;
  trustList(): TrustEntry[];
  trust(publicKey: string, label: string): Promise<TrustEntry>;
  revoke(publicKey: string): Promise<boolean>;
}

export async function loadAdmin(dataDir: string): Promise<Admin> {
  await mkdir(dataDir, { recursive: true });
  const tokenFile = join(dataDir, 'admin-token');
  const trustFile = join(dataDir, 'trust.json');
  let token: string;
  if (existsSync(tokenFile)) token = (await readFile(tokenFile, 'utf8')).trim();
  else {
    token = randomBytes(24).toString('base64url');
    await writeFile(tokenFile, `${token}\n`, { mode: 0o600 });
    await chmod(tokenFile, 0o600);
  }
  const entries = new Map<string, TrustEntry>();
  if (existsSync(trustFile)) {
    for (const e of JSON.parse(await readFile(trustFile, 'utf8')) as TrustEntry[])
      entries.set(e.publicKey, e);
  }
  const save = async () => {
    const tmp = `${trustFile}.tmp`;
    await writeFile(tmp, `${JSON.stringify([...entries.values()], null, 2)}\n`);
    await rename(tmp, trustFile);
  };
  const expected = Buffer.from(`Bearer ${token}`);
  return {
    token,
    authorized(header) {
      const got = Buffer.from(header ?? '');
      return got.length === expected.length && timingSafeEqual(got, expected);
    },
    trusted: (key) => entries.has(key),
    trustList: () => [...entries.values()],
    async trust(publicKey, label) {
      const entry = { publicKey, label, addedAt: new Date().toISOString() };
      entries.set(publicKey, entry);
      await save();
      return entry;
    },
    async revoke(publicKey) {
      const had = entries.delete(publicKey);
      if (had) await save();
      return had;
    },
  };
}
