/**
 * Writes an Mlp as an ONNX model (opset 13, IR version 8) and reads one back, with the
 * protobufjs types of the `onnx-proto` package.
 *
 * Graph: pixels[N,784] → Gemm → Relu → … → Gemm → Softmax(axis=1) → probs[N,10]. Gemm's B is
 * the layer's in×out weight matrix (transB = 0), C its bias; initializers hold little-endian
 * float32 raw_data. Reading accepts exactly that shape of graph.
 */

import { attr, encodeModel, floatTensor, floatValueInfo, type Onnx, onnx } from '../onnx-writer';
import type { Dense, Mlp } from './mlp';

export const INPUT_NAME = 'pixels';
export const OUTPUT_NAME = 'probs';
export const PRODUCER_NAME = 'brume models/digits/train.ts';

/** The ONNX bytes of `mlp`; `metadata` goes into the model's metadata_props. */
export function mlpToOnnx(
  mlp: Mlp,
  opts: { graphName: string; docString: string; metadata?: Record<string, string> },
): Uint8Array {
  const nodes: Onnx.INodeProto[] = [];
  const initializer: Onnx.ITensorProto[] = [];
  let current = INPUT_NAME;
  const last = mlp.layers.length - 1;
  mlp.layers.forEach((layer, l) => {
    const n = l + 1;
    const w = `fc${n}.weight`;
    const b = `fc${n}.bias`;
    initializer.push(floatTensor(w, [layer.inDim, layer.outDim], layer.w));
    initializer.push(floatTensor(b, [layer.outDim], layer.b));
    const gemmOut = l < last ? `fc${n}` : 'logits';
    nodes.push({
      name: `fc${n}`,
      opType: 'Gemm',
      input: [current, w, b],
      output: [gemmOut],
      attribute: [attr.int('transB', 0), attr.float('alpha', 1), attr.float('beta', 1)],
    });
    if (l < last) {
      nodes.push({ name: `relu${n}`, opType: 'Relu', input: [gemmOut], output: [`relu${n}`] });
      current = `relu${n}`;
    } else {
      current = gemmOut;
    }
  });
  nodes.push({
    name: 'softmax',
    opType: 'Softmax',
    input: [current],
    output: [OUTPUT_NAME],
    attribute: [attr.int('axis', 1)],
  });
  return encodeModel({
    producerName: PRODUCER_NAME,
    docString: opts.docString,
    graph: {
      name: opts.graphName,
      node: nodes,
      initializer,
      input: [floatValueInfo(INPUT_NAME, ['N', mlp.layers[0]!.inDim])],
      output: [floatValueInfo(OUTPUT_NAME, ['N', mlp.layers[last]!.outDim])],
    },
    ...(opts.metadata && { metadata: opts.metadata }),
  });
}

function readFloats(t: Onnx.ITensorProto): Float32Array {
  if (t.dataType !== onnx.TensorProto.DataType.FLOAT) throw new Error(`${t.name}: not float32`);
  if (t.rawData && t.rawData.length > 0) {
    const raw = t.rawData;
    const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
    const out = new Float32Array(raw.byteLength / 4);
    for (let i = 0; i < out.length; i++) out[i] = view.getFloat32(i * 4, true);
    return out;
  }
  return Float32Array.from(t.floatData ?? []);
}

/** Reads back the weights of a model written by `mlpToOnnx` (Gemm/Relu chain, Softmax last). */
export function onnxToMlp(bytes: Uint8Array): Mlp {
  const model = onnx.ModelProto.decode(bytes);
  const graph = model.graph;
  if (!graph) throw new Error('ONNX model has no graph');
  const inits = new Map<string, Onnx.ITensorProto>();
  for (const t of graph.initializer ?? []) inits.set(t.name ?? '', t);
  const layers: Dense[] = [];
  for (const node of graph.node ?? []) {
    if (node.opType !== 'Gemm') continue;
    const attr = (name: string) => node.attribute?.find((a) => a.name === name);
    if (Number(attr('transA')?.i ?? 0) !== 0 || Number(attr('transB')?.i ?? 0) !== 0) {
      throw new Error(`${node.name}: transposed Gemm is not supported`);
    }
    const wt = inits.get(node.input?.[1] ?? '');
    const bt = inits.get(node.input?.[2] ?? '');
    if (!wt || !bt) throw new Error(`${node.name}: weights are not initializers`);
    const [inDim, outDim] = (wt.dims ?? []).map(Number);
    if (inDim === undefined || outDim === undefined) throw new Error(`${node.name}: bad dims`);
    layers.push({ inDim, outDim, w: readFloats(wt), b: readFloats(bt) });
  }
  if (layers.length === 0) throw new Error('ONNX model has no Gemm layers');
  return { layers };
}

