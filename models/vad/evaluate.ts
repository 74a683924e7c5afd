/**
 * Measures Silero VAD v5 with onnxruntime-node (CPU, one intra-op thread) on the labelled fixture
 * (speech.wav, made by make-audio.ts) and writes models/vad/metrics.json.
 *
 *   npx tsx models/vad/evaluate.ts
 *
 * Accuracy: the share of frames whose decision (vad.ts's rule: speech starts at p ≥ 0.5 and ends
 * at p < 0.35, the model's state carried from frame to frame from a fresh stream) equals the
 * label; precision and recall of the speech frames too. Latency: the median of one `session.run`
 * per frame (the whole fixture in order, state carried) over LATENCY_PASSES passes after a
 * warm-up pass; tensor creation excluded. Params: the float weights of the file's 16 kHz branch
 * (it holds an 8 kHz one too).
 */
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { cpus } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { onnx as Onnx } from 'onnx-proto';
import onnxProto from 'onnx-proto';
import * as ort from 'onnxruntime-node';
import {
  CONTEXT,
  END,
  FRAME,
  freshStream,
  loadFixture,
  MODEL_PATH,
  openSession,
  runDirect,
  SAMPLE_RATE,
  START,
} from './vad';

// onnx-proto is CommonJS; Node's ESM loader only sees its default export.
const { onnx } = onnxProto;
const HERE = dirname(fileURLToPath(import.meta.url));
const LATENCY_PASSES = 5;

function quantile(values: number[], q: number): number {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))]!;
}

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

const round = (v: number, digits: number) => Number(v.toFixed(digits));

/** Float elements of a graph's initializers and Constant nodes, subgraphs included. */
function floats(g: Onnx.IGraphProto | null | undefined): number {
  if (!g) return 0;
  const size = (t: Onnx.ITensorProto) =>
    t.dataType === onnx.TensorProto.DataType.FLOAT
      ? (t.dims ?? []).reduce<number>((a, d) => a * Number(d), 1)
      : 0;
  let n = 0;
  for (const t of g.initializer ?? []) n += size(t);
  for (const node of g.node ?? []) {
    for (const a of node.attribute ?? []) {
      if (a.t) n += size(a.t);
      n += floats(a.g);
      for (const sub of a.graphs ?? []) n += floats(sub);
    }
  }
  return n;
}

/**
 * The weights the model uses at 16 kHz. The file is `If(sr == 16000, then: 16 kHz net, else:
 * 8 kHz net)` with the weights as Constant nodes; this counts the 16 kHz branch (its fixed STFT
 * basis included) and checks that the graph is shaped so.
 */
function paramCount(bytes: Uint8Array): number {
  const nodes = onnx.ModelProto.decode(bytes).graph?.node ?? [];
  const equal = nodes.find((n) => n.opType === 'Equal' && n.input?.includes('sr'));
  const branch = nodes.find((n) => n.opType === 'If' && n.input?.[0] === equal?.output?.[0]);
  const constant = nodes.find(
    (n) => n.opType === 'Constant' && equal?.input?.includes(n.output![0]!),
  );
  const value = constant?.attribute?.[0]?.t;
  const rate = value?.int64Data?.length
    ? Number(value.int64Data[0])
    : value?.rawData?.length === 8
      ? Number(new DataView(value.rawData.buffer, value.rawData.byteOffset).getBigInt64(0, true))
      : undefined;
  const then = branch?.attribute?.find((a) => a.name === 'then_branch')?.g;
  if (rate !== SAMPLE_RATE || !then) {
    throw new Error(`expected If(sr == ${SAMPLE_RATE}) at the top of the graph, got sr == ${rate}`);
  }
  return floats(then);
}

