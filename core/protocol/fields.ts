/**
 * The building blocks of every frame (PROTOCOL.md §5): the protocol's version and constants, the
 * decode limits for frames from the network, and the field schemas the frame unions share (names,
 * ids, QoS, capabilities, the wire error, a call and its answer).
 * @example const call = z.object({ t: z.literal('call'), ...callFields, to: nodeId });
 */
import { z } from 'zod';
import { type DecodeLimits, defaultLimits } from '../codec';
import { InputError, type WireError } from '../errors';
import { describeIssues } from '../issues';
import { APP_NAME, APP_VERSION } from '../names';
import { isTraceId } from '../trace';
import { isVersionRange, MAX_VERSION_RANGE } from '../versions';

export const PROTOCOL_VERSION = 1;

/**
 * A call whose node is lost is placed again on another, at most this many nodes in all
 * (PROTOCOL.md §5.3): past that, the caller gets E_UNAVAILABLE.
 */
export const MAX_PLACEMENTS = 3;

/** Limits for frames from the network; the relay's WebSocket also caps the frame size. */
export const frameLimits: DecodeLimits = {
  ...defaultLimits,
  maxBytes: 16 * 1024 * 1024,
  maxBinLength: 16 * 1024 * 1024,
  maxStrLength: 1024 * 1024,
  maxArrayLength: 100_000,
  maxMapLength: 10_000,
};

export const name = z.string().regex(APP_NAME);
export const rpcName = z.string().max(64);
export const nodeId = z.string().regex(/^[0-9a-f]{32}$/);
/** A request's trace id (core/trace.ts): W3C's trace-id form, 32 lowercase hex, not all zeros. */
export const traceId = z
  .string()
  .refine(isTraceId, 'a trace id is 32 lowercase hex digits, not all zeros');
export const id = z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER);
export const bin = z.custom<Uint8Array>((v) => v instanceof Uint8Array, 'expected binary');
export const roles = ['cloud', 'fog', 'dew'] as const;
export const role = z.enum(roles);
export const backend = z.enum(['webgpu', 'wasm', 'cpu']);

export const qosSchema = z.strictObject({
  latencyMs: z.number().positive().max(3_600_000).optional(),
  accuracy: z.number().min(0).max(1).optional(),
  privacy: z.string().min(1).max(256).optional(),
  verify: z.boolean().optional(),
  /** Only this version of the app, or the versions a semver range allows (§5.7). */
  version: z
    .string()
    .max(MAX_VERSION_RANGE)
    .refine(isVersionRange, 'must be an app version or a semver range ("1.0.0", "^1.2.0")')
    .optional(),
});

/** An app version as the relay stores it: MAJOR.MINOR.PATCH. */
export const appVersion = z.string().max(64).regex(APP_VERSION);

/**
 * A caller's QoS, checked where it enters (HTTP, the client API, the embed) so a bad one is an
 * InputError naming the field, never a frame the relay refuses by closing the node's socket.
 */
export function parseQos(value: unknown): z.infer<typeof qosSchema> {
  const r = qosSchema.safeParse(value ?? {}, { reportInput: true });
  if (!r.success) throw new InputError(describeIssues(r.error, ['qos'], { whole: 'qos' }));
  return r.data;
}

/** The wire shape of an error (PROTOCOL.md §8). */
export const error = z.object({
  code: z.string().max(64),
  message: z.string().max(4096),
  constraint: z.string().max(32).optional(),
  best: z.union([z.number(), z.string().max(256)]).optional(),
  appCode: z.string().max(64).optional(),
  file: z.string().max(1024).optional(),
}) satisfies z.ZodType<WireError>;

export const capabilitiesSchema = z.object({
  backends: z.array(z.object({ name: backend, detail: z.string().max(512) })).max(8),
  cores: z.number().int().min(1).max(1024).optional(),
  memoryGiB: z.number().min(0).max(65536).optional(),
  battery: z.object({ level: z.number().min(0).max(1), charging: z.boolean() }).optional(),
  visible: z.boolean().optional(),
  agent: z.string().max(256).optional(),
});

/** Model variants to use, by model service: the relay's choice travels with the call. */
const pin = z.record(name, rpcName).optional();
const trace = z
  .array(
    z.object({
      service: name,
      rpc: rpcName,
      kind: z.enum(['logic', 'model']),
      ms: z.number().nonnegative(),
      backend: backend.optional(),
      /** A model with an exit head: whether this run took the exit. */
      exit: z.boolean().optional(),
      /** The request it ran for. */
      traceId: traceId.optional(),
      /** The version of the app that ran this service (§5.7). */
      version: appVersion.optional(),
      /** A pipeline's stage, the node that ran it, its fan-out branch (§5.8). */
      stage: name.optional(),
      node: nodeId.optional(),
      branch: z.int().min(0).max(1024).optional(),
    }),
  )
  .max(256)
  .optional();

/** A key of an app's context store (§5.5). */
export const contextKey = z.string().min(1).max(256);

/**
 * The longest time a latency figure may say, ms (an hour, as a session's `localMs` is bounded):
 * placement multiplies figures, and one near the largest double would be Infinity.
 */
export const MAX_FIGURE_MS = 3_600_000;

export const stats = z.record(
  z.string().max(256),
  z.object({
    count: z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER),
    p50: z.number().nonnegative().max(MAX_FIGURE_MS),
  }),
);

/** A call as every link carries it (node → relay adds `to`, relay → node `from`). */
export const callFields = {
  id,
  app: name,
  service: name,
  rpc: rpcName,
  input: z.unknown(),
  qos: qosSchema,
  pin,
  /** The request's trace id, made where it entered the fabric (§5.3). */
  traceId: traceId.optional(),
};

/** A call's answer as every link carries it (relay → node adds the executing `node`). */
export const resultFields = {
  id,
  value: z.unknown(),
  rpc: rpcName,
  ms: z.number().nonnegative(),
  trace,
  /** The version of the app that answered (§5.7); absent from a node older than versions. */
  version: appVersion.optional(),
  /** A pipeline's chosen quality level (§5.8). */
  quality: z.number().optional(),
};

export type Capabilities = z.infer<typeof capabilitiesSchema>;
export type Role = (typeof roles)[number];
