/**
 * The hub's cluster (relay/hub/cluster.ts) over Redis (PROTOCOL.md §5.10), for relays that share
 * one: each relay registers itself (key `relay:<id>`, expiring after `expiryPeriods` heartbeat
 * periods and refreshed every period, and sorted set `relays`, at most `maxRelays`), publishes its
 * nodes' records on channel `nodes` (a node's join at once, all of them every period, a leave at
 * once), and listens on `to:<id>` for the frames other relays address to it. Every relay so holds
 * every node of the cluster: a relay that dies stops refreshing its key and its records, and after
 * `expiryPeriods` periods the others drop its nodes, whose calls they place again.
 *
 * Messages are MessagePack, at most `maxMessageBytes`; each is checked (the schemas of
 * relay/hub/cluster.ts) before anything is believed. Garbage is counted (`dropped`), logged at
 * most once a period, and ignored: nothing Redis carries can stop the relay.
 * @example const cluster = await redisCluster(redis, { warn: (m) => log.warn(m) });
 *          const hub = createHub({ relayId, …, cluster }); await hub.started;
 */
import type { Redis } from 'ioredis';
import { z } from 'zod';
import type { NodeRecord } from '../../core/api';
import { decode, encode } from '../../core/codec';
import { DisconnectedError, InternalError, LimitError, UnavailableError } from '../../core/errors';
import { describeIssues } from '../../core/issues';
import { nodeId } from '../../core/protocol/fields';
import {
  type ClusterHandlers,
  type ClusterRelays,
  type HeardRelay,
  type HubCluster,
  publishedRecord,
  relayFrame,
  relayId as relayIdSchema,
  remoteRecord,
} from '../hub/cluster';
import type { RedisLink } from './redis';

export const clusterDefaults = {
  /** Relays one cluster holds at most: every relay mirrors every other's nodes. */
  maxRelays: 64,
  /** Nodes of other relays mirrored at most (placement scans them; memory holds them). */
  maxRemoteNodes: 10_000,
  /** The largest message on a channel: a call at the hub's 16 MiB frame limit, with room. */
  maxMessageBytes: 17 * 1024 * 1024,
  /** Node records in one message (a relay's nodes go as several each period). */
  recordsPerMessage: 100,
  /** Periods without a word after which a relay and its nodes are taken as gone. */
  expiryPeriods: 3,
};

export interface RedisClusterOptions extends Partial<typeof clusterDefaults> {
  warn(message: string): void;
}

/** What channel `nodes` carries: a relay's node records, its nodes' leaving, its own leaving. */
const broadcast = z.discriminatedUnion('t', [
  z.object({
    t: z.literal('nodes'),
    relay: relayIdSchema,
    records: z.array(z.unknown()).max(1000),
  }),
  z.object({ t: z.literal('left'), relay: relayIdSchema, ids: z.array(nodeId).max(1000) }),
  z.object({ t: z.literal('bye'), relay: relayIdSchema }),
]);
type Broadcast = z.infer<typeof broadcast>;

/**
 * Registers relay ARGV[2] (key ARGV[1]..id for ARGV[3] ms, set KEYS[1]) unless the set holds
 * ARGV[4] others, after dropping from the set the relays whose keys expired. Answers
 * {1 or -1 (full), the relays dropped}.
 */
const REGISTER = `
local dropped = {}
for _, r in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  if r ~= ARGV[2] and redis.call('EXISTS', ARGV[1] .. r) == 0 then
    redis.call('ZREM', KEYS[1], r)
    table.insert(dropped, r)
  end
end
if not redis.call('ZSCORE', KEYS[1], ARGV[2]) and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[4]) then
  return {-1, dropped}
end
redis.call('ZADD', KEYS[1], ARGV[5], ARGV[2])
redis.call('SET', ARGV[1] .. ARGV[2], ARGV[5], 'PX', ARGV[3])
return {1, dropped}`;

/** A node of another relay as mirrored here. */
interface Mirrored {
  relay: string;
  joinedAt: number;
  seen: number;
}

