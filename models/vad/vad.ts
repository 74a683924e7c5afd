/**
 * Silero VAD v5 as the `vad` app uses it, for Node: the audio fixture (speech.wav and its frame
 * labels), the decision rule, and a direct onnxruntime-node loop that carries the model's state
 * from frame to frame. evaluate.ts measures with it; tests/unit/vad.test.ts compares the Logic's
 * answers with it. The Logic (logics/vad/detect.ts) implements the same rule and framing.
 *
 * @example
 * const { samples, labels } = loadFixture();
 * const session = await openSession();
 * const { probs, speech } = await runDirect(session, samples);
 */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as ort from 'onnxruntime-node';

const HERE = dirname(fileURLToPath(import.meta.url));

/** The model file, straight from the npm package (@ricky0123/vad-web, ISC). */
export const MODEL_PATH = join(
  HERE,
  '../../node_modules/@ricky0123/vad-web/dist/silero_vad_v5.onnx',
);
export const FIXTURE_WAV = join(HERE, 'speech.wav');
export const FIXTURE_LABELS = join(HERE, 'speech.labels.json');

export const SAMPLE_RATE = 16_000;
/** Samples per frame: Silero v5 at 16 kHz takes 512 new samples (32 ms) per run. */
export const FRAME = 512;
/** The tail of the previous frame the model sees before each frame (silero-vad's OnnxWrapper). */
export const CONTEXT = 64;
/** Recurrent state: float32 [2, 1, 128]. */
export const STATE_SIZE = 2 * 128;
/** Speech starts at a frame whose probability is ≥ START... */
export const START = 0.5;
/** ...and ends at a frame whose probability is < END (silero-vad: threshold − 0.15). */
export const END = 0.35;

/** The hysteresis rule: whether speech goes on after a frame of probability `p`. */
export function decide(speaking: boolean, p: number): boolean {
  return speaking ? p >= END : p >= START;
}

export interface Labels {
  sampleRate: number;
  frameSamples: number;
  frames: number;
  /** One character per frame: "1" speech, "0" not. */
  labels: string;
  /** Where make-audio.ts placed each sentence, and the speech it found in it (seconds). */
  segments: {
    text: string;
    voice: string;
    start: number;
    end: number;
    speech: [number, number][];
  }[];
  [more: string]: unknown;
}

/** 16-bit PCM mono WAV bytes → samples in [-1, 1) and the sample rate. */
export function readWav(bytes: Uint8Array): { samples: Float32Array; sampleRate: number } {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const tag = (at: number) => String.fromCharCode(...bytes.subarray(at, at + 4));
  if (tag(0) !== 'RIFF' || tag(8) !== 'WAVE') throw new Error('not a RIFF/WAVE file');
  let at = 12;
  let sampleRate = 0;
  while (at + 8 <= bytes.length) {
    const id = tag(at);
    const size = view.getUint32(at + 4, true);
    const body = at + 8;
    if (id === 'fmt ') {
      const format = view.getUint16(body, true);
      const channels = view.getUint16(body + 2, true);
      const bits = view.getUint16(body + 14, true);
      if (format !== 1 || channels !== 1 || bits !== 16) {
        throw new Error(
          `expected 16-bit PCM mono, got format ${format}, ${channels} ch, ${bits} bit`,
        );
      }
      sampleRate = view.getUint32(body + 4, true);
    } else if (id === 'data') {
      if (!sampleRate) throw new Error('WAV data before its fmt chunk');
      const n = Math.min(size, bytes.length - body) >> 1;
      const samples = new Float32Array(n);
      for (let i = 0; i < n; i++) samples[i] = view.getInt16(body + 2 * i, true) / 32768;
      return { samples, sampleRate };
    }
    at = body + size + (size & 1);
  }
  throw new Error('WAV file without a data chunk');
}

