/**
 * What the hub needs from the other relays of a cluster (issue 17; PROTOCOL.md §5.10): their
 * nodes, as records it places on, and a way to hand one of them a call and get its answer back.
 * The hub has one path: alone, it runs with `singleRelay`, which hears of no other relay; in a
 * cluster with relay/cluster/nodes.ts `redisCluster`, which carries the same frames over Redis.
 * The frames between relays and the records they publish are data, validated on arrival with the
 * schemas here, because whatever reaches Redis may be garbage.
 * @example const hub = createHub({ relayId, …, cluster: await redisCluster(redis, { warn }) });
 */
import { createHash } from 'node:crypto';
import { z } from 'zod';
import type { NodeRecord } from '../../core/api';
import { UnavailableError } from '../../core/errors';
import {
  appVersion,
  backend,
  callFields,
  capabilitiesSchema,
  error,
  id,
  MAX_FIGURE_MS,
  name,
  nodeId,
  resultFields,
  role,
  rpcName,
  stats,
} from '../../core/protocol/fields';

/** A relay's id: what createRelay makes (a UUID), or any short name a test gives. */
export const relayId = z
  .string()
  .regex(/^[A-Za-z0-9_.-]{1,64}$/, 'a relay id: 1 to 64 of A-Za-z0-9_.-');

const count = z.number().int().nonnegative();
/** The most services a record's per-service maps may name (as a heartbeat's). */
const MAX_SERVICES = 1000;
const perService = <T extends z.ZodType>(value: T) =>
  z
    .record(z.string().max(130), value)
    .refine((r) => Object.keys(r).length <= MAX_SERVICES, `at most ${MAX_SERVICES} services`);

/**
 * A node of another relay as that relay publishes it: what placement reads, and what the console
 * shows. Its `relay` is where its socket is.
 */
export const remoteRecord = z.object({
  id: nodeId,
  relay: relayId,
  role,
  publicKey: z.string().max(512),
  trusted: z.boolean(),
  online: z.boolean(),
  paused: z.boolean(),
  rttMs: z.number().nonnegative().max(MAX_FIGURE_MS),
  backends: z.array(backend).max(8),
  queue: count.max(1_000_000),
  maxConcurrency: z.number().int().min(1).max(1024),
  apps: z.array(name).max(1000),
  stats: stats.refine((s) => Object.keys(s).length <= 4096, 'too many stats keys'),
  models: perService(z.array(rpcName).max(64)),
  measured: stats.refine((s) => Object.keys(s).length <= 4096, 'too many measured keys').optional(),
  quarantined: z.boolean().optional(),
  versions: z
    .record(name, z.array(appVersion).max(64))
    .refine((v) => Object.keys(v).length <= 1000, 'at most 1000 apps')
    .optional(),
  fetch: z.boolean().optional(),
  workersMax: perService(z.number().int().min(1).max(64)).optional(),
  workers: perService(count.max(1024)).optional(),
  caps: capabilitiesSchema,
  parent: nodeId.optional(),
  /** sha256 (hex) of the peer token its relay gave it: another relay admits its signalling. */
  peerKey: z
    .string()
    .regex(/^[0-9a-f]{64}$/)
    .optional(),
  joinedAt: z.number(),
  lastSeen: z.number(),
});
export type RemoteRecord = z.infer<typeof remoteRecord>;

/** The longest a call handed to another relay may take, ms (a job's run may be long). */
export const MAX_RELAYED_CALL_MS = 24 * 3_600_000;

/** The largest signalling payload one relay hands another: `--max-signal-kib`'s top (16 MiB). */
export const MAX_SIGNAL_BYTES = 16 * 1024 * 1024;

/** The PeerJS messages one relay hands another for a peer whose signalling socket it holds. */
export const SIGNAL_TYPES = ['OFFER', 'ANSWER', 'CANDIDATE', 'LEAVE', 'EXPIRE'] as const;

/**
 * A frame one relay addresses to another (channel `to:<relay>`): a call for a node joined there,
 * and that call's answer. `from` is the sender, where the answer goes; `id` the sender's own call
 * id, which the answer carries back. `signal`: a PeerJS message from node `src` for node `dst`,
 * whose signalling socket is held by the relay it is sent to (`payload`: its JSON text).
 */
