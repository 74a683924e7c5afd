/**
 * Every failure Brume reports is a BrumeError with a code from one closed list, so callers branch
 * on codes, never on message text; messages say what happened and what to do about it.
 * `errorTable` is the one place a code gets its class and its HTTP status; `toWire` and
 * `fromWire` are the one shape an error takes across a worker, socket or HTTP boundary.
 * @example throw new NotFoundError(`no app "${name}"`);  // HTTP 404, code E_NOT_FOUND
 *          const e = fromWire(frame.error);              // the same class again, with its details
 */

/** What crosses a boundary: the code, the message, and the details its class carries. */
export interface WireError {
  code: string;
  message: string;
  /** E_QOS: the constraint no node could meet, and the best figure there was. */
  constraint?: string;
  best?: number | string;
  /** E_APP: the code an application gave its own error (not one of Brume's). */
  appCode?: string;
  /** E_INTEGRITY: the bundle file that failed. */
  file?: string;
}

type Opts = { cause?: unknown };

export abstract class BrumeError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: Opts) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
  /** The shape an error takes when it crosses a worker or network boundary. */
  toJSON(): WireError {
    return { code: this.code, message: this.message };
  }
}

/** A manifest that does not follow PROTOCOL.md §2. */
export class ManifestError extends BrumeError {
  constructor(message: string, options?: Opts) {
    super('E_MANIFEST', message, options);
  }
}
/** A bundle file that is missing, unlisted, or does not match its sha256. */
export class BundleIntegrityError extends BrumeError {
  constructor(
    readonly file: string,
    message: string,
  ) {
    super('E_INTEGRITY', message);
  }
  override toJSON(): WireError {
    return { ...super.toJSON(), file: this.file };
  }
}
/** Bytes from the network or a guest that are not valid MessagePack or exceed a limit. */
export class CodecError extends BrumeError {
  constructor(message: string, options?: Opts) {
    super('E_CODEC', message, options);
  }
}
/** A frame that breaks the wire protocol; the connection that sent it is closed with this reason. */
export class ProtocolError extends BrumeError {
  constructor(message: string) {
    super('E_PROTOCOL', message);
  }
}
/** A Logic module that cannot be compiled or instantiated, or breaks the ABI. */
export class LogicLoadError extends BrumeError {
  constructor(message: string, options?: Opts) {
    super('E_LOGIC_LOAD', message, options);
  }
}
/** A Logic that trapped, aborted, or returned something the ABI does not allow. */
export class LogicFault extends BrumeError {
  constructor(message: string, options?: Opts) {
    super('E_LOGIC_FAULT', message, options);
  }
}
/** A Logic that ran past its wall-clock budget; its worker was terminated and replaced. */
export class LogicTimeoutError extends BrumeError {
  constructor(message: string) {
    super('E_LOGIC_TIMEOUT', message);
  }
}
/** A Logic that tried to grow its memory past the limit in its manifest. */
export class LogicMemoryError extends BrumeError {
  constructor(message: string, options?: Opts) {
    super('E_LOGIC_MEMORY', message, options);
  }
}
/**
 * A Logic returned `error(...)`: the application's own failure, passed through to the caller.
 * A code of its own that is not one of Brume's is kept as `appCode`.
 */
