/**
 * The relay's connection to Redis (issue 17: several relays sharing their stores), one place for
 * how it opens, names its keys and fails. The URL is `redis://[user:password@]host:port[/db]`,
 * checked before anything connects (InputError naming `redis`). Commands are never queued while
 * Redis is unreachable (`enableOfflineQueue: false`): a command then fails at once with
 * UnavailableError ("Redis at … is unreachable: …"), and so does one in flight when the link
 * drops (no retry per command: a write whose reply never came is not acknowledged, and the caller
 * decides) or one unanswered after `commandTimeoutMs`. The client reconnects by itself, with a
 * backoff capped at `maxBackoffMs`, for as long as it is open: the same object works again once
 * Redis is back. Every key starts with `prefix` (default `brume:`), so relays of two clusters can
 * share one Redis.
 *
 * A write that failed (the link dropped, or no reply in time) may still have been applied: each
 * store's writes are idempotent (a job's whole state by id, a blob by its hash, a manifest by
 * name and version), so the caller may simply write again. A key created without an answer exists
 * with a secret nobody holds: it grants nothing and an admin may revoke it.
 *
 * Durability is Redis's: a write is acknowledged when Redis has it in memory and, with the
 * `appendonly yes` + `appendfsync always` configuration a cluster must run (tests/redis-process.ts
 * starts it so), in its append-only file on disk.
 * @example const redis = await openRedis('redis://127.0.0.1:6379/0');
 *          await redis.run('put app', (c) => c.hset(redis.key('apps'), name, json));
 */
import { Redis, ReplyError } from 'ioredis';
import { z } from 'zod';
import {
  BrumeError,
  InputError,
  InternalError,
  QuotaError,
  UnavailableError,
} from '../../core/errors';

export interface RedisOptions {
  /** Prefix of every key this relay writes (letters, digits, `:_.-`, at most 64). */
  prefix?: string;
  /** How long a connection attempt may take. Default 5 s. */
  connectTimeoutMs?: number;
  /** A command unanswered this long fails (E_UNAVAILABLE). Default 10 s. */
  commandTimeoutMs?: number;
  /** Longest wait between two reconnection attempts. Default 2 s. */
  maxBackoffMs?: number;
}

export interface RedisLink {
  /** The URL without its password, for messages. */
  readonly location: string;
  readonly prefix: string;
  /** The ioredis client (for commands `run` wraps). */
  readonly client: Redis;
  /** `prefix` + the parts joined by `:`. */
  key(...parts: string[]): string;
  /**
   * Runs `fn` on the client; what Redis or the link throws comes back typed: unreachable,
   * loading or timed out → UnavailableError, out of memory → QuotaError, other replies →
   * InternalError naming `what`. Fails at once while the link is down.
   */
  run<T>(what: string, fn: (client: Redis) => Promise<T>): Promise<T>;
  /** A second connection with the same settings (a subscriber needs its own). */
  duplicate(): Redis;
  close(): Promise<void>;
}

const PREFIX = /^[A-Za-z0-9:_.-]{1,64}$/;

