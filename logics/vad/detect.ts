// The vad app's Logic: voice activity detection over a stream of audio chunks with Silero VAD v5,
// whose recurrent state lives in the app's context store (PROTOCOL.md §3.4) under
// `vad/<stream>`, so consecutive chunks of one stream may run on different nodes.
//
// detect { stream, samples } → contextGet → onState → call silero per frame → onFrame …
//        → contextPut (TTL) → onSaved → { probs, speech, speaking, frame }
import {
  Request,
  Continuation,
  Fields,
  Value,
  Writer,
  done,
  error,
  call,
  contextGet,
  contextPut,
} from "../sdk";
export { brume_alloc, brume_free } from "../sdk";

/** New samples per model run: 32 ms at 16 kHz. */
const FRAME: i32 = 512;
/** The tail of the previous frame the model sees before each frame (silero-vad's OnnxWrapper). */
const CONTEXT: i32 = 64;
/** Recurrent state: float32 [2, 1, 128]. */
const STATE: i32 = 256;
const MAX_FRAMES: i32 = 16;
const MAX_STREAM: i32 = 128;
/** Speech starts at a frame with p ≥ START and ends at one with p < END. */
const START: f64 = 0.5;
const END: f64 = 0.35;
/** A stream idle for longer starts afresh. */
const TTL_MS: i64 = 5000;
/** Probabilities kept in the context for whoever looks (the admin console, a debugger). */
const RECENT: i32 = 8;
const SAMPLE_RATE: i64 = 16000;

/**
 * `{ stream: string, samples: <bin: 512·k little-endian float32 at 16 kHz, 1 ≤ k ≤ 16> }`.
 * Answers `{ probs: [f64 × k], speech: [bool × k], speaking, frame }`: each frame's speech
 * probability, whether speech is on after it, the same after the last frame, and how many frames
 * the stream has had (this chunk included).
 */
export function detect(ptr: i32, len: i32): i32 {
  const f = new Fields(Request.read(ptr, len).input);
  const stream = f.str("stream");
  const samples = f.bin("samples");
  if (f.failed) return error(f.message, "E_INPUT");
  if (stream.length == 0 || stream.length > MAX_STREAM) {
    return error(
      "input.stream: must be 1 to " + MAX_STREAM.toString() + " characters",
      "E_INPUT",
    );
  }
  const frames = samples.length / (FRAME * 4);
  if (samples.length % (FRAME * 4) != 0 || frames < 1 || frames > MAX_FRAMES) {
    return error(
      "input.samples: expected 512·k float32 samples (2048·k bytes, 1 ≤ k ≤ " +
        MAX_FRAMES.toString() +
        "), got " +
        samples.length.toString() +
        " bytes",
      "E_INPUT",
    );
  }
  const audio = floats(samples);
  for (let i = 0; i < audio.length; i++) {
    if (!isFinite(unchecked(audio[i]))) {
      return error("input.samples: sample " + i.toString() + " is not a finite number", "E_INPUT");
    }
  }
  const run = new Run();
  run.key = "vad/" + stream;
  run.samples = samples;
  return contextGet(run.key, "onState", run.write());
}

/** The stream's state from the context store (absent or expired: a fresh stream); first frame. */
export function onState(ptr: i32, len: i32): i32 {
  const c = Continuation.read(ptr, len);
  const run = Run.read(c.state);
  if (!c.ok) return error("reading " + run.key + " failed: " + c.errorMessage, c.errorCode);
  if (c.found) {
    const s = new Fields(c.value, "context " + run.key);
    const rnn = s.bin("state");
    const tail = s.bin("context");
    const speaking = s.bool("speaking");
    const frame = s.int("frame", 0);
    if (!s.failed && (rnn.length != STATE * 4 || tail.length != CONTEXT * 4)) {
      s.problem("context " + run.key + ": state or context of the wrong size");
    }
    if (s.failed) return error(s.message);
    run.rnn = rnn;
    run.tail = tail;
    run.speaking = speaking;
    run.frame = frame;
    if (s.has("recent")) {
      const recent = s.array("recent");
      for (let i = 0; i < recent.length; i++) run.recent.push(recent[i].asFloat());
    }
  }
  return nextFrame(run);
}

/** One frame's answer from the model: decide, then the next frame or the write-back. */
export function onFrame(ptr: i32, len: i32): i32 {
  const c = Continuation.read(ptr, len);
  const run = Run.read(c.state);
  if (!c.ok) return error("the model failed: " + c.errorMessage, c.errorCode);
  const r = new Fields(c.value, "silero result");
  const outputs = r.map("outputs");
  const output = outputs.tensor("output");
  const stateN = outputs.tensor("stateN");
  if (!r.failed && (output.type != "float32" || output.size != 1)) {
    r.problem("silero result.outputs.output: expected 1 float32, got " + output.type);
  }
  if (!r.failed && (stateN.type != "float32" || stateN.size != STATE)) {
    r.problem("silero result.outputs.stateN: expected 256 float32, got " + stateN.type);
  }
  if (r.failed) return error(r.message);

  const p = <f64>output.f32()[0];
  run.speaking = run.speaking ? p >= END : p >= START;
  run.probs.push(p);
  run.speech.push(run.speaking);
  run.recent.push(p);
  run.rnn = copy(stateN.data);
  // The next frame's context: the last CONTEXT samples of this one.
  const end = (run.done + 1) * FRAME * 4;
  run.tail = run.samples.slice(end - CONTEXT * 4, end);
  run.done++;
  run.frame++;
  if (run.done < run.samples.length / (FRAME * 4)) return nextFrame(run);

  while (run.recent.length > RECENT) run.recent.shift();
  const saved = new Writer()
    .map(5)
    .key("state")
    .bin(run.rnn)
    .key("context")
    .bin(run.tail)
    .key("speaking")
    .bool(run.speaking)
    .key("frame")
    .int(run.frame)
    .key("recent")
    .array(run.recent.length);
  for (let i = 0; i < run.recent.length; i++) saved.float(run.recent[i]);
  return contextPut(run.key, saved, "onSaved", run.write(), TTL_MS);
}

