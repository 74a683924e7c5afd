// The ocr app's post-processing Logic (service "post"), the stages of the `read` pipeline after
// detection (the `read` pipeline of logics/ocr/brume.json):
//
// boxes     { input: <the request>, detect: <det's answer> } → text regions of the probability
//           map, unclipped, scaled back to the image → { lines: [{ inputs: { x: float32
//           [1, 3, 48, W] }, box }], boxes: [box…], dropped }, each line cropped from the RGBA
//           image and resized to the recognizer's height 48 (W ≤ 960, at least 320, padded);
//           at most 24 lines (24 × 553 KB fits one 16 MiB frame to a node that recognizes).
// recognize { inputs: { x }, box } (one element of `lines`) → calls "rec" → onRec → CTC decode
//           → { text, confidence, box }
// join      [ { text, confidence, box } … ] (recognize's list: what the read pipeline passes), or
//           { boxes: <boxes' answer>, recognize: [ { text, confidence } or a rec answer
//           { outputs } … ] } (for a pipeline whose recognize stage is the rec model itself)
//           → { lines: [{ text, confidence, box }] } in reading order, lines with no text or a
//           confidence under 0.5 (PaddleOCR's drop_score) left out.
// A box is [x0, y0, x1, y1] in image pixels, x1 and y1 exclusive.
import { Request, Continuation, Fields, Tensor, Value, Writer, done, error, call } from "../sdk";
import { Geometry, readImage, resizeInto } from "./common/image";
import { Box, Regions } from "./common/regions";
import { CLASSES, decode } from "./common/ctc";
export { brume_alloc, brume_free } from "../sdk";

/** The detector's and the recognizer's output names in the ONNX files. */
const DET_OUT = "sigmoid_0.tmp_0";
const REC_OUT = "softmax_11.tmp_0";
/** Lines one request reads; beyond this (raster order of their top) they are dropped and counted. */
export const MAX_LINES: i32 = 24;
const LINE_H: i32 = 48;
const MIN_LINE_W: i32 = 320;
const MAX_LINE_W: i32 = 960;
/** The recognizer emits one step per 8 input columns. */
const STEP_W: i32 = 8;
const DROP_SCORE: f64 = 0.5;
const HALF: StaticArray<f32> = [0.5, 0.5, 0.5];

export function boxes(ptr: i32, len: i32): i32 {
  const f = new Fields(Request.read(ptr, len).input);
  const image = readImage(f.map("input"));
  const map = f.map("detect").map("outputs").tensor(DET_OUT);
  if (f.failed) return error(f.message, "E_INPUT");
  const g = new Geometry(image);
  const dims = map.dims;
  if (map.type != "float32" || dims.length != 4 || dims[0] != 1 || dims[1] != 1 ||
      dims[2] != i64(g.padH) || dims[3] != i64(g.padW)) {
    return error(
      "input.detect.outputs." + DET_OUT + ": expected float32 [1, 1, " + g.padH.toString() +
        ", " + g.padW.toString() + "] for this image at side " + image.side.toString() +
        ", got " + map.type + " [" + dims.join(", ") + "]",
      "E_INPUT",
    );
  }
  const regions = new Regions(map.f32(), g.padW, g.width, g.height, MAX_LINES);
  const n = regions.boxes.length;
  const w = new Writer().map(3).key("lines").array(n);
  const found = new Array<StaticArray<i32>>(n);
  for (let i = 0; i < n; i++) {
    const b = imageBox(regions.boxes[i], g, image.width, image.height);
    found[i] = b;
    const bw = f64(b[2] - b[0]);
    const bh = f64(b[3] - b[1]);
    const lineW = i32(min(f64(MAX_LINE_W), Math.ceil((f64(LINE_H) * bw) / bh)));
    const outW = max(MIN_LINE_W, lineW);
    const x = resizeInto(image, f64(b[0]), f64(b[1]), bw, bh, lineW, LINE_H, outW, LINE_H, HALF, HALF, 0);
    w.map(2).key("inputs").map(1).key("x").tensor([1, 3, LINE_H, outW], x);
    writeBox(w.key("box"), b);
  }
  w.key("boxes").array(n);
  for (let i = 0; i < n; i++) writeBox(w, found[i]);
  return done(w.key("dropped").int(regions.found - n));
}

