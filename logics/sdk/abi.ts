// The guest side of the Logic ABI (PROTOCOL.md §3): allocator exports, request decoding and the
// result frames an RPC returns. Buffers the host sees come from heap.alloc, outside the GC.
import { Value, Writer, decodeAt, fail } from "./msgpack";

// @ts-ignore: decorator
@external("brume", "log")
declare function hostLog(ptr: usize, len: usize): void;

/** PROTOCOL.md §3.2. Re-export it from every Logic: `export { brume_alloc, brume_free } from "../sdk";` */
export function brume_alloc(len: i32): i32 {
  if (len < 0) fail("brume_alloc: negative length " + len.toString());
  return <i32>heap.alloc(<usize>len);
}

/** PROTOCOL.md §3.2: frees a request buffer or a result frame. */
export function brume_free(ptr: i32): void {
  if (ptr != 0) heap.free(<usize>ptr);
}

/** Writes `message` (UTF-8) to the node's log. */
export function log(message: string): void {
  const bytes = String.UTF8.encode(message);
  hostLog(changetype<usize>(bytes), <usize>bytes.byteLength);
}

/**
 * The request an RPC export received: its input, decoded.
 *
 *     export function classify(ptr: i32, len: i32): i32 {
 *       const req = Request.read(ptr, len);
 */
export class Request {
  constructor(
    /** The RPC's input: whatever the caller sent. */
    public readonly input: Value,
  ) {}

  /** Decodes the request the host wrote at `ptr` (the RPC export's two arguments). */
  static read(ptr: i32, len: i32): Request {
    if (len < 0) fail("Request.read: negative length " + len.toString());
    return new Request(decodeAt(<usize>ptr, <usize>len));
  }
}

/**
 * What a continuation export receives after a `call` (PROTOCOL.md §3.3):
 * the callee's `value` if `ok`, else `errorCode`/`errorMessage`, and the `state` given to `call`.
 */
export class Continuation {
  constructor(
    /** Whether the callee succeeded. */
    public readonly ok: bool,
    /** The callee's result (nil when not ok). */
    public readonly value: Value,
    /** The service that answered ("" when not ok). */
    public readonly service: string,
    /** The RPC or Model variant that answered, e.g. "small" ("" when not ok). */
    public readonly rpc: string,
    /** The callee's error code, e.g. "E_APP" ("" when ok). */
    public readonly errorCode: string,
    /** The callee's error message ("" when ok). */
    public readonly errorMessage: string,
    /** What `call` was given as state (nil if none). */
    public readonly state: Value,
    /** After `contextGet`: whether the key held a value (false: absent, deleted or expired). */
    public readonly found: bool = false,
    /** After `contextGet`: whether the key held a value that has expired. */
    public readonly expired: bool = false,
  ) {}

  /** Decodes the continuation request the host wrote at `ptr`. */
  static read(ptr: i32, len: i32): Continuation {
    if (len < 0) fail("Continuation.read: negative length " + len.toString());
    const m = decodeAt(<usize>ptr, <usize>len);
    if (!m.isMap()) fail("continuation: expected map, got " + m.kindName());
    const ok = m.get("ok").asBool();
    const state = orNil(m.find("state"));
    if (ok) {
      return new Continuation(
        true,
        orNil(m.find("value")),
        optString(m, "service"),
        optString(m, "rpc"),
        "",
        "",
        state,
        optBool(m, "found"),
        optBool(m, "expired"),
      );
    }
    let code = "";
    let message = "";
    const e = m.find("error");
    if (e != null && e.isMap()) {
      code = optString(e, "code");
      message = optString(e, "message");
    }
    if (message.length == 0) message = "the call failed (no message)";
    return new Continuation(
      false,
      Value.nil(),
      optString(m, "service"),
      optString(m, "rpc"),
      code,
      message,
      state,
    );
  }
}

/** Result: the RPC's value (nil if `value` is null). Return what it returns from the export. */
export function done(value: Writer | null = null): i32 {
  const f = new Writer().map(2).key("t").str("done").key("value");
  if (value != null) f.embed(value);
  else f.nil();
  return frame(f);
}

/**
 * Result: the application's own failure; the caller gets `code` (default, or if "": E_APP) and
 * `message`.
 */
export function error(message: string, code: string | null = null): i32 {
  const hasCode = code != null && code.length > 0;
  const f = new Writer()
    .map(hasCode ? 3 : 2)
    .key("t")
    .str("error")
    .key("message")
    .str(message);
  if (hasCode) f.key("code").str(code!);
  return frame(f);
}

