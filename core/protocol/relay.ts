/**
 * The frames between a node and the relay over the node's WebSocket (PROTOCOL.md §5.1–5.5): join,
 * liveness and load, scheduling and calls, sessions (session.ts), and the context store's `ctx-*`
 * frames.
 * @example const frame: ToRelay = { t: 'schedule', id: 7, app: 'digits', service: 'classify', qos: {} };
 */
import { z } from 'zod';
import { MAX_HELD_VERSIONS } from '../versions';
import { agreementSchema, contextToNode, contextToRelay } from './context';
import {
  appVersion,
  bin,
  callFields,
  capabilitiesSchema,
  error,
  id,
  name,
  nodeId,
  qosSchema,
  resultFields,
  role,
  rpcName,
  stats,
  traceId,
} from './fields';
import { leaseRevokeFrame, leaseSchema } from './lease';
import {
  sessionCloseFrame,
  sessionFrame,
  sessionLeaveFrame,
  sessionMovedFrame,
  sessionOpenFrame,
  sessionWarmFrame,
} from './session';

const count = z.number().int().nonnegative();
/** Model services with an exit head a heartbeat reports at most (§5.2 `exits`). */
export const MAX_EXIT_SERVICES = 1000;

/** A node's context store: what it holds, and what it had to evict for lack of storage. */
const contextUsage = z.object({
  keys: count,
  bytes: count,
  evicted: z.object({ expired: count, lru: count }),
  lastFull: z.object({ at: z.number(), freed: z.boolean() }).optional(),
  unstored: count,
});

/** Node → relay. */
export const toRelay = z.discriminatedUnion('t', [
  z.object({
    t: z.literal('hello'),
    v: z.number().int(),
    role,
    publicKey: z.string().max(512),
    caps: capabilitiesSchema,
    /** The key private context values are sealed to, signed by the identity key. */
    agreement: agreementSchema.omit({ publicKey: true }).optional(),
  }),
  z.object({ t: z.literal('join'), nonce: bin, signature: bin }),
  z.object({
    t: z.literal('heartbeat'),
    load: z.object({ queue: count, maxConcurrency: z.number().int().min(1).max(1024) }),
    apps: z.array(name).max(1000),
    /** Model variants this node can run, by `app/service`. */
    models: z.record(z.string().max(130), z.array(rpcName).max(64)),
    stats: stats.refine((s) => Object.keys(s).length <= 4096, 'too many stats keys'),
    paused: z.boolean(),
    caps: capabilitiesSchema.optional(),
    /** A fog's open data channels: the dews it can pass context changes on to. */
    links: z.array(nodeId).max(1000).optional(),
    context: contextUsage.optional(),
    /** The versions of each app this node holds, its current one first (§5.7). */
    versions: z
      .record(name, z.array(appVersion).max(MAX_HELD_VERSIONS))
      .refine((v) => Object.keys(v).length <= 1000, 'versions: at most 1000 apps')
      .optional(),
    /** It fetches a version it does not hold from the relay when a call needs it (§5.7). */
    fetch: z.boolean().optional(),
    /** Logic workers held now per `app/service` (§2.1 `scale`); absent: not reported. */
    workers: z
      .record(z.string().max(130), count.max(1024))
      .refine((w) => Object.keys(w).length <= 1000, 'workers: at most 1000 services')
      .optional(),
    /** Its pools' grow and shrink events since it started, counted. */
    scaled: z.object({ grows: count, shrinks: count }).optional(),
    /** The most workers each Logic service that declares `scale` can have here (§3.2). */
    workersMax: z
      .record(z.string().max(130), z.number().int().min(1).max(64))
      .refine((w) => Object.keys(w).length <= 1000, 'workersMax: at most 1000 services')
      .optional(),
    /** Per `app/modelService` with an exit head: runs judged and exits taken since start (§5.2). */
    exits: z
      .record(
        z.string().max(130),
        z
          .object({ calls: count, taken: count })
          .refine((c) => c.taken <= c.calls, 'taken must be at most calls'),
      )
      .refine(
        (e) => Object.keys(e).length <= MAX_EXIT_SERVICES,
        `exits: at most ${MAX_EXIT_SERVICES} model services`,
      )
      .optional(),
  }),
  z.object({ t: z.literal('pong'), ts: z.number() }),
  z.object({
    t: z.literal('schedule'),
    id,
    app: name,
    service: name,
    qos: qosSchema,
    /** A Logic's rpc ('' or absent: its first). */
    rpc: rpcName.optional(),
    exclude: z.array(nodeId).max(64).optional(),
    /** The node takes a lease on the decision (§5.3.2); absent: it asks each call. */
    lease: z.boolean().optional(),
    /** The trace id of the request it places, for the relay's log. */
    traceId: traceId.optional(),
  }),
  /** `to`: the node to run it on, or '' to let the relay place it (a pipeline: §5.8). */
  z.object({ t: z.literal('call'), ...callFields, to: z.union([nodeId, z.literal('')]) }),
  z.object({ t: z.literal('result'), ...resultFields }),
  z.object({ t: z.literal('error'), id, error }),
  sessionOpenFrame,
  sessionCloseFrame,
  sessionLeaveFrame,
  ...contextToRelay,
]);

/** Relay → node. */
export const toNode = z.discriminatedUnion('t', [
  z.object({
    t: z.literal('challenge'),
    v: z.number().int(),
    nonce: bin,
    relayId: z.string().max(128),
  }),
  z.object({
    t: z.literal('welcome'),
    nodeId,
    role,
    trusted: z.boolean(),
    heartbeatMs: z.number().int().positive(),
    /** Lets this node register its id with the relay's PeerJS server (and no one else). */
    peerToken: z.string().max(64),
    /** A trusted fog this dew may send work to directly before asking the relay. */
    parent: nodeId.optional(),
  }),
  z.object({ t: z.literal('ping'), ts: z.number() }),
  /** A node left or was evicted: drop direct channels to it, and place its calls again. */
  z.object({ t: z.literal('gone'), node: nodeId }),
  /** A dew's parent fog changed (its fog left or lost its trust): the new one, or none. */
  z.object({ t: z.literal('parent'), node: nodeId.optional() }),
  z.object({
    t: z.literal('decision'),
    id,
    node: nodeId,
    /** The rpc to call, the model variants to use, and the variant that decided accuracy. */
    rpc: rpcName,
    pin: callFields.pin,
    variant: rpcName,
    estimateMs: z.number().nonnegative(),
    reason: z.string().max(1024),
    /** Reuse this decision for calls with the same key until then (§5.3.2). */
    lease: leaseSchema.optional(),
  }),
  leaseRevokeFrame,
  /**
   * The relay is shutting down (§5.6): it takes no new schedules or calls, finishes those in
   * flight within `ms`, then closes; the node reconnects by its backoff.
   */
  z.object({ t: z.literal('drain'), ms: z.number().int().nonnegative().max(3_600_000) }),
  /** An app's current version changed (a deploy or a rollback): new calls run it (§5.7). */
  z.object({ t: z.literal('app'), name, version: appVersion }),
  z.object({ t: z.literal('call'), ...callFields, from: z.string().max(64) }),
  z.object({ t: z.literal('result'), ...resultFields, node: nodeId }),
  z.object({ t: z.literal('error'), id: id.optional(), error }),
  sessionFrame,
  sessionMovedFrame,
  sessionWarmFrame,
  ...contextToNode,
]);

export type ToRelay = z.infer<typeof toRelay>;
export type ToNode = z.infer<typeof toNode>;
