// The digits app's Logic: frames a drawn digit the way MNIST was framed, then asks the "model"
// service which digit it is. RPCs: classify (→ model → onModel) and preprocess (framing alone).
import { Request, Continuation, Fields, Writer, done, error, call } from "../sdk";
import { SIDE, digitImage } from "./common/frame";
export { brume_alloc, brume_free } from "../sdk";

/**
 * `{ width, height, pixels }` (pixels: width×height grayscale bytes, row-major, 0 = background)
 * → calls "model" with `{ inputs: { pixels: float32 [1, 784] } }`, continues in `onModel`.
 */
export function classify(ptr: i32, len: i32): i32 {
  const f = new Fields(Request.read(ptr, len).input);
  const image = digitImage(f);
  if (f.failed) return error(f.message);
  const payload = new Writer().map(1).key("inputs").map(1).key("pixels").tensor([1, SIDE * SIDE], image);
  return call("model", "", payload, "onModel");
}

/** Continuation of `classify`: `{ digit, confidence, variant }` from the model's `probs`. */
export function onModel(ptr: i32, len: i32): i32 {
  const c = Continuation.read(ptr, len);
  if (!c.ok) {
    return error("the model failed: " + c.errorMessage, c.errorCode);
  }
  const result = new Fields(c.value, "model result");
  const probs = result.map("outputs").tensor("probs");
  if (!result.failed && probs.type != "float32") {
    result.problem("model result.outputs.probs: expected float32, got " + probs.type);
  }
  if (!result.failed && probs.size != 10) {
    result.problem("model result.outputs.probs: expected 10 values, got " + probs.size.toString());
  }
  if (result.failed) return error(result.message);
  const p = probs.f32();
  let best = 0;
  for (let i = 1; i < p.length; i++) if (p[i] > p[best]) best = i;
  const answer = new Writer()
    .map(3)
    .key("digit")
    .int(best)
    .key("confidence")
    .float(p[best])
    .key("variant")
    .str(c.rpc);
  return done(answer);
}

/** Same input as `classify`; returns `{ pixels: <bin of 784 little-endian f32> }`, the framing alone. */
export function preprocess(ptr: i32, len: i32): i32 {
  const f = new Fields(Request.read(ptr, len).input);
  const image = digitImage(f);
  if (f.failed) return error(f.message);
  const bytes = Uint8Array.wrap(image.buffer, image.byteOffset, image.byteLength);
  return done(new Writer().map(1).key("pixels").bin(bytes));
}
