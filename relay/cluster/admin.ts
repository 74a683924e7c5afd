/**
 * The admin token and the fog trust list (relay/admin.ts) shared by the relays of a cluster.
 *
 * Keys (after the link's prefix): string `admin:token` holds the token, made by the first relay
 * that finds none (SET NX: two relays starting together agree on one); `brume token --redis
 * <url> --rotate` replaces it and publishes on channel `admin:token`, and every relay takes the
 * new one at once (no restart). A token given by the configuration (BRUME_ADMIN_TOKEN) is used as
 * it is and never written to Redis. The trust list is the shared document `trust`
 * (relay/cluster/doc.ts), at most `MAX_TRUSTED` entries: a trust or a revoke at one relay is
 * heard by the others, whose `onChange` listeners (the hub's retrust) run.
 * @example const admin = await sharedAdmin(cluster, log.warn);
 *          admin.onChange(() => hub.retrust());
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { InternalError, LimitError, UnavailableError } from '../../core/errors';
import { type Admin, digest, type TrustEntry, trustSchema } from '../admin';
import type { Cluster } from './cluster';
import { openDoc } from './doc';
import type { RedisLink } from './redis';

/** Entries the shared trust list holds at most: every relay keeps it in memory. */
export const MAX_TRUSTED = 1000;
/** Its stored size at most: MAX_TRUSTED entries of a 512-character key and a 1000-character label. */
const MAX_TRUST_BYTES = 2 * 1024 * 1024;
/** Saves tried before a trust change gives up under other relays' concurrent changes. */
const MAX_ATTEMPTS = 16;
/** What a token may be (as BRUME_ADMIN_TOKEN must be); anything else in Redis is refused. */
const TOKEN = /^[\w-]{32,512}$/;

export interface SharedAdmin extends Admin {
  /** Calls `fn` when another relay changed the trust list. */
  onChange(fn: () => void): () => void;
  /** Stops listening (the cluster's link stays open). */
  close(): void;
}

/** The key of the shared admin token. */
const tokenKey = (redis: RedisLink) => redis.key('admin', 'token');

/**
 * The shared admin token; with `create`, makes one if there is none (answers whether it did).
 * InternalError naming the key when Redis holds something that is not a token.
 */
export async function readSharedToken(
  redis: RedisLink,
  create: boolean,
): Promise<{ token: string | undefined; created: boolean }> {
  const key = tokenKey(redis);
  let created = false;
  if (create) {
    const fresh = randomBytes(24).toString('base64url');
    created = (await redis.run('make the admin token', (c) => c.set(key, fresh, 'NX'))) === 'OK';
  }
  const token = await redis.run('read the admin token', (c) => c.get(key));
  if (token !== null && !TOKEN.test(token))
    throw new InternalError(
      `${key} does not hold an admin token (${TOKEN}): set a new one with brume token --redis <url> --rotate`,
    );
  return { token: token ?? undefined, created };
}

/** Replaces the shared admin token and tells every relay; answers the new one. */
export async function rotateSharedToken(redis: RedisLink): Promise<string> {
  const token = randomBytes(24).toString('base64url');
  await redis.run('rotate the admin token', (c) =>
    c.multi().set(tokenKey(redis), token).publish(tokenKey(redis), 'rotated').exec(),
  );
  return token;
}

export async function sharedAdmin(
  cluster: Cluster,
  warn: (message: string) => void,
  given?: string,
): Promise<SharedAdmin> {
  const { redis } = cluster;
  const first = given === undefined ? await readSharedToken(redis, true) : undefined;
  let token = given ?? first!.token!;
  let expected = digest(`Bearer ${token}`);
  const reread = () => {
    readSharedToken(redis, false).then(
      (r) => {
        if (r.token === undefined || r.token === token) return;
        token = r.token;
        expected = digest(`Bearer ${token}`);
      },
      (e: Error) => warn(`admin token: re-reading it failed (${e.message}); the old one holds`),
    );
  };
  const stops =
    given === undefined ? [cluster.listen('admin:token', reread), cluster.onReconnect(reread)] : [];

  const doc = await openDoc(cluster, 'trust', {
    schema: trustSchema,
    empty: () => [],
    maxBytes: MAX_TRUST_BYTES,
    warn,
  });
  const entries = () => new Map(doc.value().map((e) => [e.publicKey, e]));
  let byKey = entries();
  doc.onChange(() => {
    byKey = entries();
  });

  /** Applies `fn` to the latest list and saves it, again from the new list if a relay raced it. */
  async function change<T>(
    fn: (next: Map<string, TrustEntry>) => T | undefined,
  ): Promise<T | undefined> {
    for (let i = 0; i < MAX_ATTEMPTS; i++) {
      const from = doc.value();
      const next = new Map(from.map((e) => [e.publicKey, e]));
      const out = fn(next);
      if (out === undefined) return undefined;
      if (await doc.save([...next.values()], from)) {
        byKey = next;
        return out;
      }
    }
    throw new UnavailableError(
      `trust list: ${MAX_ATTEMPTS} saves in a row lost to other relays' changes; retry`,
    );
  }

  return {
    get token() {
      return token;
    },
    created: first?.created ?? false,
    authorized: (header) => timingSafeEqual(digest(header ?? ''), expected),
    trusted: (key) => byKey.has(key),
    trustList: () => [...byKey.values()],
    async trust(publicKey, label) {
      const entry = await change((next) => {
        if (!next.has(publicKey) && next.size >= MAX_TRUSTED)
          throw new LimitError(`trust list: at most ${MAX_TRUSTED} keys (its limit): revoke one`);
        const e = { publicKey, label, addedAt: new Date().toISOString() };
        next.set(publicKey, e);
        return e;
      });
      return entry!;
    },
    revoke: async (publicKey) =>
      (await change((next) => (next.delete(publicKey) ? true : undefined))) ?? false,
    onChange: (fn) => doc.onChange(() => fn()),
    close() {
      for (const stop of stops) stop();
      doc.close();
    },
  };
}
