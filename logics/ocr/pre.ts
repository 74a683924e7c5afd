// The ocr app's pre-processing Logic (service "pre"): an RGBA image → the text detector's input.
//
// prepare { width, height, pixels, side } → { inputs: { x: float32 [1, 3, H, W] }, width,
//   height, padW, padH }: the image resized (bilinear) so its longer side is `side`, at the top
//   left of an input padded to multiples of 32 (padding 0, the mean after normalisation),
//   normalised with ImageNet's mean and std in PaddleOCR's BGR plane order. `width`/`height` are
//   the resized image's size inside the padded `padW × padH`.
import { Request, Fields, Writer, done, error } from "../sdk";
import { Geometry, readImage, resizeInto } from "./common/image";
export { brume_alloc, brume_free } from "../sdk";

const MEAN: StaticArray<f32> = [0.485, 0.456, 0.406];
const STD: StaticArray<f32> = [0.229, 0.224, 0.225];

export function prepare(ptr: i32, len: i32): i32 {
  const f = new Fields(Request.read(ptr, len).input);
  const image = readImage(f);
  if (f.failed) return error(f.message, "E_INPUT");
  const g = new Geometry(image);
  const x = resizeInto(
    image,
    0,
    0,
    f64(image.width),
    f64(image.height),
    g.width,
    g.height,
    g.padW,
    g.padH,
    MEAN,
    STD,
    0,
  );
  const w = new Writer()
    .map(5)
    .key("inputs").map(1).key("x").tensor([1, 3, g.padH, g.padW], x)
    .key("width").int(g.width)
    .key("height").int(g.height)
    .key("padW").int(g.padW)
    .key("padH").int(g.padH);
  return done(w);
}
