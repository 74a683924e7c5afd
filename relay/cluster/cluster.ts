/**
 * A relay's membership in a cluster (issue 17: relays sharing one Redis are one relay to their
 * users): its id, one Redis link for commands and one subscriber connection for the whole relay,
 * on which every part listens to its channels. Opened once by `createRelay({ redis })`, closed
 * last (after everything that writes to Redis).
 *
 * Channels are named without the link's prefix (`listen('apps:current', fn)` subscribes to
 * `brume:apps:current`). A message over `MAX_MESSAGE_BYTES` is dropped with a warning: Redis is
 * shared, and what comes from it is hostile until a listener has checked it. After the subscriber
 * reconnects (Redis restarted, the network cut), ioredis subscribes again by itself, but what was
 * published meanwhile was not heard: `onReconnect` listeners re-read what they keep a copy of.
 * @example const cluster = await openCluster('redis://127.0.0.1:6379', { warn: log.warn });
 *          cluster.listen('apps:current', (m) => ...);
 *          await cluster.publish('apps:current', JSON.stringify({ name, version }));
 */
import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import { InputError } from '../../core/errors';
import { openRedis, type RedisLink, type RedisOptions } from './redis';

/** Largest pub/sub message a listener is given, in bytes; larger ones are dropped. */
export const MAX_MESSAGE_BYTES = 1 << 20;
/** Channels one relay listens to at most (each part has a few). */
export const MAX_CHANNELS = 256;
/** A channel name, without the prefix. */
const CHANNEL = /^[A-Za-z0-9:_.-]{1,128}$/;

export interface Cluster {
  /** This relay process's id in the cluster (random per start); the hub's relayId. */
  readonly relayId: string;
  /** The command link (one per relay): stores, keys, queues use it. */
  readonly redis: RedisLink;
  /** Calls `fn` with every message published on `channel`; answers a function that stops it. */
  listen(channel: string, fn: (message: string) => void): () => void;
  /** Publishes `message` on `channel` (E_UNAVAILABLE while Redis is unreachable). */
  publish(channel: string, message: string): Promise<void>;
  /** Calls `fn` each time the subscriber is back after a disconnection (messages were missed). */
  onReconnect(fn: () => void): () => void;
  /** PONG's round trip in ms; E_UNAVAILABLE while Redis does not answer. */
  ping(): Promise<number>;
  /** Closes the subscriber, then the link; idempotent. */
  close(): Promise<void>;
}

/** Connects to the cluster's Redis; InputError naming `redis` for a bad URL, E_UNAVAILABLE if down. */
export async function openCluster(
  url: string,
  o: { warn: (message: string) => void; redis?: RedisOptions },
): Promise<Cluster> {
  const redis = await openRedis(url, o.redis);
  const sub: Redis = redis.duplicate();
  const listeners = new Map<string, Set<(message: string) => void>>();
  const reconnects = new Set<() => void>();
  let closed = false;
  sub.on('message', (channel: string, message: string) => {
    const name = channel.startsWith(redis.prefix) ? channel.slice(redis.prefix.length) : channel;
    const fns = listeners.get(name);
    if (!fns) return;
    if (Buffer.byteLength(message) > MAX_MESSAGE_BYTES) {
      o.warn(`cluster: a message of over ${MAX_MESSAGE_BYTES} bytes on ${channel} was dropped`);
      return;
    }
    for (const fn of fns) {
      try {
        fn(message);
      } catch (e) {
        // One listener's fault is its own: the others still hear, the relay runs on.
        o.warn(`cluster: a listener of ${channel} failed: ${(e as Error).message}`);
      }
    }
  });
  let ready = false;
  sub.on('ready', () => {
    if (!ready || closed) return;
    // ioredis subscribes again to what it had, not to channels whose SUBSCRIBE failed while down.
    const channels = [...listeners.keys()].map((c) => redis.key(c));
    if (channels.length)
      sub.subscribe(...channels).catch((e: Error) => {
        o.warn(`cluster: subscribing again failed (${e.message}); retried on reconnect`);
      });
    for (const fn of reconnects) fn();
  });
  try {
    await redis.run('open the subscriber connection', () => sub.connect());
    ready = true;
  } catch (e) {
    sub.disconnect();
    await redis.close();
    throw e;
  }

  const subscribe = (channel: string) =>
    sub.subscribe(redis.key(channel)).catch((e: Error) => {
      // Down now: ioredis subscribes again, to every channel it holds, once it is back.
      o.warn(`cluster: subscribing to ${channel} failed (${e.message}); retried on reconnect`);
    });

  return {
    relayId: randomUUID(),
    redis,
    listen(channel, fn) {
      if (!CHANNEL.test(channel))
        throw new InputError(`channel: "${channel.slice(0, 80)}" must match ${CHANNEL}`);
      let fns = listeners.get(channel);
      if (!fns) {
        if (listeners.size >= MAX_CHANNELS)
          throw new InputError(`channel: a relay listens to at most ${MAX_CHANNELS} channels`);
        fns = new Set();
        listeners.set(channel, fns);
        void subscribe(channel);
      }
      fns.add(fn);
      return () => {
        fns.delete(fn);
        if (fns.size === 0 && listeners.get(channel) === fns) {
          listeners.delete(channel);
          void sub.unsubscribe(redis.key(channel)).catch(() => {});
        }
      };
    },
    async publish(channel, message) {
      await redis.run(`publish on ${channel}`, (c) => c.publish(redis.key(channel), message));
    },
    onReconnect(fn) {
      reconnects.add(fn);
      return () => reconnects.delete(fn);
    },
    async ping() {
      const t = performance.now();
      await redis.run('ping', (c) => c.ping());
      return performance.now() - t;
    },
    async close() {
      if (closed) return;
      closed = true;
      listeners.clear();
      reconnects.clear();
      sub.disconnect();
      await redis.close();
    },
  };
}
