/**
 * Messages between a host page's `brume.js` and the node running in the relay's iframe: each
 * call of the page API (core/page-api.ts) is one request, answered once by id; a context watch is
 * a subscription, whose changes come back as `watch` messages under the request's id until
 * `context.unwatch`. The node's keys and storage stay in the iframe's origin.
 */
import type { ContextRead, PutOptions } from '../core/context/client';
import type { Scope } from '../core/context/replica';
import type { WireError } from '../core/errors';
import type { JobRequest } from '../core/jobs-client';
import type { NodeStatus } from '../core/page-api';
import type { CallOptions } from '../core/runtime';
import type { Qos } from '../core/scheduler';

/** Each operation and its arguments, in the order the page API takes them. */
export interface EmbedOps {
  invoke: [app: string, service: string, input: unknown, qos?: Qos, opts?: CallOptions];
  schedule: [app: string, service: string, qos?: Qos, opts?: { rpc?: string }];
  describe: [];
  pause: [paused: boolean];
  'context.get': [app: string, key: string, scope?: Scope];
  'context.put': [app: string, key: string, value: unknown, options?: PutOptions];
  'context.delete': [app: string, key: string, scope?: Scope];
  /** Answered at once; then `{ id: 0, watch: <this request's id>, key, read }` per change. */
  'context.watch': [app: string, prefix: string];
  /** Ends the watch opened by request `watch`. */
  'context.unwatch': [watch: number];
  'jobs.submit': [request: JobRequest];
  'jobs.get': [id: string];
  'jobs.cancel': [id: string];
}

export type EmbedOp = keyof EmbedOps;

export type EmbedRequest = {
  [Op in EmbedOp]: { brume: 1; id: number; op: Op; args: EmbedOps[Op] };
}[EmbedOp];

export type EmbedReply =
  | { brume: 1; id: number; ok: true; value: unknown }
  | { brume: 1; id: number; ok: false; error: WireError }
  | { brume: 1; id: 0; status: NodeStatus }
  | { brume: 1; id: 0; watch: number; key: string; read: ContextRead };
