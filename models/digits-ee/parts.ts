/**
 * The three committed parts in onnxruntime-node (Node only): load them, and run a batch of digits
 * through dew → fog → cloud, keeping every exit's probabilities and the features sent up. Used by
 * evaluate.ts and tests/bench/early-exit.ts.
 */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as ort from 'onnxruntime-node';
import { DIGIT_PIXELS } from '../digits/data';
import type { ExitOutputs } from './cascade';
import { PART_IO, PARTS, type Part } from './network';

export const PARTS_DIR = dirname(fileURLToPath(import.meta.url));

export const SESSION_OPTIONS: ort.InferenceSession.SessionOptions = {
  intraOpNumThreads: 1,
  interOpNumThreads: 1,
  executionMode: 'sequential',
  graphOptimizationLevel: 'all',
};

export type PartSessions = Record<Part, ort.InferenceSession>;

/** The file bytes of each part. */
export function readParts(dir = PARTS_DIR): Record<Part, Uint8Array> {
  const out: Partial<Record<Part, Uint8Array>> = {};
  for (const p of PARTS) out[p] = readFileSync(join(dir, `${p}.onnx`));
  return out as Record<Part, Uint8Array>;
}

export async function loadParts(bytes = readParts()): Promise<PartSessions> {
  const out: Partial<PartSessions> = {};
  for (const p of PARTS) out[p] = await ort.InferenceSession.create(bytes[p], SESSION_OPTIONS);
  return out as PartSessions;
}

export async function releaseParts(sessions: PartSessions): Promise<void> {
  for (const p of PARTS) await sessions[p].release();
}

/** Runs part `p` on `rows` rows of its input: its features (none for the cloud) and probs. */
export async function runPart(
  sessions: PartSessions,
  p: Part,
  x: Float32Array,
  rows: number,
): Promise<{ features?: Float32Array; probs: Float32Array }> {
  const io = PART_IO[p];
  const width = x.length / rows;
  const out = await sessions[p].run({ [io.input]: new ort.Tensor('float32', x, [rows, width]) });
  const probs = out.probs?.data as Float32Array;
  if (!probs) throw new Error(`${p}.onnx gave no probs`);
  if (!io.features) return { probs };
  const features = out[io.features]?.data as Float32Array;
  if (!features) throw new Error(`${p}.onnx gave no ${io.features}`);
  return { features, probs };
}

/** Every exit's outputs for `rows` digits (row-major pixels), and the features each part sent up. */
export async function runAll(
  sessions: PartSessions,
  pixels: Float32Array,
  labels: Uint8Array,
  rows: number,
): Promise<ExitOutputs & { features: Float32Array[] }> {
  if (pixels.length !== rows * DIGIT_PIXELS) throw new Error('pixels: expected rows×784 values');
  const dew = await runPart(sessions, 'dew', pixels, rows);
  const fog = await runPart(sessions, 'fog', dew.features!, rows);
  const cloud = await runPart(sessions, 'cloud', fog.features!, rows);
  const features = [dew.features!, fog.features!];
  return {
    probs: [dew.probs, fog.probs, cloud.probs],
    labels,
    n: rows,
    // float32 features, as the parts output them.
    upBytes: features.map((f) => (f.length / rows) * 4),
    features,
  };
}