/**
 * One stage of an early-exit network (models/digits-ee): `trunk` Gemm→Relu layers from input
 * `inputName` give the features (graph output `featuresName` when given), and the `exit` layers
 * (Gemm, Relu between, Softmax(axis=1) last) give `probs`. Initializers are named
 * `trunk<k>.weight`/`.bias` and `exit<k>.weight`/`.bias` (in×out, transB = 0).
 */
export function partToOnnx(
  part: { trunk: Dense[]; exit: Dense[] },
  opts: {
    inputName: string;
    featuresName?: string;
    graphName: string;
    docString: string;
    producerName: string;
    metadata?: Record<string, string>;
  },
): Uint8Array {
  const nodes: Onnx.INodeProto[] = [];
  const initializer: Onnx.ITensorProto[] = [];
  const inDim = (part.trunk[0] ?? part.exit[0])!.inDim;
  let current = opts.inputName;
  part.trunk.forEach((layer, l) => {
    const n = `trunk${l + 1}`;
    initializer.push(floatTensor(`${n}.weight`, [layer.inDim, layer.outDim], layer.w));
    initializer.push(floatTensor(`${n}.bias`, [layer.outDim], layer.b));
    nodes.push({
      name: n,
      opType: 'Gemm',
      input: [current, `${n}.weight`, `${n}.bias`],
      output: [n],
      attribute: [attr.int('transB', 0), attr.float('alpha', 1), attr.float('beta', 1)],
    });
    const last = l === part.trunk.length - 1;
    const out = last && opts.featuresName ? opts.featuresName : `${n}.relu`;
    nodes.push({ name: `${n}.relu`, opType: 'Relu', input: [n], output: [out] });
    current = out;
  });
  const features = current;
  part.exit.forEach((layer, l) => {
    const n = `exit${l + 1}`;
    initializer.push(floatTensor(`${n}.weight`, [layer.inDim, layer.outDim], layer.w));
    initializer.push(floatTensor(`${n}.bias`, [layer.outDim], layer.b));
    nodes.push({
      name: n,
      opType: 'Gemm',
      input: [current, `${n}.weight`, `${n}.bias`],
      output: [n],
      attribute: [attr.int('transB', 0), attr.float('alpha', 1), attr.float('beta', 1)],
    });
    current = n;
    if (l < part.exit.length - 1) {
      nodes.push({ name: `${n}.relu`, opType: 'Relu', input: [n], output: [`${n}.relu`] });
      current = `${n}.relu`;
    }
  });
  nodes.push({
    name: 'softmax',
    opType: 'Softmax',
    input: [current],
    output: [OUTPUT_NAME],
    attribute: [attr.int('axis', 1)],
  });
  const output = [floatValueInfo(OUTPUT_NAME, ['N', part.exit.at(-1)!.outDim])];
  if (opts.featuresName) {
    if (part.trunk.length === 0) throw new Error(`${opts.graphName}: features need a trunk`);
    output.unshift(floatValueInfo(features, ['N', part.trunk.at(-1)!.outDim]));
  }
  return encodeModel({
    producerName: opts.producerName,
    docString: opts.docString,
    graph: {
      name: opts.graphName,
      node: nodes,
      initializer,
      input: [floatValueInfo(opts.inputName, ['N', inDim])],
      output,
    },
    ...(opts.metadata && { metadata: opts.metadata }),
  });
}

/** Reads back the stage written by `partToOnnx` from its `trunk<k>`/`exit<k>` initializers. */
export function onnxToPart(bytes: Uint8Array): { trunk: Dense[]; exit: Dense[] } {
  const graph = onnx.ModelProto.decode(bytes).graph;
  if (!graph) throw new Error('ONNX model has no graph');
  const inits = new Map<string, Onnx.ITensorProto>();
  for (const t of graph.initializer ?? []) inits.set(t.name ?? '', t);
  const layers = (prefix: string): Dense[] => {
    const out: Dense[] = [];
    for (let k = 1; inits.has(`${prefix}${k}.weight`); k++) {
      const wt = inits.get(`${prefix}${k}.weight`)!;
      const bt = inits.get(`${prefix}${k}.bias`);
      if (!bt) throw new Error(`${prefix}${k}: no bias`);
      const [inDim, outDim] = (wt.dims ?? []).map(Number);
      if (inDim === undefined || outDim === undefined) throw new Error(`${prefix}${k}: bad dims`);
      out.push({ inDim, outDim, w: readFloats(wt), b: readFloats(bt) });
    }
    return out;
  };
  const exit = layers('exit');
  if (exit.length === 0) throw new Error('ONNX model has no exit layers');
  return { trunk: layers('trunk'), exit };
}
