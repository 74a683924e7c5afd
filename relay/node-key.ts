/**
 * A server node's identity, kept in its data directory: the signing pair (ECDSA P-256) and the
 * context agreement pair (ECDH P-256) as JWK in `node-key.json`, mode 0600, made once. Unlike a
 * tab's (IndexedDB holds CryptoKeys that cannot be exported) these must be written out, so they
 * are made extractable, saved, and imported again with private halves that cannot be exported.
 * @example const me = await fileIdentity('/var/lib/brume-node'); console.log(me.publicKey);
 */
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, open, readFile, rename, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { InputError } from '../core/errors';
import {
  type Identity,
  type KeyPair,
  loadOrCreateIdentity,
  memoryKeyStore,
} from '../core/identity';

/** The WebCrypto key usages these keys have. */
type KeyUsage = 'sign' | 'verify' | 'deriveBits';

const signing = { name: 'ECDSA', namedCurve: 'P-256' } as const;
const agreeing = { name: 'ECDH', namedCurve: 'P-256' } as const;

/** The private JWK fields of a P-256 key; `d` is the secret. */
const jwk = z
  .object({
    kty: z.literal('EC'),
    crv: z.literal('P-256'),
    x: z.string().max(64),
    y: z.string().max(64),
    d: z.string().max(64),
  })
  .strip();
const keyFile = z.object({ v: z.literal(1), sign: jwk, agree: jwk }).strict();
type KeyFile = z.infer<typeof keyFile>;

/** The file that holds the keys, in `dir`. */
export const keyFileName = 'node-key.json';

/**
 * The identity kept in `dir`, made on first use. A key file readable by others is refused: its
 * key may have been copied, and a copy can join as this node.
 */
export async function fileIdentity(dir: string): Promise<Identity> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const path = join(dir, keyFileName);
  const saved = await readKeyFile(path);
  const keys = saved ?? (await writeKeyFile(path, await newKeyFile()));
  const store = memoryKeyStore();
  await store.set('node', await importPair(keys.sign, signing, ['sign'], ['verify']));
  await store.set('node/agreement', await importPair(keys.agree, agreeing, ['deriveBits'], []));
  return loadOrCreateIdentity(store, 'node');
}

async function readKeyFile(path: string): Promise<KeyFile | undefined> {
  let text: string;
  try {
    const s = await stat(path);
    if (s.mode & 0o077) {
      throw new InputError(
        `${path} may be read by other users (mode ${(s.mode & 0o777).toString(8)}): chmod 600 it, or delete it to make a new identity`,
      );
    }
    text = await readFile(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    throw new InputError(`${path} is not JSON (${(e as Error).message})`);
  }
  const r = keyFile.safeParse(parsed);
  if (!r.success) {
    const issue = r.error.issues[0]!;
    throw new InputError(`${path}: ${issue.path.join('.') || 'file'}: ${issue.message}`);
  }
  return r.data;
}

/** Writes `keys` to `path` with mode 0600 (a temporary file renamed, so never half written). */
async function writeKeyFile(path: string, keys: KeyFile): Promise<KeyFile> {
  const tmp = `${path}.${randomBytes(6).toString('hex')}.tmp`;
  const f = await open(tmp, 'wx', 0o600);
  try {
    await f.writeFile(`${JSON.stringify(keys)}\n`);
    await f.sync();
  } finally {
    await f.close();
  }
  // The umask may have narrowed the mode further, never widened it; make it exactly 0600.
  await chmod(tmp, 0o600);
  try {
    await rename(tmp, path);
  } catch (e) {
    await unlink(tmp).catch(() => {});
    throw e;
  }
  return keys;
}

async function newKeyFile(): Promise<KeyFile> {
  const out = async (params: typeof signing | typeof agreeing, usages: KeyUsage[]) => {
    const pair = (await crypto.subtle.generateKey(params, true, usages)) as KeyPair;
    return jwk.parse(await crypto.subtle.exportKey('jwk', pair.privateKey));
  };
  return {
    v: 1,
    sign: await out(signing, ['sign', 'verify']),
    agree: await out(agreeing, ['deriveBits']),
  };
}

/** A key pair from its private JWK: the private half not extractable, the public half is. */
async function importPair(
  key: z.infer<typeof jwk>,
  params: typeof signing | typeof agreeing,
  privateUses: KeyUsage[],
  publicUses: KeyUsage[],
): Promise<KeyPair> {
  const { d: _, ...pub } = key;
  try {
    const privateKey = await crypto.subtle.importKey('jwk', key, params, false, privateUses);
    const publicKey = await crypto.subtle.importKey('jwk', pub, params, true, publicUses);
    return { privateKey, publicKey };
  } catch (e) {
    throw new InputError(
      `the node key file holds a key WebCrypto refuses: ${(e as Error).message}`,
    );
  }
}
