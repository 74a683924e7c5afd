/**
 * The context store's frames (PROTOCOL.md §5.5): the operation every link carries, the agreement
 * bindings private values are sealed with, and the `ctx-*` frames of each direction, which the
 * node ↔ relay unions (core/protocol/relay.ts) and the peer union (core/protocol/peer.ts) take in.
 * @example const op = contextOpSchema.parse(raw);
 */
import { z } from 'zod';
import { bin, contextKey, error, id, name, nodeId } from './fields';

/**
 * A context-store operation (core/context/replica.ts). `owner` names the namespace of a scope
 * narrower than the app's: the node (node scope), the user or the project (user, project scope).
 */
export const contextOpSchema = z
  .strictObject({
    opId: z.string().min(1).max(64),
    app: name,
    key: contextKey,
    scope: z.enum(['app', 'node', 'project', 'user']),
    owner: z.union([nodeId, name]).optional(),
    stamp: z.strictObject({
      wall: z.number().int().nonnegative(),
      count: z.number().int().nonnegative().max(1_000_000),
      node: z.string().max(64),
    }),
    kind: z.enum(['put', 'delete']),
    value: bin.optional(),
    sealed: bin.optional(),
    privacy: z.array(z.string().max(512)).max(32).optional(),
    expiresAt: z.number().nonnegative().optional(),
    /** Stays at the site (relay or cluster) that took it: never pushed to federated sites. */
    local: z.literal(true).optional(),
  })
  .superRefine((op, ctx) => {
    const ok =
      op.scope === 'app' || (op.scope === 'node' ? nodeId : name).safeParse(op.owner ?? '').success;
    if (!ok) {
      ctx.addIssue({
        code: 'custom',
        path: ['owner'],
        message: `a ${op.scope}-scoped key names its owner`,
      });
    }
  });

/** An identity key (base64url SPKI) and the agreement key (raw P-256) it signed for. */
export const agreementSchema = z.object({
  publicKey: z.string().max(512),
  agreementKey: bin.refine((b) => b.byteLength === 65, 'expected a raw P-256 public key'),
  signature: bin.refine((b) => b.byteLength === 64, 'expected a P-256 signature'),
});
export type AgreementBinding = z.infer<typeof agreementSchema>;

/** Dews a fog passes a context change on to, each with the `prev` of its own numbering. */
const fanTargets = z
  .array(z.object({ node: nodeId, prev: z.number().int().nonnegative() }))
  .min(1)
  .max(1000);

const seq = z.number().int().positive();
const cursor = z.number().int().nonnegative();

/** Node → relay `ctx-*` frames. */
export const contextToRelay = [
  z.object({ t: z.literal('ctx-op'), op: contextOpSchema }),
  z.object({
    t: z.literal('ctx-sync'),
    /** The node's number for this sync, echoed by every part of its catch-up. */
    id: z.number().int().nonnegative().optional(),
    cursor,
    /** The apps whose context this node keeps (absent: every app). */
    apps: z.array(name).max(1000).optional(),
    /** Of those, the apps it holds nothing of yet: their whole state comes with the catch-up. */
    full: z.array(name).max(1000).optional(),
  }),
  /** The agreement keys of these identity keys, to seal a private value for them. */
  z.object({ t: z.literal('ctx-keys'), id, keys: z.array(z.string().max(512)).max(32) }),
  /** From a fog: the `ctx-fan` change `seq` could not go to these dews; the relay sends it. */
  z.object({ t: z.literal('ctx-unsent'), seq, to: fanTargets }),
  // Version check (a Logic's read when nothing changed: no catch-up sent back).
  /** Which log position has the relay sent this node up to? */
  z.object({ t: z.literal('ctx-check'), id }),
] as const;

/** Relay → node `ctx-*` frames. */
export const contextToNode = [
  z.object({ t: z.literal('ctx-ack'), opId: z.string().max(64) }),
  z.object({ t: z.literal('ctx-nack'), opId: z.string().max(64), error }),
  z.object({ t: z.literal('ctx-op'), prev: cursor, seq: cursor, op: contextOpSchema }),
  z.object({
    t: z.literal('ctx-catchup'),
    /** The `id` of the sync this answers. */
    id: z.number().int().nonnegative().optional(),
    ops: z.array(contextOpSchema).max(100_000),
    cursor,
    /** The apps whose whole state this catch-up holds (those the sync asked for in `full`). */
    full: z.array(name).max(1000).optional(),
    /** A catch-up over the frame budget comes in parts: `part` from 0, `more` on all but the last. */
    part: z.number().int().positive().max(100_000).optional(),
    more: z.literal(true).optional(),
  }),
  /** The bindings the relay knows of the keys asked for (unknown keys are left out). */
  z.object({ t: z.literal('ctx-keys'), id, found: z.array(agreementSchema).max(32) }),
  /** To a fog: pass change `seq` on to these dew children over their data channels. */
  z.object({ t: z.literal('ctx-fan'), seq, op: contextOpSchema, to: fanTargets }),
  // Version check.
  /** The answer to `ctx-check` `id`: every change up to `seq` has been sent to this node. */
  z.object({ t: z.literal('ctx-at'), id, seq: cursor }),
] as const;

/** From a fog to a dew child over a data channel: a context change the relay sent through it. */
export const contextToPeer = z.object({
  t: z.literal('ctx-op'),
  id,
  prev: cursor,
  seq,
  op: contextOpSchema,
});