const urlSchema = z
  .string()
  .max(2048, 'at most 2048 characters')
  .transform((s, ctx) => {
    let u: URL;
    try {
      u = new URL(s);
    } catch {
      ctx.addIssue({ code: 'custom', message: 'not a URL' });
      return z.NEVER;
    }
    const db = u.pathname.replace(/^\//, '');
    const problem =
      u.protocol !== 'redis:'
        ? 'the scheme must be redis://'
        : u.hostname === ''
          ? 'it names no host'
          : !/^(\d{1,2})?$/.test(db) || Number(db) > 15
            ? 'the database must be a number from 0 to 15'
            : u.search || u.hash
              ? 'it may have no query or fragment'
              : undefined;
    if (problem) {
      ctx.addIssue({ code: 'custom', message: problem });
      return z.NEVER;
    }
    return {
      host: u.hostname.replace(/^\[|\]$/g, ''),
      port: u.port === '' ? 6379 : Number(u.port),
      db: db === '' ? 0 : Number(db),
      username: decodeURIComponent(u.username) || undefined,
      password: decodeURIComponent(u.password) || undefined,
      location: `redis://${u.host}/${db === '' ? 0 : Number(db)}`,
    };
  });

/** Checks a Redis URL; InputError naming `redis` and what is wrong. */
export function parseRedisUrl(url: unknown): z.output<typeof urlSchema> {
  const r = urlSchema.safeParse(url);
  if (!r.success) {
    const shown = typeof url === 'string' ? `"${url.slice(0, 80)}"` : typeof url;
    throw new InputError(
      `redis: ${shown} is not a redis://host:port[/db] URL: ${r.error.issues[0]?.message}`,
    );
  }
  return r.data;
}

/** Connects to the Redis at `url`; UnavailableError when it does not answer within the timeout. */
export async function openRedis(url: string, o: RedisOptions = {}): Promise<RedisLink> {
  const target = parseRedisUrl(url);
  const prefix = o.prefix ?? 'brume:';
  if (!PREFIX.test(prefix)) {
    throw new InputError(
      `redis prefix: "${prefix.slice(0, 80)}" must be 1 to 64 letters, digits or :_.-`,
    );
  }
  const maxBackoffMs = o.maxBackoffMs ?? 2000;
  const settings = {
    host: target.host,
    port: target.port,
    db: target.db,
    ...(target.username !== undefined && { username: target.username }),
    ...(target.password !== undefined && { password: target.password }),
    lazyConnect: true,
    enableOfflineQueue: false,
    // A command in flight when the link drops fails then, instead of being sent again later.
    maxRetriesPerRequest: 0,
    autoResendUnfulfilledCommands: false,
    connectTimeout: o.connectTimeoutMs ?? 5000,
    commandTimeout: o.commandTimeoutMs ?? 10_000,
    retryStrategy: (times: number) => Math.min(50 * 2 ** Math.min(times, 10), maxBackoffMs),
  };
  const client = new Redis(settings);
  let lastError = 'not connected yet';
  const remember = (e: Error) => {
    lastError = e.message;
  };
  // ioredis reports every failed attempt as an event: without a listener each one is printed.
  client.on('error', remember);
  client.on('close', () => {
    lastError = 'its connection closed';
  });
  const unreachable = (detail: string) =>
    new UnavailableError(
      `Redis at ${target.location} is unreachable: ${detail}; the relay reconnects by itself, retry shortly`,
    );
  try {
    await client.connect();
  } catch (e) {
    client.disconnect();
    throw unreachable((e as Error).message);
  }

  const link: RedisLink = {
    location: target.location,
    prefix,
    client,
    key: (...parts) => prefix + parts.join(':'),
    async run(what, fn) {
      if (client.status !== 'ready') throw unreachable(`${lastError} (${client.status})`);
      try {
        return await fn(client);
      } catch (e) {
        throw typed(e, what, unreachable);
      }
    },
    duplicate() {
      const copy = client.duplicate();
      copy.on('error', remember);
      return copy;
    },
    async close() {
      client.disconnect();
    },
  };
  return link;
}

/** Replies Redis gives while it cannot serve yet (loading its AOF, a replica cut off, …). */
const NOT_NOW = /^(LOADING|BUSY|MASTERDOWN|TRYAGAIN|MISCONF|READONLY|NOREPLICAS)\b/;

function typed(e: unknown, what: string, unreachable: (d: string) => Error): unknown {
  if (e instanceof BrumeError) return e;
  const message = e instanceof Error ? e.message : String(e);
  if (e instanceof ReplyError) {
    if (NOT_NOW.test(message)) return unreachable(message);
    if (/^OOM\b/.test(message))
      return new QuotaError(`Redis is out of memory (its maxmemory): ${what} not done`);
    return new InternalError(`Redis refused ${what}: ${message}`, { cause: e });
  }
  // A fault of the code around the command, not of the link.
  if (e instanceof TypeError || e instanceof RangeError || e instanceof SyntaxError)
    return new InternalError(`${what} failed: ${message}`, { cause: e });
  return unreachable(message);
}