/** A map box scaled back to the image, rounded outwards and clamped; at least 1 × 1. */
function imageBox(b: Box, g: Geometry, width: i32, height: i32): StaticArray<i32> {
  const x0 = clampTo(i32(Math.floor(b.x0 / g.scaleX)), 0, width - 1);
  const y0 = clampTo(i32(Math.floor(b.y0 / g.scaleY)), 0, height - 1);
  const x1 = clampTo(i32(Math.ceil(b.x1 / g.scaleX)), x0 + 1, width);
  const y1 = clampTo(i32(Math.ceil(b.y1 / g.scaleY)), y0 + 1, height);
  return [x0, y0, x1, y1];
}

function clampTo(v: i32, lo: i32, hi: i32): i32 {
  return v < lo ? lo : v > hi ? hi : v;
}

function writeBox(w: Writer, b: StaticArray<i32>): void {
  w.array(4).int(b[0]).int(b[1]).int(b[2]).int(b[3]);
}

/** Reads a box [x0, y0, x1, y1] of non-negative ints with x0 < x1, y0 < y1; null (and a problem) if not. */
function readBox(v: Value, what: string, f: Fields): StaticArray<i32> | null {
  if (!v.isArray() || v.length != 4) {
    f.problem(what + ": expected [x0, y0, x1, y1], got " + v.kindName());
    return null;
  }
  const b = new StaticArray<i32>(4);
  for (let k = 0; k < 4; k++) {
    const c = v.at(k);
    if (!c.isNumber() || c.asFloat() != Math.floor(c.asFloat()) || c.asFloat() < 0 ||
        c.asFloat() > 4096) {
      f.problem(what + "[" + k.toString() + "]: expected an integer in [0, 4096]");
      return null;
    }
    b[k] = i32(c.asFloat());
  }
  if (b[0] >= b[2] || b[1] >= b[3]) {
    f.problem(what + ": expected x0 < x1 and y0 < y1");
    return null;
  }
  return b;
}

export function recognize(ptr: i32, len: i32): i32 {
  const f = new Fields(Request.read(ptr, len).input);
  const x = f.map("inputs").tensor("x");
  const box = f.value("box");
  if (!f.failed) checkLine(x, "input.inputs.x", f);
  if (!f.failed) readBox(box, "input.box", f);
  if (f.failed) return error(f.message, "E_INPUT");
  const payload = new Writer().map(1).key("inputs").map(1).key("x").value(f.map("inputs").value("x"));
  return call("rec", "", payload, "onRec", new Writer().value(box));
}

/** A line image as `boxes` makes them: float32 [1, 3, 48, W], 16 ≤ W ≤ MAX_LINE_W. */
function checkLine(x: Tensor, what: string, f: Fields): void {
  const d = x.dims;
  if (x.type != "float32" || d.length != 4 || d[0] != 1 || d[1] != 3 || d[2] != i64(LINE_H) ||
      d[3] < 16 || d[3] > i64(MAX_LINE_W)) {
    f.problem(what + ": expected float32 [1, 3, 48, W] with 16 ≤ W ≤ " + MAX_LINE_W.toString() +
      ", got " + x.type + " [" + d.join(", ") + "]");
  }
}

export function onRec(ptr: i32, len: i32): i32 {
  const c = Continuation.read(ptr, len);
  if (!c.ok) return error("the recognizer failed: " + c.errorMessage, c.errorCode);
  const r = new Fields(c.value, "rec answer");
  const text = decodeAnswer(r);
  if (r.failed) return error(r.message);
  return done(
    new Writer().map(3).key("text").str(text.text).key("confidence").float(text.confidence)
      .key("box").value(c.state),
  );
}