export class AppError extends BrumeError {
  constructor(
    message: string,
    readonly appCode?: string,
  ) {
    super('E_APP', message);
  }
  override toJSON(): WireError {
    return { ...super.toJSON(), ...(this.appCode !== undefined && { appCode: this.appCode }) };
  }
}
/** A model file that onnxruntime cannot load on any backend. */
export class ModelLoadError extends BrumeError {
  constructor(message: string, options?: Opts) {
    super('E_MODEL_LOAD', message, options);
  }
}
/** A model that loaded but failed to run, or was given input that does not fit it. */
export class ModelRunError extends BrumeError {
  constructor(message: string, options?: Opts) {
    super('E_MODEL_RUN', message, options);
  }
}
/** An app, service, rpc, key or node that is not there. */
export class NotFoundError extends BrumeError {
  constructor(message: string) {
    super('E_NOT_FOUND', message);
  }
}
/** Bad input from a caller (wrong type, missing field). */
export class InputError extends BrumeError {
  constructor(message: string) {
    super('E_INPUT', message);
  }
}
/** A write that contradicts what is stored, e.g. an app version re-deployed with new content. */
export class ConflictError extends BrumeError {
  constructor(message: string) {
    super('E_CONFLICT', message);
  }
}
/** The QoS constraints a QoS miss can name. */
export type QosConstraint = 'latencyMs' | 'accuracy' | 'privacy' | 'tiers';
/** No variant or node can satisfy the requested QoS; `best` says what was achievable. */
export class QosError extends BrumeError {
  constructor(
    readonly constraint: QosConstraint,
    readonly best: number | string | undefined,
    message: string,
  ) {
    super('E_QOS', message);
  }
  override toJSON(): WireError {
    return {
      ...super.toJSON(),
      constraint: this.constraint,
      ...(this.best !== undefined && { best: this.best }),
    };
  }
}
/** A call that got no answer in time. */
export class TimeoutError extends BrumeError {
  constructor(message: string) {
    super('E_TIMEOUT', message);
  }
}
/** A request with no credential, or one the relay does not know. */
export class AuthError extends BrumeError {
  constructor(message: string) {
    super('E_AUTH', message);
  }
}
/** A credential the relay knows, without the scope the request needs. */
export class ForbiddenError extends BrumeError {
  constructor(message: string) {
    super('E_FORBIDDEN', message);
  }
}
/** A page origin that may not open sockets on this relay. */
export class OriginError extends BrumeError {
  constructor(message: string) {
    super('E_ORIGIN', message);
  }
}
/** A caller over its rate limit (HTTP adds Retry-After). */
export class RateLimitError extends BrumeError {
  constructor(message: string) {
    super('E_RATE', message);
  }
}
/** A request whose Host header is not one of the relay's names (DNS rebinding). */
export class HostError extends BrumeError {
  constructor(message: string) {
    super('E_HOST', message);
  }
}
/** A refusal because a bound was reached, naming the limit and its value. */
export class LimitError extends BrumeError {
  constructor(message: string) {
    super('E_LIMIT', message);
  }
}
/** A write that would take a store past its quota; nothing changed. */
export class QuotaError extends BrumeError {
  constructor(message: string) {
    super('E_QUOTA', message);
  }
}
/** A value that may not be read or sent here: private, or sealed for another node. */
export class PrivacyError extends BrumeError {
  constructor(message: string) {
    super('E_PRIVACY', message);
  }
}
/** A context value past its expiry. */
export class ExpiredError extends BrumeError {
  constructor(message: string) {
    super('E_EXPIRED', message);
  }
}
/** A clock stamp further ahead than this node's clock takes. */
export class ClockError extends BrumeError {
  constructor(message: string) {
    super('E_CLOCK', message);
  }
}
/** Something this node or relay cannot do at all (no context store, no such feature). */
export class UnsupportedError extends BrumeError {
  constructor(message: string) {
    super('E_UNSUPPORTED', message);
  }
}
/** No node can take the request now (none connected, all busy, paused or lost); try again. */
export class UnavailableError extends BrumeError {
  constructor(message: string, options?: Opts) {
    super('E_UNAVAILABLE', message, options);
  }
}
/** The link a request waited on went away before it was answered. */
export class DisconnectedError extends BrumeError {
  constructor(message: string) {
    super('E_DISCONNECTED', message);
  }
}
/** The object a request was made on was closed. */
export class ClosedError extends BrumeError {
  constructor(message: string) {
    super('E_CLOSED', message);
  }
}
/** No direct channel to a peer could be opened; the caller goes through the relay instead. */
export class NoLinkError extends BrumeError {
  constructor(message: string) {
    super('E_NO_LINK', message);
  }
}
/** A server answered with an HTTP status and no Brume error in its body. */
export class HttpError extends BrumeError {
  constructor(message: string) {
    super('E_HTTP', message);
  }
}
/**
 * A `qos.verify` call whose answer could not be confirmed: two nodes disagreed and no third (or
 * trusted) node decided, or no second node could check it. The caller gets no answer rather than
 * a possibly wrong one.
 */
export class VerifyError extends BrumeError {
  constructor(message: string) {
    super('E_VERIFY', message);
  }
}
/** Something the node did not expect; a bug if it ever reaches a user. */
export class InternalError extends BrumeError {
  constructor(message: string, options?: Opts) {
    super('E_INTERNAL', message, options);
  }
}

const simple = (Cls: new (message: string) => BrumeError) => (w: WireError) => new Cls(w.message);
const constraints: readonly string[] = ['latencyMs', 'accuracy', 'privacy', 'tiers'];

/**
 * Every code Brume uses: its HTTP status and how it is rebuilt from the wire. 4xx: the caller's
 * request (its input, its credential, its QoS, or a Logic refusing it); 5xx: Brume's side (a Logic
 * that traps, runs out of time or memory, a node or link that fails). PROTOCOL.md §6 and §8 list
 * the same table for clients.
 */
