/**
 * API keys: credentials the admin creates, each with scopes, kept in `<data>/keys.json` as the
 * sha256 of their secret (the secret itself is shown once, at creation). A scope is `call`,
 * `jobs`, `metrics` (scrape `/metrics`), `admin`, `deploy:<apps>` or `context:write:<apps>`, where `<apps>` is an app name or a
 * pattern with `*` (`team-*`); a bare `deploy` or `context:write` means every app. A key may
 * belong to a user (relay/projects.ts): it then acts as that user in the projects it is a member of.
 * relay/cluster/keys.ts keeps the same list in Redis, for relays that share it.
 * @example const keys = await openKeys('.brume', console.warn);
 *          const { secret } = await keys.create(['deploy:digits', 'call'], 'CI');
 */
import { createHash, randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { z } from 'zod';
import { ConflictError, InputError, LimitError } from '../core/errors';
import { APP_NAME, SHA256_HEX } from '../core/names';
import { serial } from '../core/serial';
import { readDurable, writeDurable } from './durable';

/** What a scope lets its holder do. */
export type Permission = 'deploy' | 'context:write' | 'call' | 'jobs' | 'metrics' | 'admin';

export interface ApiKey {
  id: string;
  label: string;
  scopes: string[];
  /** The user (relay/projects.ts) this key acts as; keys made before users have none. */
  user?: string;
  /** sha256 (hex) of the secret: the relay never stores the secret itself. */
  sha256: string;
  createdAt: string;
}

export interface KeyStore {
  /** Every key, without secrets (there are none to show). */
  list(): ApiKey[];
  /** Makes a key; `secret` is the only copy of what a client sends. */
  create(scopes: string[], label: string, user?: string): Promise<{ key: ApiKey; secret: string }>;
  revoke(id: string): Promise<boolean>;
  /**
   * Takes a key made elsewhere (a federated site, relay/federation/): its id and hash as made
   * there. False when it is here already; E_CONFLICT when its id or hash is another key's.
   */
  adopt(key: ApiKey): Promise<boolean>;
  /** The key whose secret this is, if any. */
  find(secret: string): ApiKey | undefined;
}

export const keyLimits = { keys: 1000, scopesPerKey: 32, label: 200 };

const PATTERN = /^[a-z0-9*][a-z0-9*-]{0,63}$/;
const PER_APP = ['deploy', 'context:write'] as const;
const PLAIN = ['call', 'jobs', 'metrics', 'admin'] as const;

/** Checks one scope string; the error names it and lists the forms that exist. */
export function parseScope(scope: string): string {
  if ((PLAIN as readonly string[]).includes(scope)) return scope;
  for (const p of PER_APP) {
    if (scope === p) return `${p}:*`;
    if (scope.startsWith(`${p}:`) && PATTERN.test(scope.slice(p.length + 1))) return scope;
  }
  throw new InputError(
    `scope "${scope.slice(0, 80)}" is not one of call, jobs, metrics, admin, deploy[:<apps>], context:write[:<apps>] (<apps>: a name or a pattern like team-*)`,
  );
}

/** Whether `scopes` grant `permission` (for `app`, where the permission is per app). */
export function grants(scopes: readonly string[], permission: Permission, app?: string): boolean {
  if (scopes.includes('admin')) return true;
  if (!(PER_APP as readonly string[]).includes(permission)) return scopes.includes(permission);
  return scopes.some(
    (s) =>
      s.startsWith(`${permission}:`) &&
      (app === undefined || globMatches(s.slice(permission.length + 1), app)),
  );
}

function globMatches(pattern: string, name: string): boolean {
  const re = pattern.split('*').map((part) => part.replace(/-/g, '\\-'));
  return new RegExp(`^${re.join('[a-z0-9-]*')}$`).test(name);
}

export function hashSecret(secret: string): string {
  return createHash('sha256').update(secret).digest('hex');
}

/** A key as stored (a file, Redis): read back, it is checked as input is. */
export const keySchema = z.object({
  id: z.string().regex(/^[0-9a-f]{16}$/),
  label: z.string().max(keyLimits.label),
  scopes: z.array(z.string()).max(keyLimits.scopesPerKey),
  user: z.string().regex(APP_NAME).optional(),
  sha256: z.string().regex(SHA256_HEX),
  createdAt: z.string(),
});

/** Opens the key list of a data directory; a corrupt keys.json is moved aside (no key then). */
export async function openKeys(
  dataDir: string,
  warn: (message: string) => void,
  limits: { keys?: number } = {},
): Promise<KeyStore> {
  const file = join(dataDir, 'keys.json');
  const maxKeys = limits.keys ?? keyLimits.keys;
  const stored = await readDurable(
    file,
    (bytes) => z.array(keySchema).parse(JSON.parse(bytes.toString('utf8'))),
    warn,
  );
  let keys: ApiKey[] = stored ?? [];
  let byHash = index(keys);
  // One change at a time, each computed from the list the previous one left: none is lost.
  const change = serial();
  // Memory changes only once the file has: a failed write leaves both as they were.
  const commit = async (next: ApiKey[]) => {
    await writeDurable(file, `${JSON.stringify(next, null, 2)}\n`);
    keys = next;
    byHash = index(next);
  };

  return {
    list: () => keys.map((k) => ({ ...k })),
    find: (secret) => byHash.get(hashSecret(secret)),
    create: (scopes, label, user) =>
      change(async () => {
        const { key, secret } = makeKey(scopes, label, user);
        if (keys.length >= maxKeys) {
          throw new LimitError(`this relay holds ${maxKeys} keys already (its limit): revoke one`);
        }
        await commit([...keys, key]);
        return { key: { ...key }, secret };
      }),
    revoke: (id) =>
      change(async () => {
        if (!keys.some((k) => k.id === id)) return false;
        await commit(keys.filter((k) => k.id !== id));
        return true;
      }),
    adopt: (key) =>
      change(async () => {
        if (!adoptable(keys, byHash, key)) return false;
        if (keys.length >= maxKeys) {
          throw new LimitError(`this relay holds ${maxKeys} keys already (its limit): revoke one`);
        }
        await commit([...keys, { ...key }]);
        return true;
      }),
  };
}

/** A new key with its secret, after checking what it is made of (not how many keys there are). */
export function makeKey(
  scopes: string[],
  label: string,
  user?: string,
): { key: ApiKey; secret: string } {
  if (scopes.length === 0) throw new InputError('scopes: give at least one scope');
  if (scopes.length > keyLimits.scopesPerKey) {
    throw new LimitError(`scopes: at most ${keyLimits.scopesPerKey} per key`);
  }
  if (label.length > keyLimits.label) {
    throw new LimitError(`label: at most ${keyLimits.label} characters`);
  }
  const parsed = [...new Set(scopes.map(parseScope))];
  const secret = `brume_${randomBytes(32).toString('base64url')}`;
  const key: ApiKey = {
    id: randomBytes(8).toString('hex'),
    label,
    scopes: parsed,
    ...(user !== undefined && { user }),
    sha256: hashSecret(secret),
    createdAt: new Date().toISOString(),
  };
  return { key, secret };
}

/** Whether `key` is new here (false: here already); E_CONFLICT when its id or hash is taken. */
export function adoptable(
  keys: Iterable<ApiKey>,
  byHash: Map<string, ApiKey>,
  key: ApiKey,
): boolean {
  for (const k of keys) {
    if (k.id !== key.id) continue;
    if (k.sha256 === key.sha256) return false;
    throw new ConflictError(`key id ${key.id} is another key here`);
  }
  if (byHash.has(key.sha256)) throw new ConflictError(`key ${key.id}: its secret is another key's`);
  return true;
}

function index(keys: ApiKey[]): Map<string, ApiKey> {
  return new Map(keys.map((k) => [k.sha256, k]));
}
