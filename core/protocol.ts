/**
 * The fabric's wire protocol (PROTOCOL.md §5): MessagePack frames over WebSocket (node ↔ relay)
 * and WebRTC data channels (node ↔ node). Frames are data; every one is validated on arrival,
 * because the other end may be hostile.
 * @example ws.send(encodeFrame({ t: 'schedule', id: 7, app: 'digits', service: 'classify', qos: {} }));
 *          const msg = decodeFrame(bytes, 'toRelay'); // throws ProtocolError on anything else
 */
import { z } from 'zod';
import { type DecodeLimits, decode, defaultLimits, encode } from './codec';
import { InputError, ProtocolError, type WireError } from './errors';
import { describeIssues } from './issues';

export const PROTOCOL_VERSION = 1;

/** Limits for frames from the network; the relay's WebSocket also caps the frame size. */
export const frameLimits: DecodeLimits = {
  ...defaultLimits,
  maxBytes: 16 * 1024 * 1024,
  maxBinLength: 16 * 1024 * 1024,
  maxStrLength: 1024 * 1024,
  maxArrayLength: 100_000,
  maxMapLength: 10_000,
};

const name = z.string().regex(/^[a-z][a-z0-9-]{0,63}$/);
const rpcName = z.string().max(64);
const nodeId = z.string().regex(/^[0-9a-f]{32}$/);
const id = z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER);
const bin = z.custom<Uint8Array>((v) => v instanceof Uint8Array, 'expected binary');
export const roles = ['cloud', 'fog', 'dew'] as const;
const role = z.enum(roles);
const backend = z.enum(['webgpu', 'wasm', 'cpu']);

export const qosSchema = z.strictObject({
  latencyMs: z.number().positive().max(3_600_000).optional(),
  accuracy: z.number().min(0).max(1).optional(),
  privacy: z.string().min(1).max(256).optional(),
  verify: z.boolean().optional(),
});

/**
 * A caller's QoS, checked where it enters (HTTP, the client API, the embed) so a bad one is an
 * InputError naming the field, never a frame the relay refuses by closing the node's socket.
 */
export function parseQos(value: unknown): z.infer<typeof qosSchema> {
  const r = qosSchema.safeParse(value ?? {}, { reportInput: true });
  if (!r.success) throw new InputError(describeIssues(r.error, ['qos'], { whole: 'qos' }));
  return r.data;
}

const error = z.object({
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
    }),
  )
  .max(64)
  .optional();

const stats = z.record(
  z.string().max(256),
  z.object({ count: z.number().int().nonnegative(), p50: z.number().nonnegative() }),
);

