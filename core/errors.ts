/**
 * Every failure Brume reports is a BrumeError with a stable `code`, so callers branch on codes,
 * never on message text. Messages say what happened and what to do about it.
 */
export class BrumeError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
  /** The shape an error takes when it crosses a worker or network boundary. */
  toJSON(): SerializedError {
    return { name: this.name, code: this.code, message: this.message };
  }
}

export interface SerializedError {
  name: string;
  code: string;
  message: string;
}

/** A manifest that does not follow PROTOCOL.md §2. */
export class ManifestError extends BrumeError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('E_MANIFEST', message, options);
  }
}
/** A bundle file that is missing, unlisted, or does not match its sha256. */
export class BundleIntegrityError extends BrumeError {
  readonly file: string;
  constructor(file: string, message: string) {
    super('E_INTEGRITY', message);
    this.file = file;
  }
}
/** Bytes from the network or a guest that are not valid MessagePack or exceed a limit. */
export class CodecError extends BrumeError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('E_CODEC', message, options);
  }
}
/** A Logic module that cannot be compiled or instantiated, or breaks the ABI. */
export class LogicLoadError extends BrumeError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('E_LOGIC_LOAD', message, options);
  }
}
/** A Logic that trapped, aborted, or returned something the ABI does not allow. */
export class LogicFault extends BrumeError {
  constructor(message: string, options?: { cause?: unknown }) {
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
  constructor(message: string, options?: { cause?: unknown }) {
    super('E_LOGIC_MEMORY', message, options);
  }
}
/** A Logic returned `error(...)`: the application's own failure, passed through to the caller. */
export class AppError extends BrumeError {
  constructor(message: string, code = 'E_APP') {
    super(code, message);
  }
}
/** A model file that onnxruntime cannot load on any backend. */
export class ModelLoadError extends BrumeError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('E_MODEL_LOAD', message, options);
  }
}
/** A model that loaded but failed to run, or was given input that does not fit it. */
export class ModelRunError extends BrumeError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('E_MODEL_RUN', message, options);
  }
}
/** An app, service or rpc that this node does not know. */
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
/** No variant or node can satisfy the requested QoS; `best` says what was achievable. */
export class QosError extends BrumeError {
  readonly constraint: 'latencyMs' | 'accuracy' | 'privacy';
  readonly best: number | string | undefined;
  constructor(
    constraint: 'latencyMs' | 'accuracy' | 'privacy',
    best: number | string | undefined,
    message: string,
  ) {
    super('E_QOS', message);
    this.constraint = constraint;
    this.best = best;
  }
}
/** A call that got no answer in time. */
export class TimeoutError extends BrumeError {
  constructor(message: string) {
    super('E_TIMEOUT', message);
  }
}
/** A request with no credential, or one the relay does not know: HTTP 401. */
export class AuthError extends BrumeError {
  constructor(message: string) {
    super('E_AUTH', message);
  }
}
/** A credential the relay knows, without the scope the request needs: HTTP 403. */
export class ForbiddenError extends BrumeError {
  constructor(message: string) {
    super('E_FORBIDDEN', message);
  }
}
/** A caller over its rate limit: HTTP 429 with Retry-After. */
export class RateLimitError extends BrumeError {
  constructor(message: string) {
    super('E_RATE', message);
  }
}
/** A request whose Host header is not one of the relay's names (DNS rebinding): HTTP 421. */
export class HostError extends BrumeError {
  constructor(message: string) {
    super('E_HOST', message);
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
  constructor(message: string, options?: { cause?: unknown }) {
    super('E_INTERNAL', message, options);
  }
}

const byCode: Record<string, new (message: string) => BrumeError> = {
  E_MANIFEST: ManifestError,
  E_CODEC: CodecError,
  E_LOGIC_LOAD: LogicLoadError,
  E_LOGIC_FAULT: LogicFault,
  E_LOGIC_TIMEOUT: LogicTimeoutError,
  E_LOGIC_MEMORY: LogicMemoryError,
  E_MODEL_LOAD: ModelLoadError,
  E_MODEL_RUN: ModelRunError,
  E_NOT_FOUND: NotFoundError,
  E_INPUT: InputError,
  E_CONFLICT: ConflictError,
  E_TIMEOUT: TimeoutError,
  E_AUTH: AuthError,
  E_FORBIDDEN: ForbiddenError,
  E_RATE: RateLimitError,
  E_HOST: HostError,
  E_VERIFY: VerifyError,
  E_INTERNAL: InternalError,
};

/** Rebuilds an error that crossed a boundary as its named class (comlink, WebSocket, HTTP). */
export function reviveError(e: unknown): BrumeError {
  if (e instanceof BrumeError) return e;
  const s = e as Partial<SerializedError> | undefined;
  if (s && typeof s.code === 'string' && typeof s.message === 'string') {
    const Cls = byCode[s.code];
    if (Cls) return new Cls(s.message);
    if (s.code === 'E_INTEGRITY') return new BundleIntegrityError('', s.message);
    return new AppError(s.message, s.code);
  }
  const message = e instanceof Error ? e.message : String(e);
  return new InternalError(message, { cause: e });
}

/** Turns any thrown value into the plain shape that can cross a boundary. */
export function serializeError(e: unknown): SerializedError {
  if (e instanceof BrumeError) return e.toJSON();
  const message = e instanceof Error ? e.message : String(e);
  return { name: 'InternalError', code: 'E_INTERNAL', message };
}
