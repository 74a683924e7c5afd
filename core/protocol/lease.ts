/**
 * Decision leases (PROTOCOL.md §5.3.2): a node that asks `schedule` with `lease: true` may get a
 * decision it can reuse, for a short time, for calls with the same key, instead of asking the
 * relay each call. The relay stays the authority: it revokes a lease (`lease-revoke`) when the
 * node it chose leaves, is paused or quarantined, or its figures move.
 * @example const d = { t: 'decision', …, lease: { id: 4, ms: 2000, app, service, rpc: '', qos: {} } };
 */
import { z } from 'zod';
import { id, name, nodeId, qosSchema, rpcName } from './fields';

/** A lease lasts at most this long, whatever a relay is configured with (one minute). */
export const MAX_LEASE_MS = 60_000;
/** Leases one `lease-revoke` frame names at most (a relay grants one node fewer than this). */
export const MAX_REVOKED_IDS = 1024;

/**
 * What a decision's lease covers: the key (app, service, the rpc asked — '' for the first — and
 * the QoS class, which is the call's QoS without `verify`: a verified call is never leased) and
 * for how long from when it was asked.
 */
export const leaseSchema = z.strictObject({
  id,
  ms: z.number().int().min(1).max(MAX_LEASE_MS),
  app: name,
  service: name,
  rpc: rpcName,
  qos: qosSchema.omit({ verify: true }),
});

/** Relay → node: leases it granted and no longer stands by. */
export const leaseRevokeFrame = z.object({
  t: z.literal('lease-revoke'),
  /** The node the leases chose (it left, was paused or quarantined, or its figures moved). */
  node: nodeId,
  ids: z.array(id).min(1).max(MAX_REVOKED_IDS),
  reason: z.string().max(256),
});

export type Lease = z.infer<typeof leaseSchema>;