export const relayFrame = z.discriminatedUnion('t', [
  z.object({
    t: z.literal('call'),
    from: relayId,
    node: nodeId,
    ...callFields,
    /** The asking node ('' for HTTP), as the node that runs it sees in `from`. */
    caller: z.string().max(64),
    timeoutMs: z.number().int().positive().max(MAX_RELAYED_CALL_MS).optional(),
  }),
  z.object({ t: z.literal('result'), from: relayId, node: nodeId, ...resultFields }),
  z.object({ t: z.literal('error'), from: relayId, node: nodeId, id, error }),
  z.object({
    t: z.literal('signal'),
    from: relayId,
    type: z.enum(SIGNAL_TYPES),
    src: nodeId,
    dst: nodeId,
    payload: z.string().max(MAX_SIGNAL_BYTES).optional(),
  }),
]);
export type SignalFrame = Extract<RelayFrame, { t: 'signal' }>;
export type RelayFrame = z.infer<typeof relayFrame>;

/** What the cluster tells the hub. */
export interface ClusterHandlers {
  /** A node of another relay joined, or its figures changed: its whole record. */
  node(record: RemoteRecord): void;
  /** Nodes of other relays left: they closed, their relay left, or it stopped being heard. */
  left(ids: string[], why: string): void;
  /** A frame another relay sent this one. */
  frame(frame: RelayFrame): void;
  /** A message from or to another relay: counted (relay/metrics.ts). */
  counted(dir: 'in' | 'out' | 'dropped', kind: string): void;
}

/** A relay of the cluster, and when it last registered (ms since the epoch). */
export interface HeardRelay {
  id: string;
  at: number;
}

/** The cluster's relays as one relay knows them (`GET /api/relays`), and Redis from there. */
export interface ClusterRelays {
  relays: HeardRelay[];
  /** Not ok: Redis did not answer, and `relays` is what this relay last heard. */
  redis: { ok: boolean; detail: string };
}

/** The other relays, as the hub reaches them. */
export interface HubCluster {
  /**
   * Joins the cluster as `relayId`, told every `periodMs`; `local` answers this relay's nodes,
   * published each period. Refuses (LimitError) when the cluster holds its most relays.
   */
  start(
    relayId: string,
    periodMs: number,
    handlers: ClusterHandlers,
    local: () => readonly NodeRecord[],
  ): Promise<void>;
  /** A node of this relay joined: told to the others now, not at the next period. */
  joined(record: NodeRecord): void;
  /** A node of this relay left. */
  left(id: string): void;
  /** Sends `frame` to relay `to`; rejects (a typed error) when it cannot be sent. */
  send(to: string, frame: RelayFrame): Promise<void>;
  /**
   * The cluster's relays, this one included once started (at most the cluster's most relays).
   * Never rejects: Redis away, it answers what it last heard and says so in `redis`.
   */
  relays(): Promise<ClusterRelays>;
  /** Leaves the cluster: the others drop this relay's nodes at once. */
  close(): Promise<void>;
}

/** One relay alone: no other relay is ever heard of, and none can be sent to. */
export const singleRelay: HubCluster = {
  start: async () => {},
  joined() {},
  left() {},
  send: async (to) => {
    throw new UnavailableError(
      `relay ${to.slice(0, 64)} is not reachable: this relay has no cluster`,
    );
  },
  relays: async () => ({
    relays: [],
    redis: { ok: true, detail: 'not configured: a single relay (no --redis)' },
  }),
  close: async () => {},
};

/** What a node's record publishes of its peer token: its sha256 (hex), never the token. */
export function peerKeyOf(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}

/** What of a node record another relay needs, as published (`relay`: this one). */
export function publishedRecord(n: NodeRecord, relay: string): RemoteRecord {
  return {
    id: n.id,
    relay,
    role: n.role,
    publicKey: n.publicKey,
    trusted: n.trusted,
    online: n.online,
    paused: n.paused,
    rttMs: n.rttMs,
    backends: n.backends,
    queue: n.queue,
    maxConcurrency: n.maxConcurrency,
    apps: n.apps,
    stats: n.stats,
    models: n.models,
    ...(n.measured && { measured: n.measured }),
    ...(n.quarantined !== undefined && { quarantined: n.quarantined }),
    ...(n.versions && { versions: n.versions }),
    ...(n.fetch !== undefined && { fetch: n.fetch }),
    ...(n.workersMax && { workersMax: n.workersMax }),
    ...(n.workers && { workers: n.workers }),
    caps: n.caps,
    ...(n.parent && { parent: n.parent }),
    ...(n.peerKey && { peerKey: n.peerKey }),
    joinedAt: n.joinedAt,
    lastSeen: n.lastSeen,
  };
}
