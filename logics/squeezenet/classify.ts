// The squeezenet app's Logic: turns an RGBA image into SqueezeNet's 1×3×224×224 input (centre
// crop, bilinear resize, ImageNet normalization) and asks the "model" service for the classes.
// The model's weights are RANDOM (models/squeezenet/README.md): the app exists to measure the
// overhead around a model of realistic size, and its answers mean nothing.
// RPCs: classify (→ model → onModel) and preprocess (the tensor alone).
import { Request, Continuation, Fields, Writer, done, error, call } from "../sdk";
export { brume_alloc, brume_free } from "../sdk";

/** The model's input is SIDE×SIDE, three planes (R, G, B). */
const SIDE: i32 = 224;
const CLASSES: i32 = 1000;
/** The crop is the centre square of side CROP × the image's shorter side (224 of 256, as ImageNet's evaluation). */
const CROP: f64 = 0.875;
/** Largest image side accepted. */
const MAX_SIDE: i64 = 4096;
/** How many classes an answer lists. */
const TOP: i32 = 5;
/** ImageNet's per-channel mean and standard deviation (of values in [0, 1]). */
const MEAN: StaticArray<f32> = [0.485, 0.456, 0.406];
const STD: StaticArray<f32> = [0.229, 0.224, 0.225];

/**
 * `{ width, height, pixels }` (pixels: width×height×4 RGBA bytes, row-major; alpha ignored)
 * → calls "model" with `{ inputs: { data: float32 [1, 3, 224, 224] } }`, continues in `onModel`.
 */
export function classify(ptr: i32, len: i32): i32 {
  const f = new Fields(Request.read(ptr, len).input);
  const data = imageTensor(f);
  if (f.failed) return error(f.message);
  const payload = new Writer().map(1).key("inputs").map(1).key("data").tensor([1, 3, SIDE, SIDE], data);
  return call("model", "", payload, "onModel");
}

/** Continuation of `classify`: `{ top: [{ class, p }…5], variant, weights: "random" }`. */
export function onModel(ptr: i32, len: i32): i32 {
  const c = Continuation.read(ptr, len);
  if (!c.ok) return error("the model failed: " + c.errorMessage, c.errorCode);
  const result = new Fields(c.value, "model result");
  const probs = result.map("outputs").tensor("probs");
  if (!result.failed && probs.type != "float32") {
    result.problem("model result.outputs.probs: expected float32, got " + probs.type);
  }
  if (!result.failed && probs.size != CLASSES) {
    result.problem("model result.outputs.probs: expected 1000 values, got " + probs.size.toString());
  }
  if (result.failed) return error(result.message);
  const p = probs.f32();
  // Top TOP by selection: TOP passes over 1,000 values cost less than a sort.
  const taken = new StaticArray<bool>(CLASSES);
  const w = new Writer().map(3).key("top").array(TOP);
  for (let k = 0; k < TOP; k++) {
    let best = -1;
    for (let i = 0; i < CLASSES; i++) {
      if (!unchecked(taken[i]) && (best < 0 || unchecked(p[i]) > unchecked(p[best]))) best = i;
    }
    unchecked((taken[best] = true));
    w.map(2).key("class").int(best).key("p").float(p[best]);
  }
  return done(w.key("variant").str(c.rpc).key("weights").str("random"));
}

/** Same input as `classify`; returns `{ data: <bin of 3×224×224 little-endian f32> }`, the tensor alone. */
export function preprocess(ptr: i32, len: i32): i32 {
  const f = new Fields(Request.read(ptr, len).input);
  const data = imageTensor(f);
  if (f.failed) return error(f.message);
  const bytes = Uint8Array.wrap(data.buffer, data.byteOffset, data.byteLength);
  return done(new Writer().map(1).key("data").bin(bytes));
}

// Validates the input and makes the model's tensor; on a problem, records it in `f`.
function imageTensor(f: Fields): Float32Array {
  const width = <i32>f.int("width", 1, MAX_SIDE);
  const height = <i32>f.int("height", 1, MAX_SIDE);
  const pixels = f.bin("pixels");
  if (!f.failed && <i64>pixels.length != <i64>width * <i64>height * 4) {
    f.problem(
      "input.pixels: expected " +
        (<i64>width * <i64>height * 4).toString() +
        " bytes (width × height × 4, RGBA = " +
        width.toString() +
        " × " +
        height.toString() +
        " × 4), got " +
        pixels.length.toString(),
    );
  }
  if (f.failed) return new Float32Array(0);
  return resizeNormalize(pixels, width, height);
}

/**
 * The centre square (CROP of the shorter side) sampled bilinearly at SIDE×SIDE pixel centres,
 * each channel as (v / 255 − mean) / std, in planar order (all R, then G, then B).
 */
function resizeNormalize(pixels: Uint8Array, width: i32, height: i32): Float32Array {
  const crop = <f64>min(width, height) * CROP;
  const step = crop / <f64>SIDE; // source pixels per target pixel
  const x0 = (<f64>width - crop) / 2;
  const y0 = (<f64>height - crop) / 2;
  const plane = SIDE * SIDE;
  const out = new Float32Array(3 * plane);
  const scale = new StaticArray<f32>(3);
  const shift = new StaticArray<f32>(3);
  for (let c = 0; c < 3; c++) {
    unchecked((scale[c] = <f32>1 / (<f32>255 * STD[c])));
    unchecked((shift[c] = -MEAN[c] / STD[c]));
  }
  for (let ty = 0; ty < SIDE; ty++) {
    // Source coordinates of the target pixel's centre, in pixel-centre units.
    const sy = y0 + (<f64>ty + 0.5) * step - 0.5;
    const ya = clampI32(<i32>Math.floor(sy), 0, height - 1);
    const yb = min(ya + 1, height - 1);
    const fy = <f32>Math.max(0, Math.min(1, sy - <f64>ya));
    for (let tx = 0; tx < SIDE; tx++) {
      const sx = x0 + (<f64>tx + 0.5) * step - 0.5;
      const xa = clampI32(<i32>Math.floor(sx), 0, width - 1);
      const xb = min(xa + 1, width - 1);
      const fx = <f32>Math.max(0, Math.min(1, sx - <f64>xa));
      const p00 = (ya * width + xa) * 4;
      const p01 = (ya * width + xb) * 4;
      const p10 = (yb * width + xa) * 4;
      const p11 = (yb * width + xb) * 4;
      const o = ty * SIDE + tx;
      for (let c = 0; c < 3; c++) {
        const top = <f32>unchecked(pixels[p00 + c]) * (1 - fx) + <f32>unchecked(pixels[p01 + c]) * fx;
        const bottom = <f32>unchecked(pixels[p10 + c]) * (1 - fx) + <f32>unchecked(pixels[p11 + c]) * fx;
        const v = top * (1 - fy) + bottom * fy;
        unchecked((out[c * plane + o] = v * unchecked(scale[c]) + unchecked(shift[c])));
      }
    }
  }
  return out;
}

function clampI32(v: i32, lo: i32, hi: i32): i32 {
  return v < lo ? lo : v > hi ? hi : v;
}