/** A context-store operation (core/context/replica.ts). */
export const contextOpSchema = z.strictObject({
  opId: z.string().min(1).max(64),
  app: name,
  key: z.string().min(1).max(256),
  scope: z.enum(['app', 'node']),
  owner: nodeId.optional(),
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
    load: z.object({
      queue: z.number().int().nonnegative(),
      maxConcurrency: z.number().int().min(1).max(1024),
    }),
    apps: z.array(name).max(1000),
    /** Model variants this node can run, by `app/service`. */
    models: z.record(z.string().max(130), z.array(rpcName).max(64)),
    stats: stats.refine((s) => Object.keys(s).length <= 4096, 'too many stats keys'),
    paused: z.boolean(),
    caps: capabilitiesSchema.optional(),
    /** A fog's open data channels: the dews it can pass context changes on to. */
    links: z.array(nodeId).max(1000).optional(),
    /** Its context store: what it holds, and what it had to evict for lack of storage. */
    context: z
      .object({
        keys: z.number().int().nonnegative(),
        bytes: z.number().int().nonnegative(),
        evicted: z.object({
          expired: z.number().int().nonnegative(),
          lru: z.number().int().nonnegative(),
        }),
        lastFull: z.object({ at: z.number(), freed: z.boolean() }).optional(),
        unstored: z.number().int().nonnegative(),
      })
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
  }),
  z.object({
    t: z.literal('call'),
    id,
    to: nodeId,
    app: name,
    service: name,
    rpc: rpcName,
    input: z.unknown(),
    qos: qosSchema,
    pin,
  }),
  z.object({
    t: z.literal('result'),
    id,
    value: z.unknown(),
    rpc: rpcName,
    ms: z.number().nonnegative(),
    trace,
  }),
  z.object({ t: z.literal('error'), id, error }),
  z.object({ t: z.literal('ctx-op'), op: contextOpSchema }),
  z.object({
    t: z.literal('ctx-sync'),
    /** The node's number for this sync, echoed by every part of its catch-up. */
    id: z.number().int().nonnegative().optional(),
    cursor: z.number().int().nonnegative(),
    /** The apps whose context this node keeps (absent: every app). */
    apps: z.array(name).max(1000).optional(),
    /** Of those, the apps it holds nothing of yet: their whole state comes with the catch-up. */
    full: z.array(name).max(1000).optional(),
  }),
  /** The agreement keys of these identity keys, to seal a private value for them. */
  z.object({ t: z.literal('ctx-keys'), id, keys: z.array(z.string().max(512)).max(32) }),
  /** From a fog: the `ctx-fan` change `seq` could not go to these dews; the relay sends it. */
  z.object({ t: z.literal('ctx-unsent'), seq: z.number().int().positive(), to: fanTargets }),
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
    pin,
    variant: rpcName,
    estimateMs: z.number().nonnegative(),
    reason: z.string().max(1024),
  }),
  z.object({
    t: z.literal('call'),
    id,
    from: z.string().max(64),
    app: name,
    service: name,
    rpc: rpcName,
    input: z.unknown(),
    qos: qosSchema,
    pin,
  }),
  z.object({
    t: z.literal('result'),
    id,
    value: z.unknown(),
    rpc: rpcName,
    ms: z.number().nonnegative(),
    node: nodeId,
    trace,
  }),
  z.object({ t: z.literal('error'), id: id.optional(), error }),
  z.object({ t: z.literal('ctx-ack'), opId: z.string().max(64) }),
  z.object({ t: z.literal('ctx-nack'), opId: z.string().max(64), error }),
  z.object({
    t: z.literal('ctx-op'),
    prev: z.number().int().nonnegative(),
    seq: z.number().int().nonnegative(),
    op: contextOpSchema,
  }),
  z.object({
    t: z.literal('ctx-catchup'),
    /** The `id` of the sync this answers. */
    id: z.number().int().nonnegative().optional(),
    ops: z.array(contextOpSchema).max(100_000),
    cursor: z.number().int().nonnegative(),
    /** The apps whose whole state this catch-up holds (those the sync asked for in `full`). */
    full: z.array(name).max(1000).optional(),
    /** A catch-up over the frame budget comes in parts: `part` from 0, `more` on all but the last. */
    part: z.number().int().positive().max(100_000).optional(),
    more: z.literal(true).optional(),
  }),
  /** The bindings the relay knows of the keys asked for (unknown keys are left out). */
  z.object({ t: z.literal('ctx-keys'), id, found: z.array(agreementSchema).max(32) }),
  /** To a fog: pass change `seq` on to these dew children over their data channels. */
  z.object({
    t: z.literal('ctx-fan'),
    seq: z.number().int().positive(),
    op: contextOpSchema,
    to: fanTargets,
  }),
]);

/** Node ↔ node over a data channel: calls and their answers, chunked past one chunk. */
export const peerFrame = z.discriminatedUnion('t', [
  z.object({
    t: z.literal('call'),
    id,
    app: name,
    service: name,
    rpc: rpcName,
    input: z.unknown(),
    qos: qosSchema,
    pin,
    /** From a dew to its parent fog: serve only if you meet the QoS yourself, else refuse. */
    probe: z.boolean().optional(),
  }),
  z.object({
    t: z.literal('result'),
    id,
    value: z.unknown(),
    rpc: rpcName,
    ms: z.number().nonnegative(),
    trace,
  }),
  z.object({ t: z.literal('error'), id, error }),
  /** From a fog to a dew child: a context change the relay sent through the fog. */
  z.object({
    t: z.literal('ctx-op'),
    id,
    prev: z.number().int().nonnegative(),
    seq: z.number().int().positive(),
    op: contextOpSchema,
  }),
  z.object({
    t: z.literal('chunk'),
    id,
    seq: z.number().int().nonnegative(),
    last: z.boolean(),
    data: bin,
  }),
]);

export type ToRelay = z.infer<typeof toRelay>;
export type ToNode = z.infer<typeof toNode>;
export type PeerFrame = z.infer<typeof peerFrame>;
export type Capabilities = z.infer<typeof capabilitiesSchema>;
export type Role = (typeof roles)[number];

const schemas = { toRelay, toNode, peer: peerFrame };
type Direction = keyof typeof schemas;
type Frame<D extends Direction> = z.infer<(typeof schemas)[D]>;

export function encodeFrame(frame: ToRelay | ToNode | PeerFrame): Uint8Array {
  return encode(frame);
}

/** Decodes and validates one frame; anything malformed is a ProtocolError naming the problem. */
export function decodeFrame<D extends Direction>(bytes: Uint8Array, direction: D): Frame<D> {
  let raw: unknown;
  try {
    raw = decode(bytes, frameLimits);
  } catch (e) {
    throw new ProtocolError(`undecodable frame: ${(e as Error).message}`);
  }
  const parsed = schemas[direction].safeParse(raw, { reportInput: true });
  if (!parsed.success) {
    const t = (raw as { t?: unknown } | null)?.t;
    const what = describeIssues(parsed.error, [], { max: 3, whole: 'the frame' });
    throw new ProtocolError(
      `invalid ${typeof t === 'string' ? `"${t.slice(0, 32)}" ` : ''}frame: ${what}`,
    );
  }
  return parsed.data as Frame<D>;
}

