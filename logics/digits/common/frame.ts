// MNIST's framing of a drawn digit, shared by the digits and digits-ee Logics.
import { Fields } from "../../sdk";

/** The model's input is a SIDE×SIDE image... */
export const SIDE: i32 = 28;
/** ...with the digit scaled to fit BOX×BOX, its centre of mass at (CENTRE, CENTRE). */
const BOX: i32 = 20;
const CENTRE: f64 = 14;
/** Largest canvas side accepted. */
const MAX_SIDE: i64 = 4096;

/**
 * Validates `{ width, height, pixels }` and frames its digit (SIDE×SIDE values in [0, 1]); on a
 * problem, records it in `f` (check f.failed).
 */
export function digitImage(f: Fields): Float32Array {
  const width = <i32>f.int("width", 1, MAX_SIDE);
  const height = <i32>f.int("height", 1, MAX_SIDE);
  const pixels = f.bin("pixels");
  if (!f.failed && pixels.length != width * height) {
    f.problem(
      "input.pixels: expected " +
        (width * height).toString() +
        " bytes (width × height = " +
        width.toString() +
        " × " +
        height.toString() +
        "), got " +
        pixels.length.toString(),
    );
  }
  if (f.failed) return new Float32Array(0);
  const image = frameDigit(pixels, width, height);
  if (image == null) {
    f.problem("no ink: the image is blank (every pixel is 0)");
    return new Float32Array(0);
  }
  return image;
}

/**
 * MNIST's framing (LeCun et al.): the ink's bounding box is scaled to fit BOX×BOX, keeping its
 * aspect ratio, by area averaging (which anti-aliases); then it is placed in a SIDE×SIDE frame
 * so that its centre of mass falls on the centre. Values are in [0, 1], the darkest pixel at 1
 * (every MNIST digit reaches at least 0.9; a thin or grey pen would otherwise look faint).
 * Returns null when there is no ink.
 */
function frameDigit(pixels: Uint8Array, width: i32, height: i32): Float32Array | null {
  // 1. The ink's bounding box.
  let x0 = width;
  let x1 = -1;
  let y0 = height;
  let y1 = -1;
  for (let y = 0; y < height; y++) {
    const row = y * width;
    let first = -1;
    let last = -1;
    for (let x = 0; x < width; x++) {
      if (unchecked(pixels[row + x]) > 0) {
        if (first < 0) first = x;
        last = x;
      }
    }
    if (first >= 0) {
      if (first < x0) x0 = first;
      if (last > x1) x1 = last;
      if (y0 == height) y0 = y;
      y1 = y;
    }
  }
  if (x1 < 0) return null;
  const bw = x1 - x0 + 1;
  const bh = y1 - y0 + 1;

  // 2. Its size once scaled so that the longer side is BOX.
  const scale = <f64>BOX / <f64>max(bw, bh);
  const tw = clampI32(<i32>Math.round(<f64>bw * scale), 1, BOX);
  const th = clampI32(<i32>Math.round(<f64>bh * scale), 1, BOX);

  // 3. Area averaging, separably: rows first (bh × tw), then columns (th × tw).
  const sx = <f64>bw / <f64>tw; // source pixels per target pixel
  const sy = <f64>bh / <f64>th;
  const rows = new Float64Array(bh * tw);
  for (let y = 0; y < bh; y++) {
    const src = (y0 + y) * width + x0;
    for (let tx = 0; tx < tw; tx++) {
      const a = <f64>tx * sx;
      const b = a + sx;
      let sum: f64 = 0;
      const last = min(<i32>Math.ceil(b), bw);
      for (let i = <i32>Math.floor(a); i < last; i++) {
        const w = Math.min(b, <f64>(i + 1)) - Math.max(a, <f64>i);
        sum += w * <f64>unchecked(pixels[src + i]);
      }
      unchecked((rows[y * tw + tx] = sum));
    }
  }
  const box = new Float64Array(th * tw);
  let peak: f64 = 0;
  for (let ty = 0; ty < th; ty++) {
    const a = <f64>ty * sy;
    const b = a + sy;
    const last = min(<i32>Math.ceil(b), bh);
    for (let tx = 0; tx < tw; tx++) {
      let sum: f64 = 0;
      for (let j = <i32>Math.floor(a); j < last; j++) {
        const w = Math.min(b, <f64>(j + 1)) - Math.max(a, <f64>j);
        sum += w * unchecked(rows[j * tw + tx]);
      }
      const v = sum / (sx * sy * 255.0);
      unchecked((box[ty * tw + tx] = v));
      if (v > peak) peak = v;
    }
  }

  // 4. Centre of mass (pixel-index coordinates, as MNIST's own average of (14.0, 14.0) uses).
  let mass: f64 = 0;
  let mx: f64 = 0;
  let my: f64 = 0;
  for (let ty = 0; ty < th; ty++) {
    for (let tx = 0; tx < tw; tx++) {
      const v = unchecked(box[ty * tw + tx]);
      mass += v;
      mx += v * <f64>tx;
      my += v * <f64>ty;
    }
  }
  // Whole-pixel shifts keep the strokes sharp; the clamps keep the box inside the frame.
  const ox = clampI32(<i32>Math.round(CENTRE - mx / mass), 0, SIDE - tw);
  const oy = clampI32(<i32>Math.round(CENTRE - my / mass), 0, SIDE - th);

  const out = new Float32Array(SIDE * SIDE);
  const gain = 1.0 / peak;
  for (let ty = 0; ty < th; ty++) {
    for (let tx = 0; tx < tw; tx++) {
      const v = Math.min(1.0, unchecked(box[ty * tw + tx]) * gain);
      unchecked((out[(oy + ty) * SIDE + ox + tx] = <f32>v));
    }
  }
  return out;
}

function clampI32(v: i32, lo: i32, hi: i32): i32 {
  return v < lo ? lo : v > hi ? hi : v;
}