/** Per-frame session.run times (ms) over the whole fixture, state carried. */
async function frameTimes(session: ort.InferenceSession, samples: Float32Array): Promise<number[]> {
  const frames = samples.length / FRAME;
  const times: number[] = [];
  let s = freshStream();
  const sr = new ort.Tensor('int64', BigInt64Array.of(BigInt(SAMPLE_RATE)), []);
  for (let i = 0; i < frames; i++) {
    const input = new Float32Array(CONTEXT + FRAME);
    input.set(s.context);
    input.set(samples.subarray(i * FRAME, (i + 1) * FRAME), CONTEXT);
    const feeds = {
      input: new ort.Tensor('float32', input, [1, CONTEXT + FRAME]),
      state: new ort.Tensor('float32', s.state, [2, 1, 128]),
      sr,
    };
    const t0 = performance.now();
    const out = await session.run(feeds);
    times.push(performance.now() - t0);
    s = {
      state: out.stateN!.data as Float32Array,
      context: samples.slice((i + 1) * FRAME - CONTEXT, (i + 1) * FRAME),
      speaking: false,
    };
  }
  return times;
}

async function main() {
  const { samples, labels, meta } = loadFixture();
  const ortVersion = (
    createRequire(import.meta.url)('onnxruntime-node/package.json') as { version: string }
  ).version;
  const vadWeb = (
    createRequire(import.meta.url)('@ricky0123/vad-web/package.json') as { version: string }
  ).version;
  const cpu = cpus();
  const frames = labels.length;
  const seconds = samples.length / SAMPLE_RATE;
  const measured =
    `${new Date().toISOString()}, ${cpu[0]?.model.trim() ?? 'unknown CPU'}, ${cpu.length} threads, ` +
    `onnxruntime-node ${ortVersion} (CPU, intraOpNumThreads 1), Node ${process.version}, ` +
    `${frames} frames (${seconds.toFixed(1)} s) of models/vad/speech.wav`;

  const session = await openSession();
  const { probs, speech } = await runDirect(session, samples);
  let agree = 0;
  let tp = 0;
  let fp = 0;
  let fn = 0;
  for (let i = 0; i < frames; i++) {
    if (speech[i] === labels[i]) agree++;
    if (speech[i] && labels[i]) tp++;
    if (speech[i] && !labels[i]) fp++;
    if (!speech[i] && labels[i]) fn++;
  }

  await frameTimes(session, samples); // warm-up pass
  const times: number[] = [];
  for (let p = 0; p < LATENCY_PASSES; p++) times.push(...(await frameTimes(session, samples)));
  await session.release();

  const bytes = readFileSync(MODEL_PATH);
  const v5 = {
    file: basename(MODEL_PATH),
    accuracy: round(agree / frames, 4),
    latencyMs: round(median(times), 3),
    params: paramCount(bytes),
    bytes: statSync(MODEL_PATH).size,
    weights: 'trained' as const,
    source: `@ricky0123/vad-web ${vadWeb} (ISC), dist/silero_vad_v5.onnx: Silero VAD v5 (MIT)`,
    latencyP90Ms: round(quantile(times, 0.9), 3),
    frames,
    speechFrames: labels.reduce((a, b) => a + b, 0),
    precision: round(tp / (tp + fp), 4),
    recall: round(tp / (tp + fn), 4),
    rule: `speech from p ≥ ${START} until p < ${END}; ${FRAME} samples + ${CONTEXT} of context per frame`,
    labels: meta.rule as string,
  };
  const metrics = { measured, variants: { v5 } };
  writeFileSync(join(HERE, 'metrics.json'), `${JSON.stringify(metrics, null, 2)}\n`);
  console.log(measured);
  console.log(
    `v5: accuracy ${v5.accuracy} (precision ${v5.precision}, recall ${v5.recall}), ` +
      `${v5.latencyMs} ms/frame (p90 ${v5.latencyP90Ms}), ${v5.params} params, ${v5.bytes} bytes`,
  );
  const mean = probs.reduce((a, b) => a + b, 0) / frames;
  console.log(`mean probability ${mean.toFixed(3)} over ${frames} frames`);
}

main().catch((e: unknown) => {
  console.error(e);
  process.exitCode = 1;
});