/** Splits a payload into data-channel chunks (a message over ~256 KB closes a channel). */
export const chunkBytes = 64 * 1024;
export function* chunk(id: number, bytes: Uint8Array): Generator<PeerFrame> {
  const n = Math.max(1, Math.ceil(bytes.byteLength / chunkBytes));
  for (let seq = 0; seq < n; seq++) {
    const data = bytes.subarray(seq * chunkBytes, (seq + 1) * chunkBytes);
    yield { t: 'chunk', id, seq, last: seq === n - 1, data };
  }
}

export interface ReassemblerLimits {
  /** Bytes of one message; default the frame limit (16 MiB). */
  maxBytes?: number;
  /** Messages partly received at once on one link; default 4. */
  maxPartials?: number;
  /** Bytes held for partly received messages on one link; default 32 MiB. */
  maxPartialBytes?: number;
  /** A partial message with no chunk for this long is dropped; default 30 000 ms. */
  staleMs?: number;
  /** The clock, in ms (tests move it by hand). */
  now?: () => number;
}

interface Partial {
  next: number;
  size: number;
  bufs: Uint8Array[];
  lastAt: number;
}

/**
 * Reassembles chunks per id, in order. What one link may hold is bounded: the bytes of a message,
 * the number of messages partly received and their bytes together; a partial message that stops
 * getting chunks is dropped. A gap or a limit passed is a ProtocolError naming it.
 */
export class Reassembler {
  private readonly parts = new Map<number, Partial>();
  private held = 0;
  private readonly limits: Required<ReassemblerLimits>;
  constructor(limits: ReassemblerLimits | number = {}) {
    const l = typeof limits === 'number' ? { maxBytes: limits } : limits;
    this.limits = {
      maxBytes: l.maxBytes ?? frameLimits.maxBytes,
      maxPartials: l.maxPartials ?? 4,
      maxPartialBytes: l.maxPartialBytes ?? 32 * 1024 * 1024,
      staleMs: l.staleMs ?? 30_000,
      now: l.now ?? (() => performance.now()),
    };
  }

  /** Bytes held now for messages partly received. */
  get bytes(): number {
    return this.held;
  }

  /** Messages partly received now. */
  get partials(): number {
    return this.parts.size;
  }

  /** Answers the whole payload when `c` completes one, else undefined. */
  add(c: Extract<PeerFrame, { t: 'chunk' }>): Uint8Array | undefined {
    const { maxBytes, maxPartials, maxPartialBytes } = this.limits;
    const now = this.limits.now();
    this.dropStale(now);
    let p = this.parts.get(c.id);
    if (!p) {
      if (c.seq === 0 && !c.last && this.parts.size >= maxPartials) {
        throw new ProtocolError(
          `message ${c.id} would be partial message ${this.parts.size + 1} on this link (limit ${maxPartials})`,
        );
      }
      p = { next: 0, size: 0, bufs: [], lastAt: now };
    }
    if (c.seq !== p.next) {
      this.drop(c.id);
      throw new ProtocolError(
        `chunk ${c.seq} of message ${c.id} arrived where ${p.next} was expected`,
      );
    }
    const n = c.data.byteLength;
    if (p.size + n > maxBytes) {
      this.drop(c.id);
      throw new ProtocolError(`message ${c.id} exceeds ${maxBytes} bytes`);
    }
    const wouldHold = this.held + n;
    if (!c.last && wouldHold > maxPartialBytes) {
      this.drop(c.id);
      throw new ProtocolError(
        `partial messages on this link would hold ${wouldHold} bytes (limit ${maxPartialBytes})`,
      );
    }
    if (c.last) this.drop(c.id); // before its size grows: `held` counts what was added
    p.next++;
    p.size += n;
    p.lastAt = now;
    p.bufs.push(c.data.slice());
    if (!c.last) {
      this.held += n;
      this.parts.set(c.id, p);
      return undefined;
    }
    const out = new Uint8Array(p.size);
    let at = 0;
    for (const b of p.bufs) {
      out.set(b, at);
      at += b.byteLength;
    }
    return out;
  }

  /** Drops partial messages (their link dropped). */
  clear(): void {
    this.parts.clear();
    this.held = 0;
  }

  private drop(id: number): void {
    const p = this.parts.get(id);
    if (!p) return;
    this.parts.delete(id);
    this.held -= p.size;
  }

  // A sender that stopped mid-message will not finish it: its bytes are not kept for ever.
  private dropStale(now: number): void {
    for (const [id, p] of this.parts) {
      if (now - p.lastAt > this.limits.staleMs) this.drop(id);
    }
  }
}