/** The state is written back (the relay acknowledged it): the answer. */
export function onSaved(ptr: i32, len: i32): i32 {
  const c = Continuation.read(ptr, len);
  const run = Run.read(c.state);
  if (!c.ok) return error("writing " + run.key + " failed: " + c.errorMessage, c.errorCode);
  const answer = new Writer().map(4).key("probs").array(run.probs.length);
  for (let i = 0; i < run.probs.length; i++) answer.float(run.probs[i]);
  answer.key("speech").array(run.speech.length);
  for (let i = 0; i < run.speech.length; i++) answer.bool(run.speech[i]);
  answer.key("speaking").bool(run.speaking).key("frame").int(run.frame);
  return done(answer);
}

/** Calls the model on frame `run.done`: the previous tail, then the frame, with the state. */
function nextFrame(run: Run): i32 {
  const input = new Float32Array(CONTEXT + FRAME);
  const tail = floats(run.tail);
  for (let i = 0; i < CONTEXT; i++) unchecked((input[i] = tail[i]));
  const frame = floats(run.samples.subarray(run.done * FRAME * 4, (run.done + 1) * FRAME * 4));
  for (let i = 0; i < FRAME; i++) unchecked((input[CONTEXT + i] = frame[i]));
  const sr = new StaticArray<i64>(1);
  sr[0] = SAMPLE_RATE;
  const payload = new Writer()
    .map(1)
    .key("inputs")
    .map(3)
    .key("input")
    .tensor([1, CONTEXT + FRAME], input)
    .key("state")
    .tensor([2, 1, 128], floats(run.rnn))
    .key("sr")
    .tensor(new Array<i32>(0), sr);
  return call("silero", "", payload, "onFrame", run.write());
}

/**
 * What one request carries from step to step in the `state` of its calls (a continuation may run
 * on another instance): the chunk, how far it got, the stream's state so far, and the answers.
 */
class Run {
  key: string = "";
  samples: Uint8Array = new Uint8Array(0);
  /** Frames of this chunk done. */
  done: i32 = 0;
  rnn: Uint8Array = new Uint8Array(STATE * 4);
  tail: Uint8Array = new Uint8Array(CONTEXT * 4);
  speaking: bool = false;
  /** Frames of the stream so far. */
  frame: i64 = 0;
  probs: f64[] = [];
  speech: bool[] = [];
  recent: f64[] = [];

  write(): Writer {
    const w = new Writer()
      .map(10)
      .key("key")
      .str(this.key)
      .key("samples")
      .bin(this.samples)
      .key("done")
      .int(this.done)
      .key("rnn")
      .bin(this.rnn)
      .key("tail")
      .bin(this.tail)
      .key("speaking")
      .bool(this.speaking)
      .key("frame")
      .int(this.frame)
      .key("probs")
      .array(this.probs.length);
    for (let i = 0; i < this.probs.length; i++) w.float(this.probs[i]);
    w.key("speech").array(this.speech.length);
    for (let i = 0; i < this.speech.length; i++) w.bool(this.speech[i]);
    w.key("recent").array(this.recent.length);
    for (let i = 0; i < this.recent.length; i++) w.float(this.recent[i]);
    return w;
  }

  static read(v: Value): Run {
    const r = new Run();
    r.key = v.get("key").asString();
    r.samples = copy(v.get("samples").asBin());
    r.done = v.get("done").asI32();
    r.rnn = copy(v.get("rnn").asBin());
    r.tail = copy(v.get("tail").asBin());
    r.speaking = v.get("speaking").asBool();
    r.frame = v.get("frame").asInt();
    const probs = v.get("probs").asArray();
    for (let i = 0; i < probs.length; i++) r.probs.push(probs[i].asFloat());
    const speech = v.get("speech").asArray();
    for (let i = 0; i < speech.length; i++) r.speech.push(speech[i].asBool());
    const recent = v.get("recent").asArray();
    for (let i = 0; i < recent.length; i++) r.recent.push(recent[i].asFloat());
    return r;
  }
}

/** Little-endian float32 bytes as floats (a copy: the bytes need not be aligned). */
function floats(bytes: Uint8Array): Float32Array {
  const out = new Float32Array(bytes.length >> 2);
  memory.copy(out.dataStart, bytes.dataStart, <usize>(out.length << 2));
  return out;
}

/** A copy that owns its bytes (not a view into the request). */
function copy(bytes: Uint8Array): Uint8Array {
  return bytes.slice(0);
}
