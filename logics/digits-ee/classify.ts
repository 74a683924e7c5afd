// The digits-ee app's Logics: an early-exit network split across tiers (PROTOCOL.md §2.1 `tiers`,
// `exit`). One module, three services:
// - classify (rpc classify, where the request is): frames the digit as digits does, runs model
//   "dew"; its exit head taken → exit 1, else the dew's features go up to "fog-step".
// - fog-step (rpc fogStep; tiers fog, cloud): runs model "fog" on the features → exit 2, or sends
//   the fog's features (its output `features_out`) up to "cloud-step".
// - cloud-step (rpc cloudStep; tiers cloud): runs model "cloud" on the features → exit 3.
// Every answer is { digit, confidence, exit, bytesUp }: bytesUp counts the feature bytes sent up
// between tiers for this request (0 when it left at exit 1).
import { Request, Continuation, Fields, Value, Writer, done, error, call } from "../sdk";
import { SIDE, digitImage } from "../digits/common/frame";
export { brume_alloc, brume_free } from "../sdk";

/** The number of classes of every exit. */
const CLASSES: i32 = 10;

/**
 * `{ width, height, pixels, exits?: { dew?: {rule?, threshold?, off?}, fog?: {...} } }` → runs
 * model "dew" with `exits.dew` as its exit override (the host checks it), continues in `onDew`.
 */
export function classify(ptr: i32, len: i32): i32 {
  const f = new Fields(Request.read(ptr, len).input);
  const image = digitImage(f);
  const exits = overrides(f);
  if (f.failed) return error(f.message);
  const dew = exits.has("dew") ? exits.value("dew") : Value.nil();
  const fog = exits.has("fog") ? exits.value("fog") : Value.nil();
  const payload = new Writer().map(dew.isNil() ? 1 : 2);
  payload.key("inputs").map(1).key("pixels").tensor([1, SIDE * SIDE], image);
  if (!dew.isNil()) payload.key("exit").value(dew);
  // The fog's override travels in the state, to the call up if there is one.
  const state = new Writer().map(1).key("fog").value(fog);
  return call("dew", "", payload, "onDew", state);
}

/** Continuation of `classify`: exit 1, or the dew's features up to fog-step. */
export function onDew(ptr: i32, len: i32): i32 {
  const c = Continuation.read(ptr, len);
  if (!c.ok) return error("the dew model failed: " + c.errorMessage, c.errorCode);
  const r = new Fields(c.value, "dew result");
  const probs = probsOf(r);
  const taken = r.map("exit").bool("taken");
  const features = r.map("outputs").tensor("features");
  if (!r.failed && features.type != "float32") {
    r.problem("dew result.outputs.features: expected float32, got " + features.type);
  }
  if (r.failed) return error(r.message);
  if (taken) return answer(probs, 1, 0);
  const fog = c.state.isMap() ? c.state.get("fog") : Value.nil();
  const payload = new Writer().map(fog.isNil() ? 1 : 2);
  payload.key("features").value(r.map("outputs").value("features"));
  if (!fog.isNil()) payload.key("exit").value(fog);
  const state = new Writer().map(1).key("up").int(features.data.length);
  return call("fog-step", "", payload, "onUp", state);
}

/**
 * fog-step: `{ features: float32 tensor (the dew's), exit?: {...} }` → runs model "fog",
 * continues in `onFog`.
 */
export function fogStep(ptr: i32, len: i32): i32 {
  const f = new Fields(Request.read(ptr, len).input);
  const features = f.value("features");
  f.tensor("features"); // checks its shape
  const exit = f.has("exit") ? f.value("exit") : Value.nil();
  if (f.failed) return error(f.message);
  const payload = new Writer().map(exit.isNil() ? 1 : 2);
  payload.key("inputs").map(1).key("features").value(features);
  if (!exit.isNil()) payload.key("exit").value(exit);
  return call("fog", "", payload, "onFog");
}

