/**
 * The relay's admin secret and fog trust list, kept in the data directory. The token is made on
 * first start (printed by the CLI that once, readable by the CLI from the data dir) and holds
 * every scope: it guards the admin API, key management, and everything an API key can do.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { chmod, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { serial } from '../core/serial';
import { readDurable, writeDurable } from './durable';

export interface TrustEntry {
  publicKey: string;
  label: string;
  addedAt: string;
}

export interface Admin {
  token: string;
  /** True when this start made the token (first start, or after `brume token --rotate`). */
  created: boolean;
  /** Constant-time check of an `Authorization: Bearer …` header. */
  authorized(header: string | undefined): boolean;
  trusted(publicKey: string): boolean;
  trustList(): TrustEntry[];
  trust(publicKey: string, label: string): Promise<TrustEntry>;
  revoke(publicKey: string): Promise<boolean>;
}

/**
 * Makes the data directory readable by this user only (0700) when it creates it: it holds the
 * admin token, the keys' hashes and the context store. A directory that exists is left as the
 * person made it.
 */
export async function ensureDataDir(dataDir: string): Promise<void> {
  const made = await mkdir(dataDir, { recursive: true, mode: 0o700 });
  if (made !== undefined) await chmod(dataDir, 0o700);
}

/** The trust list as it is stored (trust.json, or a cluster's shared document). */
export const trustSchema = z.array(
  z.object({ publicKey: z.string().max(512), label: z.string().max(1000), addedAt: z.string() }),
);

/**
 * The admin token and trust list of `dataDir`. A `given` token (from the configuration, e.g. a
 * secret store) is used as it is and never written to the data directory.
 */
export async function loadAdmin(
  dataDir: string,
  warn: (message: string) => void = (m) => console.warn(m),
  given?: string,
): Promise<Admin> {
  await ensureDataDir(dataDir);
  const tokenFile = join(dataDir, 'admin-token');
  const trustFile = join(dataDir, 'trust.json');
  let token = given ?? (await readDurable(tokenFile, (b) => b.toString('utf8').trim(), warn)) ?? '';
  const created = token === '';
  if (created) {
    token = randomBytes(24).toString('base64url');
    await writeDurable(tokenFile, `${token}\n`, { mode: 0o600 });
  }
  const stored = await readDurable(
    trustFile,
    (b) => trustSchema.parse(JSON.parse(b.toString('utf8'))),
    warn,
  );
  let entries = new Map((stored ?? []).map((e) => [e.publicKey, e]));
  // One change at a time, each from the list the previous one left, and memory changes only once
  // the file has: concurrent posts all land, and a failed write changes nothing.
  const oneAtATime = serial();
  const change = <T>(fn: (next: Map<string, TrustEntry>) => T | undefined): Promise<T> =>
    oneAtATime(async () => {
      const next = new Map(entries);
      const out = fn(next);
      if (out === undefined) return out as T;
      await writeDurable(trustFile, `${JSON.stringify([...next.values()], null, 2)}\n`);
      entries = next;
      return out;
    });
  const expected = digest(`Bearer ${token}`);
  return {
    token,
    created,
    authorized(header) {
      // Digests have one length, so the comparison takes the same time whatever was sent.
      return timingSafeEqual(digest(header ?? ''), expected);
    },
    trusted: (key) => entries.has(key),
    trustList: () => [...entries.values()],
    trust: (publicKey, label) =>
      change((next) => {
        const entry = { publicKey, label, addedAt: new Date().toISOString() };
        next.set(publicKey, entry);
        return entry;
      }),
    revoke: async (publicKey) =>
      (await change((next) => (next.delete(publicKey) ? true : undefined))) ?? false,
  };
}

/** sha256 of `text`: tokens are compared by digest, in constant time. */
export function digest(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}
