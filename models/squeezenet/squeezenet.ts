/**
 * SqueezeNet 1.1 (Iandola et al. 2016; the 1.1 layout of the authors' repository and of
 * torchvision) at 224×224 with random weights, written as ONNX by models/onnx-writer.ts.
 * A model large enough (1.24 M parameters, ~0.35 GFLOP) that the Logic and executor overhead
 * measured around it means something; its accuracy means nothing.
 *
 * Graph: data[N,3,224,224] → Conv 3×3/2 64 → Relu → MaxPool 3/2 → Fire×2 → MaxPool → Fire×2 →
 * MaxPool → Fire×4 → Conv 1×1 1000 → Relu → GlobalAveragePool → Flatten → Softmax → probs[N,1000].
 * Fire(s, e): squeeze Conv 1×1 s → Relu, then Concat(Relu(Conv 1×1 e), Relu(Conv 3×3 e, pad 1)).
 * No dropout (inference). Pools use ceil_mode, as the reference does. Weights are He-initialised
 * (normal, std √(2 / fan-in)) from a seeded PRNG, biases zero, so activations keep their scale
 * through the ReLUs; same seed, same bytes.
 *
 * @example const { bytes, params } = squeezenet(SEED); // ~4.9 MB
 */

import { gaussian, mulberry32 } from '../digits/mlp';
import {
  attr,
  encodeModel,
  floatTensor,
  floatValueInfo,
  type Onnx,
  onnxMetadata,
} from '../onnx-writer';

export const INPUT_NAME = 'data';
export const OUTPUT_NAME = 'probs';
export const SIDE = 224;
export const CLASSES = 1000;
/** The seed of the committed figures (metrics.json). */
export const SEED = 11;
/** ImageNet's per-channel mean and standard deviation, the normalization the Logic applies. */
export const MEAN = [0.485, 0.456, 0.406] as const;
export const STD = [0.229, 0.224, 0.225] as const;

/** SqueezeNet 1.1's Fire modules: [squeeze, expand] channels; 'pool' marks a MaxPool. */
const LAYOUT: ([number, number] | 'pool')[] = [
  'pool',
  [16, 64],
  [16, 64],
  'pool',
  [32, 128],
  [32, 128],
  'pool',
  [48, 192],
  [48, 192],
  [64, 256],
  [64, 256],
];

export function squeezenet(seed: number = SEED): { bytes: Uint8Array; params: number } {
  const normal = gaussian(mulberry32(seed));
  const node: Onnx.INodeProto[] = [];
  const initializer: Onnx.ITensorProto[] = [];
  let params = 0;

  // Conv (+ Relu): returns the name of its output.
  const conv = (
    name: string,
    input: string,
    inC: number,
    outC: number,
    k: number,
    o: { stride?: number; pad?: number; relu?: boolean } = {},
  ): string => {
    const fanIn = inC * k * k;
    const std = Math.sqrt(2 / fanIn);
    const w = new Float32Array(outC * fanIn);
    for (let i = 0; i < w.length; i++) w[i] = normal() * std;
    initializer.push(floatTensor(`${name}.weight`, [outC, inC, k, k], w));
    initializer.push(floatTensor(`${name}.bias`, [outC], new Float32Array(outC)));
    params += w.length + outC;
    const pad = o.pad ?? 0;
    const stride = o.stride ?? 1;
    node.push({
      name,
      opType: 'Conv',
      input: [input, `${name}.weight`, `${name}.bias`],
      output: [name],
      attribute: [
        attr.ints('kernel_shape', [k, k]),
        attr.ints('strides', [stride, stride]),
        attr.ints('pads', [pad, pad, pad, pad]),
      ],
    });
    if (o.relu === false) return name;
    node.push({ name: `${name}.relu`, opType: 'Relu', input: [name], output: [`${name}.relu`] });
    return `${name}.relu`;
  };

  let x = conv('conv1', INPUT_NAME, 3, 64, 3, { stride: 2 });
  let channels = 64;
  let pools = 0;
  let fires = 0;
  for (const layer of LAYOUT) {
    if (layer === 'pool') {
      const name = `pool${++pools}`;
      node.push({
        name,
        opType: 'MaxPool',
        input: [x],
        output: [name],
        attribute: [
          attr.ints('kernel_shape', [3, 3]),
          attr.ints('strides', [2, 2]),
          attr.int('ceil_mode', 1),
        ],
      });
      x = name;
      continue;
    }
    const [s, e] = layer;
    const f = `fire${++fires + 1}`; // fire2…fire9, as the paper numbers them
    const squeezed = conv(`${f}.squeeze`, x, channels, s, 1);
    const a = conv(`${f}.expand1x1`, squeezed, s, e, 1);
    const b = conv(`${f}.expand3x3`, squeezed, s, e, 3, { pad: 1 });
    node.push({
      name: `${f}.concat`,
      opType: 'Concat',
      input: [a, b],
      output: [`${f}.concat`],
      attribute: [attr.int('axis', 1)],
    });
    x = `${f}.concat`;
    channels = 2 * e;
  }
  x = conv('conv10', x, channels, CLASSES, 1);
  node.push({ name: 'gap', opType: 'GlobalAveragePool', input: [x], output: ['gap'] });
  node.push({
    name: 'flatten',
    opType: 'Flatten',
    input: ['gap'],
    output: ['logits'],
    attribute: [attr.int('axis', 1)],
  });
  node.push({
    name: 'softmax',
    opType: 'Softmax',
    input: ['logits'],
    output: [OUTPUT_NAME],
    attribute: [attr.int('axis', 1)],
  });
  const bytes = encodeModel({
    producerName: 'brume models/squeezenet/generate.ts',
    docString:
      'SqueezeNet 1.1 with RANDOM weights (He init, seeded): for measuring overhead, not for classifying',
    graph: {
      name: 'squeezenet1_1_random',
      node,
      initializer,
      input: [floatValueInfo(INPUT_NAME, ['N', 3, SIDE, SIDE])],
      output: [floatValueInfo(OUTPUT_NAME, ['N', CLASSES])],
    },
    metadata: { weights: 'random', init: 'he-normal', seed: String(seed) },
  });
  return { bytes, params };
}

export { onnxMetadata };