/** CTC-decodes a rec answer `{ outputs: { softmax: float32 [1, T, 6625] } }`. */
function decodeAnswer(r: Fields): TextLine {
  const probs = r.map("outputs").tensor(REC_OUT);
  if (r.failed) return new TextLine("", 0);
  const d = probs.dims;
  if (probs.type != "float32" || d.length != 3 || d[0] != 1 || d[2] != i64(CLASSES) ||
      d[1] < 1 || d[1] > i64(MAX_LINE_W / STEP_W)) {
    r.problem(r.what + ".outputs." + REC_OUT + ": expected float32 [1, T ≤ " +
      (MAX_LINE_W / STEP_W).toString() + ", " + CLASSES.toString() + "], got " + probs.type +
      " [" + d.join(", ") + "]");
    return new TextLine("", 0);
  }
  const decoded = decode(probs.f32(), i32(d[1]));
  return new TextLine(decoded.text, decoded.confidence);
}

class TextLine {
  constructor(
    public text: string,
    public confidence: f64,
    public box: StaticArray<i32> = new StaticArray<i32>(4),
  ) {}
}

export function join(ptr: i32, len: i32): i32 {
  const input = Request.read(ptr, len).input;
  // Either recognize's list alone (each result carries its box), or { boxes, recognize }.
  const f = new Fields(input.isArray() ? Value.fromMap(["recognize"], [input]) : input);
  const whole = !input.isArray();
  const results = f.array("recognize");
  const boxList = whole ? f.map("boxes").array("boxes") : new Array<Value>(0);
  if (!f.failed && whole && results.length != boxList.length) {
    f.problem("input.recognize: expected one result per box (" + boxList.length.toString() +
      "), got " + results.length.toString());
  }
  if (!f.failed && results.length > MAX_LINES) {
    f.problem("input: at most " + MAX_LINES.toString() + " lines, got " + results.length.toString());
  }
  if (f.failed) return error(f.message, "E_INPUT");
  const lines = new Array<TextLine>();
  for (let i = 0; i < results.length; i++) {
    const what = (whole ? "input.recognize[" : "input[") + i.toString() + "]";
    const r = new Fields(results[i], what);
    let line: TextLine;
    if (r.has("outputs")) {
      line = decodeAnswer(r);
    } else {
      const text = r.str("text");
      const confidence = r.float("confidence");
      if (!r.failed && (confidence < 0 || confidence > 1)) {
        r.problem(what + ".confidence: must be between 0 and 1");
      }
      line = new TextLine(text, confidence);
    }
    const box = whole
      ? readBox(boxList[i], "input.boxes.boxes[" + i.toString() + "]", r)
      : readBox(r.value("box"), what + ".box", r);
    if (r.failed) return error(r.message, "E_INPUT");
    line.box = box!;
    line.text = line.text.trim();
    if (line.text.length > 0 && line.confidence >= DROP_SCORE) lines.push(line);
  }
  readingOrder(lines);
  const w = new Writer().map(1).key("lines").array(lines.length);
  for (let i = 0; i < lines.length; i++) {
    const l = lines[i];
    w.map(3).key("text").str(l.text).key("confidence").float(l.confidence);
    writeBox(w.key("box"), l.box);
  }
  return done(w);
}

/**
 * Top to bottom, then left to right within a row: sorted by top edge, then neighbours whose
 * vertical centres are closer than half the shorter one's height are put left to right
 * (PaddleOCR's sorted_boxes does the same with a fixed 10 px).
 */
function readingOrder(lines: TextLine[]): void {
  lines.sort((a: TextLine, b: TextLine): i32 => a.box[1] - b.box[1]);
  for (let i = 0; i + 1 < lines.length; i++) {
    for (let j = i; j >= 0; j--) {
      const a = lines[j];
      const b = lines[j + 1];
      const ca = a.box[1] + a.box[3];
      const cb = b.box[1] + b.box[3];
      const h = min(a.box[3] - a.box[1], b.box[3] - b.box[1]);
      if (abs(cb - ca) < h && b.box[0] < a.box[0]) {
        lines[j] = b;
        lines[j + 1] = a;
      } else {
        break;
      }
    }
  }
}