export const errorTable = {
  E_INPUT: { status: 400, revive: simple(InputError) },
  E_MANIFEST: { status: 400, revive: simple(ManifestError) },
  E_INTEGRITY: { status: 400, revive: (w) => new BundleIntegrityError(w.file ?? '', w.message) },
  E_CODEC: { status: 400, revive: simple(CodecError) },
  E_PROTOCOL: { status: 400, revive: simple(ProtocolError) },
  E_AUTH: { status: 401, revive: simple(AuthError) },
  E_FORBIDDEN: { status: 403, revive: simple(ForbiddenError) },
  E_ORIGIN: { status: 403, revive: simple(OriginError) },
  E_PRIVACY: { status: 403, revive: simple(PrivacyError) },
  E_NOT_FOUND: { status: 404, revive: simple(NotFoundError) },
  E_CONFLICT: { status: 409, revive: simple(ConflictError) },
  E_EXPIRED: { status: 410, revive: simple(ExpiredError) },
  E_LIMIT: { status: 413, revive: simple(LimitError) },
  E_QUOTA: { status: 413, revive: simple(QuotaError) },
  E_HOST: { status: 421, revive: simple(HostError) },
  E_QOS: {
    status: 422,
    revive: (w) =>
      new QosError(
        (constraints.includes(w.constraint ?? '') ? w.constraint : 'latencyMs') as QosConstraint,
        w.best,
        w.message,
      ),
  },
  E_CLOCK: { status: 422, revive: simple(ClockError) },
  E_RATE: { status: 429, revive: simple(RateLimitError) },
  // A Logic's own refusal (`error(...)`) is about the request it was given: the caller's to fix.
  E_APP: { status: 422, revive: (w) => new AppError(w.message, w.appCode) },
  E_LOGIC_LOAD: { status: 500, revive: simple(LogicLoadError) },
  E_LOGIC_FAULT: { status: 500, revive: simple(LogicFault) },
  E_LOGIC_TIMEOUT: { status: 500, revive: simple(LogicTimeoutError) },
  E_LOGIC_MEMORY: { status: 500, revive: simple(LogicMemoryError) },
  E_MODEL_LOAD: { status: 500, revive: simple(ModelLoadError) },
  E_MODEL_RUN: { status: 500, revive: simple(ModelRunError) },
  E_INTERNAL: { status: 500, revive: simple(InternalError) },
  E_UNSUPPORTED: { status: 501, revive: simple(UnsupportedError) },
  E_HTTP: { status: 502, revive: simple(HttpError) },
  E_VERIFY: { status: 502, revive: simple(VerifyError) },
  E_UNAVAILABLE: { status: 503, revive: simple(UnavailableError) },
  E_DISCONNECTED: { status: 503, revive: simple(DisconnectedError) },
  E_CLOSED: { status: 503, revive: simple(ClosedError) },
  E_NO_LINK: { status: 503, revive: simple(NoLinkError) },
  E_TIMEOUT: { status: 504, revive: simple(TimeoutError) },
} satisfies Record<string, { status: number; revive(w: WireError): BrumeError }>;

export type ErrorCode = keyof typeof errorTable;

export function isErrorCode(code: unknown): code is ErrorCode {
  return typeof code === 'string' && Object.hasOwn(errorTable, code);
}

/** The HTTP status an error is answered with (500 for anything not a BrumeError). */
export function httpStatus(e: unknown): number {
  return e instanceof BrumeError ? errorTable[e.code].status : 500;
}

/** Turns any thrown value into the shape that crosses a boundary (messages cut to 4 KiB). */
export function toWire(e: unknown): WireError {
  const w = e instanceof BrumeError ? e.toJSON() : { code: 'E_INTERNAL', message: textOf(e) };
  return w.message.length > 4096 ? { ...w, message: w.message.slice(0, 4096) } : w;
}

/**
 * Rebuilds an error that crossed a boundary as its class, with its details. A code that is not
 * one of Brume's came from an application: an AppError that keeps it as `appCode`.
 */
export function fromWire(e: unknown): BrumeError {
  if (e instanceof BrumeError) return e;
  const w = e as Partial<WireError> | undefined;
  if (w && typeof w.code === 'string' && typeof w.message === 'string') {
    if (isErrorCode(w.code)) return errorTable[w.code].revive(w as WireError);
    return new AppError(w.message, w.code);
  }
  return new InternalError(textOf(e), { cause: e });
}

function textOf(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