/** Opens the cluster over `link` (which the caller keeps and closes); `start` joins it. */
export async function redisCluster(
  link: RedisLink,
  options: RedisClusterOptions,
): Promise<HubCluster> {
  const o = { ...clusterDefaults, ...options };
  const relays = link.key('relays');
  const relayKey = link.key('relay', '');
  const nodesChannel = link.key('nodes');
  const to = (relay: string) => link.key('to', relay);
  const decodeLimits = {
    maxBytes: o.maxMessageBytes,
    maxStrLength: o.maxMessageBytes,
    maxBinLength: o.maxMessageBytes,
    maxArrayLength: 100_000,
    maxMapLength: 100_000,
  };

  let me = '';
  let periodMs = 0;
  let handlers: ClusterHandlers | undefined;
  let local: () => readonly NodeRecord[] = () => [];
  let sub: Redis | undefined;
  let timer: ReturnType<typeof setInterval> | undefined;
  let closed = false;
  const remote = new Map<string, Mirrored>();
  /** Other relays heard of, and when last: a relay not heard of in time is gone. */
  const heard = new Map<string, number>();
  /** The relays Redis last listed (`relays()`): what is answered while it is away. */
  let listed: HeardRelay[] = [];
  /** When this relay last registered. */
  let registeredAt = 0;
  /** When each kind of warning was last logged: at most one a period each. */
  const warned = new Map<string, number>();

  function warn(kind: string, message: string): void {
    const now = Date.now();
    if (now - (warned.get(kind) ?? 0) < periodMs) return;
    warned.set(kind, now);
    o.warn(`cluster: ${message}`);
  }
  function drop(why: string): void {
    handlers?.counted('dropped', 'other');
    warn('garbage', `dropped a message from Redis: ${why}`);
  }

  async function publish(channel: string, message: unknown, kind: string): Promise<number> {
    const bytes = encode(message);
    if (bytes.byteLength > o.maxMessageBytes)
      throw new LimitError(
        `a ${kind} message of ${bytes.byteLength} bytes is over the ${o.maxMessageBytes}-byte limit between relays`,
      );
    const receivers = await link.run(`publish ${kind}`, (c) =>
      c.publish(channel, Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)),
    );
    handlers?.counted('out', kind);
    return receivers;
  }
  const tell = (message: Broadcast) =>
    publish(nodesChannel, message, message.t).catch((e: Error) =>
      warn('publish', `could not tell the other relays (${message.t}): ${e.message}`),
    );

  /** Forgets the mirrored nodes `which` picks, and tells the hub. */
  function forget(which: (m: Mirrored, id: string) => boolean, why: string): void {
    const ids: string[] = [];
    for (const [id, m] of remote) {
      if (!which(m, id)) continue;
      remote.delete(id);
      ids.push(id);
    }
    if (ids.length > 0) handlers?.left(ids, why);
  }

  function received(channel: Buffer, message: Buffer) {
    try {
      let raw: unknown;
      try {
        raw = decode(
          new Uint8Array(message.buffer, message.byteOffset, message.byteLength),
          decodeLimits,
        );
      } catch (e) {
        return drop((e as Error).message);
      }
      if (channel.toString() === nodesChannel) return fromBroadcast(raw);
      const frame = relayFrame.safeParse(raw);
      if (!frame.success)
        return drop(`a frame: ${describeIssues(frame.error, [], { max: 2, whole: 'the frame' })}`);
      handlers?.counted('in', frame.data.t);
      handlers?.frame(frame.data);
    } catch (e) {
      // A fault in the hub's handling: logged, never thrown into the Redis client.
      warn('handler', `handling a message failed: ${(e as Error).message}`);
    }
  }

  function fromBroadcast(raw: unknown) {
    const parsed = broadcast.safeParse(raw);
    if (!parsed.success)
      return drop(describeIssues(parsed.error, [], { max: 2, whole: 'the message' }));
    const msg = parsed.data;
    if (msg.relay === me) return;
    handlers?.counted('in', msg.t);
    if (msg.t === 'bye') {
      heard.delete(msg.relay);
      return forget((m) => m.relay === msg.relay, `relay ${msg.relay} left`);
    }
    if (msg.t === 'left') {
      const ids = new Set(msg.ids);
      return forget((m, id) => m.relay === msg.relay && ids.has(id), 'it left');
    }
    if (!heard.has(msg.relay) && heard.size >= o.maxRelays)
      return drop(`relay ${msg.relay} is one more than the ${o.maxRelays} a cluster holds`);
    const now = Date.now();
    heard.set(msg.relay, now);
    for (const item of msg.records) {
      const r = remoteRecord.safeParse(item);
      if (!r.success) {
        drop(`a node record: ${describeIssues(r.error, [], { max: 2, whole: 'the record' })}`);
        continue;
      }
      const record = r.data;
      if (record.relay !== msg.relay) {
        drop(`relay ${msg.relay} published a node record of relay ${record.relay}`);
        continue;
      }
      const known = remote.get(record.id);
      // The same node joined to two relays: the later join is where it is.
      if (known && known.relay !== record.relay && known.joinedAt > record.joinedAt) continue;
      if (!known && remote.size >= o.maxRemoteNodes) {
        drop(`node ${record.id} is one more than the ${o.maxRemoteNodes} mirrored at most`);
        continue;
      }
      remote.set(record.id, { relay: record.relay, joinedAt: record.joinedAt, seen: now });
      handlers?.node(record);
    }
  }

  /** Each period: the relay's key refreshed, its nodes published, the silent ones forgotten. */
  let ticking = false;
  async function tick(): Promise<void> {
    if (ticking || closed) return;
    ticking = true;
    try {
      const now = Date.now();
      const expiry = o.expiryPeriods * periodMs;
      for (const [relay, at] of heard) if (now - at > expiry) heard.delete(relay);
      forget((m) => now - m.seen > expiry, `not heard of in ${o.expiryPeriods} periods`);
      try {
        const gone = await register();
        for (const relay of gone) {
          heard.delete(relay);
          forget((m) => m.relay === relay, `relay ${relay} is gone (its key expired)`);
        }
      } catch (e) {
        warn('register', (e as Error).message);
      }
      const records = local().map((n) => publishedRecord(n, me));
      for (let i = 0; i < records.length; i += o.recordsPerMessage) {
        const part = records.slice(i, i + o.recordsPerMessage);
        await tell({ t: 'nodes', relay: me, records: part });
      }
    } finally {
      ticking = false;
    }
  }

  /** Registers this relay; answers the relays whose keys expired. LimitError when full. */
  async function register(): Promise<string[]> {
    const ttl = String(o.expiryPeriods * periodMs);
    const [ok, dropped] = (await link.run('register the relay', (c) =>
      c.eval(REGISTER, 1, relays, relayKey, me, ttl, String(o.maxRelays), String(Date.now())),
    )) as [number, string[]];
    if (ok !== 1)
      throw new LimitError(
        `relays: the cluster holds its most relays (${o.maxRelays}); this one (${me}) may not join`,
      );
    registeredAt = Date.now();
    return Array.isArray(dropped) ? dropped.filter((r) => typeof r === 'string') : [];
  }

  /**
   * The relays set with each one's last registration (its score), at most `maxRelays`; one
   * whose key expired but that no registration dropped yet is left out. Redis away: the
   * relays it last listed, with what this relay heard of them since.
   */
  async function listRelays(): Promise<ClusterRelays> {
    const began = performance.now();
    try {
      const flat = await link.run('list the relays', (c) =>
        c.zrange(relays, 0, o.maxRelays - 1, 'WITHSCORES'),
      );
      const ms = performance.now() - began;
      const expiry = o.expiryPeriods * periodMs;
      const now = Date.now();
      const found: HeardRelay[] = [];
      for (let i = 0; i + 1 < flat.length; i += 2) {
        const id = flat[i]!;
        const at = Number(flat[i + 1]);
        // From Redis: hostile until checked.
        if (!relayIdSchema.safeParse(id).success || !Number.isFinite(at)) {
          drop(`the relays set holds "${String(id).slice(0, 80)}", which is no relay`);
          continue;
        }
        if (id !== me && periodMs > 0 && now - at > expiry) continue;
        found.push({ id, at });
      }
      listed = found;
      return { relays: found, redis: { ok: true, detail: `answers in ${ms.toFixed(1)} ms` } };
    } catch (e) {
      // This relay first, so that the bound never leaves it out.
      const known = new Map<string, number>(me ? [[me, registeredAt]] : []);
      for (const r of listed) if (r.id !== me) known.set(r.id, r.at);
      for (const [id, at] of heard) known.set(id, Math.max(at, known.get(id) ?? 0));
      const last = [...known].slice(0, o.maxRelays).map(([id, at]) => ({ id, at }));
      return { relays: last, redis: { ok: false, detail: (e as Error).message } };
    }
  }

  return {
    relays: listRelays,
    async start(relayId, ms, h, nodes) {
      const id = relayIdSchema.safeParse(relayId);
      if (!id.success)
        throw new InternalError(`cluster: relay id "${relayId.slice(0, 80)}" is not one`);
      if (handlers) throw new InternalError('cluster: started twice');
      me = relayId;
      periodMs = ms;
      handlers = h;
      local = nodes;
      await register();
      const s = link.duplicate();
      sub = s;
      try {
        await s.connect();
      } catch (e) {
        throw new UnavailableError(
          `Redis at ${link.location} is unreachable for the cluster's channels: ${(e as Error).message}`,
        );
      }
      s.on('messageBuffer', received);
      const channels = [nodesChannel, to(me)];
      // Subscribed again after each reconnection (twice is harmless).
      s.on('ready', () => {
        s.subscribe(...channels).catch((e: Error) => warn('subscribe', e.message));
      });
      await s.subscribe(...channels);
      timer = setInterval(() => void tick(), periodMs);
      timer.unref?.();
      void tick();
    },
    joined(record) {
      if (handlers && !closed)
        void tell({ t: 'nodes', relay: me, records: [publishedRecord(record, me)] });
    },
    left(id) {
      if (handlers && !closed) void tell({ t: 'left', relay: me, ids: [id] });
    },
    async send(relay, frame) {
      if (closed) throw new UnavailableError('this relay left the cluster');
      const receivers = await publish(to(relay), frame, frame.t);
      // Nobody listens there: that relay is gone, its nodes with it. They are forgotten now, not
      // at its key's expiry, or every call and job run placed until then goes to them and fails
      // (a relay only briefly away publishes its nodes again at its next period).
      if (receivers === 0) {
        heard.delete(relay);
        forget((m) => m.relay === relay, `relay ${relay} is not listening`);
        throw new DisconnectedError(`relay ${relay.slice(0, 64)} is not listening: it is gone`);
      }
    },
    async close() {
      if (closed) return;
      closed = true;
      if (timer) clearInterval(timer);
      if (handlers) {
        await tell({ t: 'bye', relay: me });
        await link
          .run('leave the cluster', async (c) => {
            await c.zrem(relays, me);
            await c.del(relayKey + me);
          })
          .catch((e: Error) => warn('leave', e.message));
      }
      sub?.disconnect();
    },
  };
}
