/**
 * The API keys (relay/keys.ts) in Redis, for relays that share them: hash `keys` (after the
 * link's prefix) maps a key's id to its JSON, as keys.json holds it (the secret's sha256, never
 * the secret). A create checks the bound (`keyLimits.keys`) and writes in one script, so two
 * relays creating at once cannot pass it; a create or revoke is acknowledged once Redis has it.
 *
 * `find` and `list` answer from a copy in memory (the hub asks on every request): it is read in
 * whole at open, after this relay's own changes, whenever another relay publishes one on channel
 * `keys:changed`, and whenever the subscription reconnects (changes may have been missed while
 * Redis was away). An entry that does not parse as a key (keySchema, each scope as parseScope
 * takes it, the id it is stored under) is left out with a warning: a key that cannot be read
 * grants nothing, and the relay runs on. Given a relay's cluster (relay/cluster/cluster.ts), it
 * listens on the cluster's one subscriber connection instead of opening its own.
 * @example const keys = await redisKeys(redis, log.warn);
 *          const { secret } = await keys.create(['call'], 'CI');
 */
import { LimitError } from '../../core/errors';
import { serial } from '../../core/serial';
import {
  type ApiKey,
  adoptable,
  hashSecret,
  type KeyStore,
  keyLimits,
  keySchema,
  makeKey,
  parseScope,
} from '../keys';
import type { Cluster } from './cluster';
import type { RedisLink } from './redis';

export interface RedisKeyStore extends KeyStore {
  /** Reads the whole list from Redis again. */
  refresh(): Promise<void>;
  /** Ends the subscription (the link itself stays open). */
  close(): Promise<void>;
}

/** Adds a key unless the hash holds `max` already, and tells the other relays: 1 added, -1 full. */
const CREATE = `
if redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[3]) then return -1 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('PUBLISH', KEYS[2], 'changed')
return 1`;

/** Deletes a key and tells the other relays: 1 deleted, 0 not there. */
const REVOKE = `
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('PUBLISH', KEYS[2], 'changed')
return 1`;

export async function redisKeys(
  redis: RedisLink,
  warn: (message: string) => void,
  limits: { keys?: number } = {},
  cluster?: Pick<Cluster, 'listen' | 'onReconnect'>,
): Promise<RedisKeyStore> {
  const hash = redis.key('keys');
  const channel = redis.key('keys', 'changed');
  const maxKeys = limits.keys ?? keyLimits.keys;
  let keys = new Map<string, ApiKey>(); // by id
  let byHash = new Map<string, ApiKey>();
  // Changes and re-reads one at a time: a re-read never drops a key this relay has just made.
  const change = serial();

  function set(next: Map<string, ApiKey>): void {
    keys = next;
    byHash = new Map([...next.values()].map((k) => [k.sha256, k]));
  }

  function parse(id: string, json: string): ApiKey | undefined {
    try {
      const key = keySchema.parse(JSON.parse(json));
      if (key.id !== id)
        throw new Error(`it is stored under id ${id.slice(0, 40)} but is ${key.id}`);
      key.scopes.forEach(parseScope);
      return key;
    } catch (e) {
      warn(
        `${hash} ${id.slice(0, 40)} is not a key (${(e as Error).message.slice(0, 300)}); left out`,
      );
      return undefined;
    }
  }

  const refresh = () =>
    change(async () => {
      const next = new Map<string, ApiKey>();
      let cursor = '0';
      let skipped = 0;
      do {
        const [at, flat] = await redis.run('read the keys', (c) =>
          c.hscan(hash, cursor, 'COUNT', 200),
        );
        cursor = at;
        for (let i = 0; i + 1 < flat.length; i += 2) {
          if (next.size >= maxKeys) {
            skipped++;
            continue;
          }
          const key = parse(flat[i]!, flat[i + 1]!);
          if (key) next.set(key.id, key);
        }
      } while (cursor !== '0');
      if (skipped > 0)
        warn(`${hash} holds more than ${maxKeys} keys (the limit): ${skipped} left out`);
      set(next);
    });

  // A re-read that fails (Redis still loading, the main link not back yet) is tried again, with a
  // backoff, until one succeeds or the store closes: the copy is never left stale for good.
  // News that comes during a re-read asks for one more after it.
  let closed = false;
  let stopListening = () => {};
  let wanted = false;
  let running = false;
  async function resync(): Promise<void> {
    wanted = true;
    if (running) return;
    running = true;
    for (let attempt = 0; wanted && !closed; ) {
      wanted = false;
      try {
        await refresh();
        attempt = 0;
      } catch (e) {
        wanted = true;
        if (attempt === 0) warn(`keys: ${(e as Error).message}; reading them again shortly`);
        await new Promise((r) => setTimeout(r, Math.min(50 * 2 ** attempt++, 2000)));
      }
    }
    running = false;
  }
  if (cluster) {
    const stops = [
      cluster.listen('keys:changed', () => void resync()),
      cluster.onReconnect(() => void resync()),
    ];
    stopListening = () => {
      for (const stop of stops) stop();
    };
    await refresh();
  } else await ownSubscriber();

  /** Without a cluster: a subscriber connection of its own. */
  async function ownSubscriber(): Promise<void> {
    const sub = redis.duplicate();
    stopListening = () => sub.disconnect();
    sub.on('message', () => void resync());
    // After a reconnect (ioredis subscribes again by itself): what changed meanwhile was not heard.
    let ready = false;
    sub.on('ready', () => {
      if (ready) void resync();
    });
    try {
      await redis.run('subscribe to key changes', async () => {
        await sub.connect();
        await sub.subscribe(channel);
      });
      ready = true;
      await refresh();
    } catch (e) {
      closed = true;
      sub.disconnect(); // it would go on reconnecting, for a store nobody holds
      throw e;
    }
  }

  return {
    // Oldest first, as the file lists them (a hash has no order of its own).
    list: () =>
      [...keys.values()]
        .sort((x, y) => x.createdAt.localeCompare(y.createdAt) || x.id.localeCompare(y.id))
        .map((k) => ({ ...k })),
    find: (secret) => byHash.get(hashSecret(secret)),
    create: (scopes, label, user) =>
      change(async () => {
        const { key, secret } = makeKey(scopes, label, user);
        // The write and the news of it in one script: acknowledged means both happened.
        const r = await redis.run('create a key', (c) =>
          c.eval(CREATE, 2, hash, channel, key.id, JSON.stringify(key), maxKeys),
        );
        if (r !== 1) {
          throw new LimitError(`this relay holds ${maxKeys} keys already (its limit): revoke one`);
        }
        set(new Map(keys).set(key.id, key));
        return { key: { ...key }, secret };
      }),
    revoke: (id) =>
      change(async () => {
        const gone =
          (await redis.run('revoke a key', (c) => c.eval(REVOKE, 2, hash, channel, id))) === 1;
        const next = new Map(keys);
        next.delete(id);
        set(next);
        return gone;
      }),
    adopt: (key) =>
      change(async () => {
        // Checked against the copy: two relays adopting the same key write the same entry.
        if (!adoptable(keys.values(), byHash, key)) return false;
        const r = await redis.run('adopt a key', (c) =>
          c.eval(CREATE, 2, hash, channel, key.id, JSON.stringify(key), maxKeys),
        );
        if (r !== 1) {
          throw new LimitError(`this relay holds ${maxKeys} keys already (its limit): revoke one`);
        }
        set(new Map(keys).set(key.id, { ...key }));
        return true;
      }),
    refresh,
    async close() {
      closed = true;
      stopListening();
    },
  };
}
