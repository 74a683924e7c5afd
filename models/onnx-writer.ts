/**
 * The parts every model this repository writes shares: float32 initializers, float value infos,
 * node attributes and the ModelProto wrapper (opset 13, IR version 8), with the protobufjs types
 * of the `onnx-proto` package. models/digits/onnx.ts (MLPs) and models/squeezenet/ (a CNN) build
 * their graphs with these.
 *
 * @example
 * const bytes = encodeModel({ graph: { name: 'g', node, initializer, input, output },
 *   producerName: 'brume models/x.ts', docString: '…', metadata: { seed: '1' } });
 */

import type { onnx as Onnx } from 'onnx-proto';
import onnxProto from 'onnx-proto';

// onnx-proto is CommonJS; Node's ESM loader only sees its default export.
export const { onnx } = onnxProto;
export type { Onnx };

export const OPSET = 13;
export const IR_VERSION = 8;

/** An initializer holding `values` as little-endian float32 raw_data. */
export function floatTensor(name: string, dims: number[], values: Float32Array): Onnx.ITensorProto {
  const raw = new Uint8Array(values.length * 4);
  const view = new DataView(raw.buffer);
  for (let i = 0; i < values.length; i++) view.setFloat32(i * 4, values[i]!, true);
  return { name, dims, dataType: onnx.TensorProto.DataType.FLOAT, rawData: raw };
}

/** A float32 graph input or output; a string dimension is symbolic (e.g. 'N' for the batch). */
export function floatValueInfo(name: string, dims: (number | string)[]): Onnx.IValueInfoProto {
  return {
    name,
    type: {
      tensorType: {
        elemType: onnx.TensorProto.DataType.FLOAT,
        shape: {
          dim: dims.map((d) => (typeof d === 'string' ? { dimParam: d } : { dimValue: d })),
        },
      },
    },
  };
}

/** Node attributes: `ints` for integer lists, `int`, `float`. */
export const attr = {
  int: (name: string, i: number): Onnx.IAttributeProto => ({
    name,
    type: onnx.AttributeProto.AttributeType.INT,
    i,
  }),
  ints: (name: string, ints: number[]): Onnx.IAttributeProto => ({
    name,
    type: onnx.AttributeProto.AttributeType.INTS,
    ints,
  }),
  float: (name: string, f: number): Onnx.IAttributeProto => ({
    name,
    type: onnx.AttributeProto.AttributeType.FLOAT,
    f,
  }),
};

/** The ONNX bytes of `graph` in a model of this repository's opset and IR version. */
export function encodeModel(opts: {
  graph: Onnx.IGraphProto;
  producerName: string;
  docString: string;
  /** Goes into the model's metadata_props. */
  metadata?: Record<string, string>;
}): Uint8Array {
  const model: Onnx.IModelProto = {
    irVersion: IR_VERSION,
    opsetImport: [{ domain: '', version: OPSET }],
    producerName: opts.producerName,
    producerVersion: '1',
    docString: opts.docString,
    graph: opts.graph,
    metadataProps: Object.entries(opts.metadata ?? {}).map(([key, value]) => ({ key, value })),
  };
  return onnx.ModelProto.encode(onnx.ModelProto.create(model)).finish();
}

/** The model's metadata_props as a plain object. */
export function onnxMetadata(bytes: Uint8Array): Record<string, string> {
  const model = onnx.ModelProto.decode(bytes);
  return Object.fromEntries(model.metadataProps.map((p) => [p.key ?? '', p.value ?? '']));
}
