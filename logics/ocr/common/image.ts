// Image pieces shared by the ocr app's Logics: the request's image and its bounds, the detection
// geometry of a quality level, and the bilinear resize that fills a model's planar input.
import { Fields } from "../../sdk";

/** Detection input sides (the quality levels of the `read` pipeline), smallest first. */
export const LEVELS: StaticArray<i32> = [160, 320, 480, 640, 960];
export const MAX_SIDE: i64 = 4096;
/** 8 MiB of RGBA: with the detection map it still fits one 16 MiB frame to the next stage. */
export const MAX_PIXELS: i64 = 2097152;

/** An RGBA image (row-major, 4 bytes a pixel, alpha ignored) and the detection side asked for. */
export class Image {
  constructor(
    public width: i32,
    public height: i32,
    public pixels: Uint8Array,
    public side: i32,
  ) {}
}

/** Reads `{ width, height, pixels, side }`, recording the first problem on `f` (fields named). */
export function readImage(f: Fields): Image {
  const width = f.int("width", 1, MAX_SIDE);
  const height = f.int("height", 1, MAX_SIDE);
  const pixels = f.bin("pixels");
  const side = f.int("side", 1, MAX_SIDE);
  if (!f.failed && width * height > MAX_PIXELS) {
    f.problem(
      f.what + ".width: width × height must be at most " + MAX_PIXELS.toString() +
        " pixels, got " + (width * height).toString(),
    );
  }
  if (!f.failed && i64(pixels.length) != width * height * 4) {
    f.problem(
      f.what + ".pixels: expected width × height × 4 = " + (width * height * 4).toString() +
        " bytes (RGBA), got " + pixels.length.toString(),
    );
  }
  if (!f.failed && !isLevel(i32(side))) {
    f.problem(f.what + ".side: must be one of " + levelList() + ", got " + side.toString());
  }
  return new Image(i32(width), i32(height), pixels, i32(side));
}

function isLevel(side: i32): bool {
  for (let i = 0; i < LEVELS.length; i++) if (LEVELS[i] == side) return true;
  return false;
}

function levelList(): string {
  let s = "";
  for (let i = 0; i < LEVELS.length; i++) s += (i > 0 ? ", " : "") + LEVELS[i].toString();
  return s;
}

/**
 * Where an image goes in the detector's input: scaled so its longer side is `side` (up or down),
 * `width × height` pixels at the top left of a `padW × padH` input (multiples of 32).
 */
export class Geometry {
  scaleX: f64;
  scaleY: f64;
  width: i32;
  height: i32;
  padW: i32;
  padH: i32;
  constructor(image: Image) {
    const scale = f64(image.side) / f64(max(image.width, image.height));
    this.width = max(1, i32(Math.round(f64(image.width) * scale)));
    this.height = max(1, i32(Math.round(f64(image.height) * scale)));
    this.padW = (this.width + 31) & ~31;
    this.padH = (this.height + 31) & ~31;
    this.scaleX = f64(this.width) / f64(image.width);
    this.scaleY = f64(this.height) / f64(image.height);
  }
}

/**
 * Samples the source rectangle (x, y, w, h in image pixels) of `image` bilinearly into the top
 * left `dstW × dstH` of a planar float32 [3, outH, outW] tensor, the rest left at `pad`. Planes
 * are B, G, R (PaddleOCR's models were trained on OpenCV's BGR images) and channel k of the
 * output is (v / 255 − mean[k]) / std[k], PaddleOCR's order of the constants.
 */
export function resizeInto(
  image: Image,
  x: f64,
  y: f64,
  w: f64,
  h: f64,
  dstW: i32,
  dstH: i32,
  outW: i32,
  outH: i32,
  mean: StaticArray<f32>,
  std: StaticArray<f32>,
  pad: f32,
): Float32Array {
  const plane = outW * outH;
  const out = new Float32Array(3 * plane);
  if (pad != 0) out.fill(pad);
  const px = image.pixels;
  const iw = image.width;
  const ih = image.height;
  const fx = w / f64(dstW);
  const fy = h / f64(dstH);
  // Per channel: v → v · a + b, with a = 1 / (255 std), b = −mean / std.
  const a0: f32 = 1 / (255 * std[0]);
  const a1: f32 = 1 / (255 * std[1]);
  const a2: f32 = 1 / (255 * std[2]);
  const b0: f32 = -mean[0] / std[0];
  const b1: f32 = -mean[1] / std[1];
  const b2: f32 = -mean[2] / std[2];
  for (let oy = 0; oy < dstH; oy++) {
    const sy = min(max(y + (f64(oy) + 0.5) * fy - 0.5, 0), f64(ih - 1));
    const y0 = i32(sy);
    const y1 = min(y0 + 1, ih - 1);
    const wy = f32(sy - f64(y0));
    for (let ox = 0; ox < dstW; ox++) {
      const sx = min(max(x + (f64(ox) + 0.5) * fx - 0.5, 0), f64(iw - 1));
      const x0 = i32(sx);
      const x1 = min(x0 + 1, iw - 1);
      const wx = f32(sx - f64(x0));
      const p00 = (y0 * iw + x0) << 2;
      const p01 = (y0 * iw + x1) << 2;
      const p10 = (y1 * iw + x0) << 2;
      const p11 = (y1 * iw + x1) << 2;
      const o = oy * outW + ox;
      // Plane 0 is blue (byte 2), plane 2 red (byte 0).
      unchecked((out[o] = lerp(px, p00 + 2, p01 + 2, p10 + 2, p11 + 2, wx, wy) * a0 + b0));
      unchecked((out[plane + o] = lerp(px, p00 + 1, p01 + 1, p10 + 1, p11 + 1, wx, wy) * a1 + b1));
      unchecked((out[2 * plane + o] = lerp(px, p00, p01, p10, p11, wx, wy) * a2 + b2));
    }
  }
  return out;
}

// @ts-ignore: decorator
@inline
function lerp(px: Uint8Array, i00: i32, i01: i32, i10: i32, i11: i32, wx: f32, wy: f32): f32 {
  const top = f32(unchecked(px[i00])) * (1 - wx) + f32(unchecked(px[i01])) * wx;
  const bottom = f32(unchecked(px[i10])) * (1 - wx) + f32(unchecked(px[i11])) * wx;
  return top * (1 - wy) + bottom * wy;
}