/** Continuation of fog-step: exit 2, or the fog's features up to cloud-step. */
export function onFog(ptr: i32, len: i32): i32 {
  const c = Continuation.read(ptr, len);
  if (!c.ok) return error("the fog model failed: " + c.errorMessage, c.errorCode);
  const r = new Fields(c.value, "fog result");
  const probs = probsOf(r);
  const taken = r.map("exit").bool("taken");
  const features = r.map("outputs").tensor("features_out");
  if (r.failed) return error(r.message);
  if (taken) return answer(probs, 2, 0);
  const payload = new Writer().map(1).key("features").value(r.map("outputs").value("features_out"));
  const state = new Writer().map(1).key("up").int(features.data.length);
  return call("cloud-step", "", payload, "onUp", state);
}

/** cloud-step: `{ features: float32 tensor (the fog's) }` → runs model "cloud" → exit 3. */
export function cloudStep(ptr: i32, len: i32): i32 {
  const f = new Fields(Request.read(ptr, len).input);
  const features = f.value("features");
  f.tensor("features");
  if (f.failed) return error(f.message);
  const payload = new Writer().map(1).key("inputs").map(1).key("features").value(features);
  return call("cloud", "", payload, "onCloud");
}

/** Continuation of cloud-step: the last exit. */
export function onCloud(ptr: i32, len: i32): i32 {
  const c = Continuation.read(ptr, len);
  if (!c.ok) return error("the cloud model failed: " + c.errorMessage, c.errorCode);
  const r = new Fields(c.value, "cloud result");
  const probs = probsOf(r);
  if (r.failed) return error(r.message);
  return answer(probs, 3, 0);
}

/** Continuation of a call up a tier: its answer, with the bytes this tier sent up added. */
export function onUp(ptr: i32, len: i32): i32 {
  const c = Continuation.read(ptr, len);
  if (!c.ok) return error(c.service + " failed: " + c.errorMessage, c.errorCode);
  const r = new Fields(c.value, "answer from up");
  const digit = r.int("digit", 0, CLASSES - 1);
  const confidence = r.float("confidence");
  const exit = r.int("exit", 1, 3);
  const above = r.int("bytesUp", 0, i32.MAX_VALUE);
  if (r.failed) return error(r.message);
  const up = c.state.isMap() ? c.state.get("up").asInt() : 0;
  return done(
    new Writer()
      .map(4)
      .key("digit")
      .int(digit)
      .key("confidence")
      .float(confidence)
      .key("exit")
      .int(exit)
      .key("bytesUp")
      .int(up + above),
  );
}

/** `exits`, when given: a map of at most `dew` and `fog`, each a map (the host checks inside). */
function overrides(f: Fields): Fields {
  if (!f.has("exits")) return new Fields(Value.fromMap([], []), "input.exits");
  const exits = f.map("exits");
  if (f.failed) return exits;
  const keys = exits.raw.keys();
  for (let i = 0; i < keys.length; i++) {
    const k = keys[i];
    if (k != "dew" && k != "fog") {
      f.problem("input.exits." + k + ": not an exit that can be overridden (dew, fog)");
    } else if (!exits.raw.get(k).isMap()) {
      f.problem("input.exits." + k + ": expected map, got " + exits.raw.get(k).kindName());
    }
  }
  return exits;
}

/** The model result's `outputs.probs`, CLASSES float32 values (a problem recorded otherwise). */
function probsOf(r: Fields): Float32Array {
  const probs = r.map("outputs").tensor("probs");
  if (!r.failed && probs.type != "float32") {
    r.problem(r.what + ".outputs.probs: expected float32, got " + probs.type);
  }
  if (!r.failed && probs.size != CLASSES) {
    r.problem(
      r.what + ".outputs.probs: expected " + CLASSES.toString() + " values, got " + probs.size.toString(),
    );
  }
  return r.failed ? new Float32Array(0) : probs.f32();
}

/** `{ digit, confidence, exit, bytesUp }` from an exit's probabilities. */
function answer(p: Float32Array, exit: i32, bytesUp: i32): i32 {
  let best = 0;
  for (let i = 1; i < p.length; i++) if (p[i] > p[best]) best = i;
  return done(
    new Writer()
      .map(4)
      .key("digit")
      .int(best)
      .key("confidence")
      .float(p[best])
      .key("exit")
      .int(exit)
      .key("bytesUp")
      .int(bytesUp),
  );
}