/**
 * Result: call `service` of the same app with `payload`, then have the host invoke the export
 * named `continuation` with a `Continuation`. `rpc` "" lets the scheduler choose (a Model's
 * variant, a Logic's default RPC). Keep what the continuation needs in `state`, not in globals:
 * it may run on another instance.
 */
export function call(
  service: string,
  rpc: string,
  payload: Writer,
  continuation: string,
  state: Writer | null = null,
): i32 {
  const f = new Writer()
    .map(state != null ? 6 : 5)
    .key("t")
    .str("call")
    .key("service")
    .str(service)
    .key("rpc")
    .str(rpc)
    .key("payload")
    .embed(payload)
    .key("continuation")
    .str(continuation);
  if (state != null) f.key("state").embed(state);
  return frame(f);
}

/**
 * Result: read `key` of this app's context store (PROTOCOL.md §3.4), then have the host invoke
 * `continuation`: `.found` says whether there is a value, `.value` is it (nil if not), `.expired`
 * whether it expired. On a node that is online the read sees every write the relay had
 * acknowledged when the request began. `scope` "node": this node's own key. The scopes "project"
 * and "user" are the relay's, reached over HTTP only: a Logic runs on a node that is not told who
 * asked, so naming one continues with `ok: false` and `E_UNSUPPORTED` (PROTOCOL.md §5.5).
 */
export function contextGet(
  key: string,
  continuation: string,
  state: Writer | null = null,
  scope: string = "app",
): i32 {
  return frame(contextOp("get", key, scope, null, 0, continuation, state, null));
}

/**
 * Result: write `value` under `key` (expiring after `ttlMs` if > 0), then invoke `continuation`
 * (`.ok` false with `.errorCode` E_LIMIT if the value is too large). Online, the continuation runs
 * once the relay has acknowledged the write, so the next request sees it on any node. `privacy`:
 * `["device"]` keeps it on this node; identity public keys seal it for those nodes (and this one).
 */
export function contextPut(
  key: string,
  value: Writer,
  continuation: string,
  state: Writer | null = null,
  ttlMs: i64 = 0,
  scope: string = "app",
  privacy: string[] | null = null,
): i32 {
  const f = contextOp("put", key, scope, value, ttlMs, continuation, state, privacy);
  return frame(f);
}

/** Result: delete `key`, then invoke `continuation`. */
export function contextDelete(
  key: string,
  continuation: string,
  state: Writer | null = null,
  scope: string = "app",
): i32 {
  return frame(contextOp("delete", key, scope, null, 0, continuation, state, null));
}

function contextOp(
  op: string,
  key: string,
  scope: string,
  value: Writer | null,
  ttlMs: i64,
  continuation: string,
  state: Writer | null,
  privacy: string[] | null,
): Writer {
  const n =
    5 +
    (value != null ? 1 : 0) +
    (ttlMs > 0 ? 1 : 0) +
    (state != null ? 1 : 0) +
    (privacy != null ? 1 : 0);
  const f = new Writer()
    .map(n)
    .key("t")
    .str("ctx")
    .key("op")
    .str(op)
    .key("key")
    .str(key)
    .key("scope")
    .str(scope)
    .key("continuation")
    .str(continuation);
  if (value != null) f.key("value").embed(value);
  if (ttlMs > 0) f.key("ttlMs").int(ttlMs);
  if (state != null) f.key("state").embed(state);
  if (privacy != null) {
    f.key("privacy").array(privacy.length);
    for (let i = 0; i < privacy.length; i++) f.str(privacy[i]);
  }
  return f;
}

// A result frame: u32 little-endian length, then the bytes; the host frees it with brume_free.
function frame(w: Writer): i32 {
  w.mustBeComplete("result");
  const n = w.length;
  const p = heap.alloc(4 + <usize>n);
  store<u32>(p, <u32>n);
  w.copyTo(p + 4);
  return <i32>p;
}

function orNil(v: Value | null): Value {
  return v != null ? v : Value.nil();
}

function optBool(m: Value, key: string): bool {
  const v = m.find(key);
  return v != null && v.isBool() ? v.asBool() : false;
}

function optString(m: Value, key: string): string {
  const v = m.find(key);
  return v != null && v.isString() ? v.asString() : "";
}