/** 16-bit PCM mono WAV of `samples` (clipped to [-1, 1]). */
export function writeWav(samples: Float32Array, sampleRate: number): Uint8Array {
  const bytes = new Uint8Array(44 + 2 * samples.length);
  const view = new DataView(bytes.buffer);
  const put = (at: number, s: string) => {
    for (let i = 0; i < 4; i++) bytes[at + i] = s.charCodeAt(i);
  };
  put(0, 'RIFF');
  view.setUint32(4, 36 + 2 * samples.length, true);
  put(8, 'WAVE');
  put(12, 'fmt ');
  view.setUint32(16, 16, true);
  view.setUint16(20, 1, true); // PCM
  view.setUint16(22, 1, true); // mono
  view.setUint32(24, sampleRate, true);
  view.setUint32(28, sampleRate * 2, true);
  view.setUint16(32, 2, true);
  view.setUint16(34, 16, true);
  put(36, 'data');
  view.setUint32(40, 2 * samples.length, true);
  for (let i = 0; i < samples.length; i++) {
    const v = Math.max(-1, Math.min(1, samples[i]!));
    view.setInt16(44 + 2 * i, Math.round(v * 32767), true);
  }
  return bytes;
}

/** The committed fixture: whole frames of samples and one label per frame (1 = speech). */
export function loadFixture(): { samples: Float32Array; labels: Uint8Array; meta: Labels } {
  const { samples, sampleRate } = readWav(readFileSync(FIXTURE_WAV));
  const meta = JSON.parse(readFileSync(FIXTURE_LABELS, 'utf8')) as Labels;
  if (sampleRate !== SAMPLE_RATE || meta.sampleRate !== SAMPLE_RATE) {
    throw new Error(`the fixture must be ${SAMPLE_RATE} Hz, got ${sampleRate}`);
  }
  const frames = Math.floor(samples.length / FRAME);
  if (meta.frames !== frames || meta.labels.length !== frames) {
    throw new Error(`speech.labels.json has ${meta.labels.length} labels for ${frames} frames`);
  }
  const labels = Uint8Array.from(meta.labels, (c) => (c === '1' ? 1 : 0));
  return { samples: samples.subarray(0, frames * FRAME), labels, meta };
}

export const SESSION_OPTIONS: ort.InferenceSession.SessionOptions = {
  intraOpNumThreads: 1,
  interOpNumThreads: 1,
  executionMode: 'sequential',
  graphOptimizationLevel: 'all',
};

export function openSession(): Promise<ort.InferenceSession> {
  return ort.InferenceSession.create(readFileSync(MODEL_PATH), SESSION_OPTIONS);
}

/** One stream's running state, as the Logic keeps it in the context store. */
export interface StreamState {
  state: Float32Array;
  context: Float32Array;
  speaking: boolean;
}

export const freshStream = (): StreamState => ({
  state: new Float32Array(STATE_SIZE),
  context: new Float32Array(CONTEXT),
  speaking: false,
});

/**
 * One frame: the model sees the previous frame's last CONTEXT samples then this frame's FRAME
 * samples, as float32 [1, 576], with the state; `s` moves on. Answers the speech probability.
 */
export async function step(
  session: ort.InferenceSession,
  s: StreamState,
  frame: Float32Array,
): Promise<number> {
  const input = new Float32Array(CONTEXT + FRAME);
  input.set(s.context);
  input.set(frame, CONTEXT);
  const out = await session.run({
    input: new ort.Tensor('float32', input, [1, CONTEXT + FRAME]),
    state: new ort.Tensor('float32', s.state, [2, 1, 128]),
    sr: new ort.Tensor('int64', BigInt64Array.of(BigInt(SAMPLE_RATE)), []),
  });
  s.state = Float32Array.from(out.stateN!.data as Float32Array);
  s.context = frame.slice(FRAME - CONTEXT);
  const p = (out.output!.data as Float32Array)[0]!;
  s.speaking = decide(s.speaking, p);
  return p;
}

/** Runs every whole frame of `samples` in order from a fresh state: probability and decision. */
export async function runDirect(
  session: ort.InferenceSession,
  samples: Float32Array,
): Promise<{ probs: Float32Array; speech: Uint8Array }> {
  const frames = Math.floor(samples.length / FRAME);
  const probs = new Float32Array(frames);
  const speech = new Uint8Array(frames);
  const s = freshStream();
  for (let i = 0; i < frames; i++) {
    probs[i] = await step(session, s, samples.subarray(i * FRAME, (i + 1) * FRAME));
    speech[i] = s.speaking ? 1 : 0;
  }
  return { probs, speech };
}
