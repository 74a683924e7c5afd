// The top3 app's Logic: ranks the three likeliest digits of a framed 28×28 image with the digits
// app's model, which it uses (manifest `uses`) instead of shipping a copy. RPC: rank (→
// digits/model → onProbs).
import { Request, Continuation, Fields, Writer, done, error, call } from "../sdk";
export { brume_alloc, brume_free } from "../sdk";

const PIXELS: i32 = 28 * 28;

/**
 * `{ pixels }`: 784 grayscale bytes, a digit framed as MNIST frames it (the digits app's
 * `preprocess` gives such a frame) → calls `digits/model` with float32 [1, 784] in [0, 1].
 */
export function rank(ptr: i32, len: i32): i32 {
  const f = new Fields(Request.read(ptr, len).input);
  const pixels = f.bin("pixels");
  if (!f.failed && pixels.length != PIXELS) {
    f.problem("input.pixels: expected 784 bytes (28 × 28), got " + pixels.length.toString());
  }
  if (f.failed) return error(f.message);
  const image = new Float32Array(PIXELS);
  for (let i = 0; i < PIXELS; i++) image[i] = <f32>pixels[i] / 255;
  const payload = new Writer().map(1).key("inputs").map(1).key("pixels").tensor([1, PIXELS], image);
  return call("digits/model", "", payload, "onProbs");
}

/** Continuation of `rank`: `{ top: [{ digit, p }] × 3, variant }`, likeliest first. */
export function onProbs(ptr: i32, len: i32): i32 {
  const c = Continuation.read(ptr, len);
  if (!c.ok) return error("digits/model failed: " + c.errorMessage, c.errorCode);
  const result = new Fields(c.value, "model result");
  const probs = result.map("outputs").tensor("probs");
  if (!result.failed && (probs.type != "float32" || probs.size != 10)) {
    result.problem("model result.outputs.probs: expected 10 float32 values");
  }
  if (result.failed) return error(result.message);
  const p = probs.f32();
  const taken = new StaticArray<bool>(10);
  const w = new Writer().map(2).key("top").array(3);
  for (let k = 0; k < 3; k++) {
    let best = -1;
    for (let i = 0; i < 10; i++) if (!taken[i] && (best < 0 || p[i] > p[best])) best = i;
    taken[best] = true;
    w.map(2).key("digit").int(best).key("p").float(p[best]);
  }
  return done(w.key("variant").str(c.rpc));
}
