/**
 * Where each node's PeerJS signalling socket is, across the relays of a cluster (PROTOCOL.md
 * §5.10): a balancer may land a tab's signalling socket on any relay, not the one its node socket
 * is on. The relay holding a socket writes key `peer:<node>` = its relay id, expiring after
 * `ttlMs` and refreshed every third of it while the socket lives, deleted when it closes (unless
 * another relay took it since). A relay with a message for a node whose socket it does not hold
 * reads the key and hands the message to that relay (relay/peer-signal.ts).
 * @example const peers = redisPeerDirectory(cluster.redis, { relayId, warn });
 *          mountPeerSignalling(server, { …, relays: { ...peers, ...hub.signals } });
 */
import { relayId as relayIdSchema } from '../hub/cluster';
import type { RedisLink } from './redis';

export const peerDirectoryDefaults = {
  /** How long a relay's word on a socket lasts without a refresh, ms (a dead relay's expires). */
  ttlMs: 30_000,
};

/** The signalling sockets this relay holds, as the others find them. */
export interface PeerDirectory {
  /** This relay's id in the cluster. */
  readonly relayId: string;
  /** The relay holding node `id`'s signalling socket; undefined for none (or Redis away). */
  holder(id: string): Promise<string | undefined>;
  /** This relay holds `id`'s socket now. */
  hold(id: string): void;
  /** `id`'s socket here closed. */
  release(id: string): void;
  /** Stops refreshing (the keys expire; a closing relay's sockets close with it). */
  close(): void;
}

/** Deletes KEYS[1] if it still names ARGV[1]: a socket that moved to another relay keeps its key. */
const RELEASE = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`;

export function redisPeerDirectory(
  link: RedisLink,
  options: { relayId: string; warn(message: string): void; ttlMs?: number },
): PeerDirectory {
  const ttlMs = options.ttlMs ?? peerDirectoryDefaults.ttlMs;
  const me = options.relayId;
  const key = (id: string) => link.key('peer', id);
  /** The ids whose sockets are here (bounded by the sockets the peer server admits). */
  const held = new Set<string>();
  let warnedAt = 0;
  const warn = (what: string, e: Error) => {
    // At most once a refresh period: Redis away must not flood the log.
    if (Date.now() - warnedAt < ttlMs / 3) return;
    warnedAt = Date.now();
    options.warn(`peer signalling: could not ${what}: ${e.message}`);
  };
  const write = (ids: string[]) =>
    link
      .run('hold signalling sockets', (c) => {
        const batch = c.pipeline();
        for (const id of ids) batch.set(key(id), me, 'PX', ttlMs);
        return batch.exec();
      })
      .catch((e: Error) => warn('say which signalling sockets are here', e));
  const timer = setInterval(() => {
    if (held.size > 0) void write([...held]);
  }, ttlMs / 3);
  timer.unref?.();

  return {
    relayId: me,
    async holder(id) {
      const relay = await link
        .run('find a signalling socket', (c) => c.get(key(id)))
        .catch((e: Error) => {
          warn('find a signalling socket', e);
          return null;
        });
      // From Redis: only a relay id is believed.
      return relay !== null && relayIdSchema.safeParse(relay).success ? relay : undefined;
    },
    hold(id) {
      held.add(id);
      void write([id]);
    },
    release(id) {
      held.delete(id);
      void link
        .run('release a signalling socket', (c) => c.eval(RELEASE, 1, key(id), me))
        .catch((e: Error) => warn('release a signalling socket', e));
    },
    close() {
      clearInterval(timer);
      held.clear();
    },
  };
}
