/**
 * Checks a bundle against its own code, at pack and at deploy: every rpc a Logic service lists is
 * a function its wasm exports, and the wasm imports nothing the ABI forbids (PROTOCOL.md §3.1);
 * every Model service's declared inputs and outputs are those of each variant's ONNX graph, by
 * name, element type and rank (and size where both fix one). Each refusal is a ManifestError
 * naming the field, e.g. `services.classify.rpcs[1]: "preprocess" is not exported by
 * logic/classify.wasm (its functions: classify, onModel)`.
 * @example await checkCode(manifest, files); // throws ManifestError
 */
import proto from 'onnx-proto';
import { inspectLogic, type LogicModuleInfo } from '../core/abi/inspect';
import { ManifestError } from '../core/errors';
import type {
  LogicService,
  Manifest,
  ModelService,
  TensorSpec,
  TensorType,
} from '../core/manifest';

const { onnx } = proto;

/** ONNX TensorProto.DataType codes of the element types PROTOCOL.md §4 allows. */
const onnxTypes: Record<number, TensorType> = {
  1: 'float32',
  2: 'uint8',
  6: 'int32',
  7: 'int64',
  9: 'bool',
};

/** Throws ManifestError at the first service whose code disagrees with what the manifest says. */
export async function checkCode(
  manifest: Manifest,
  files: Record<string, Uint8Array>,
): Promise<void> {
  for (const [name, s] of Object.entries(manifest.services)) {
    if (s.kind === 'logic') await checkLogic(name, s, files[s.file]!);
    else checkModel(name, s, files);
  }
}

async function checkLogic(name: string, s: LogicService, bytes: Uint8Array): Promise<void> {
  const at = `services.${name}`;
  let module: WebAssembly.Module;
  try {
    module = await WebAssembly.compile(bytes as Uint8Array<ArrayBuffer>);
  } catch (e) {
    throw new ManifestError(`${at}.file: ${s.file} is not a WebAssembly module (${text(e)})`);
  }
  let exports: LogicModuleInfo['exports'];
  try {
    ({ exports } = inspectLogic(bytes, module));
  } catch (e) {
    throw new ManifestError(`${at}.file: ${s.file}: ${text(e)}`);
  }
  const functions = exports.filter((e) => e.kind === 'function').map((e) => e.name);
  s.rpcs.forEach((rpc, i) => {
    if (functions.includes(rpc)) return;
    const own = functions.filter((f) => f !== 'brume_alloc' && f !== 'brume_free');
    throw new ManifestError(
      `${at}.rpcs[${i}]: "${rpc}" is not exported by ${s.file} (its functions: ${own.join(', ') || 'none'})`,
    );
  });
}

export interface GraphTensor {
  name: string;
  type: TensorType | string;
  /** undefined: the graph gives no shape; -1: a free dimension. */
  dims: number[] | undefined;
}

function checkModel(name: string, s: ModelService, files: Record<string, Uint8Array>): void {
  for (const [id, v] of Object.entries(s.variants)) {
    const where = `${v.file} (variant "${id}")`;
    const graph = readGraph(v.file, files[v.file]!, `services.${name}.variants.${id}.file`);
    compare(`services.${name}.inputs`, s.inputs, graph.inputs, where, 'input');
    compare(`services.${name}.outputs`, s.outputs, graph.outputs, where, 'output');
    // A graph input left undeclared is one no caller can send: every run would fail.
    const declared = new Set(s.inputs.map((t) => t.name));
    const missing = graph.inputs.filter((t) => !declared.has(t.name)).map((t) => t.name);
    if (missing.length > 0) {
      throw new ManifestError(
        `services.${name}.inputs: ${where} also takes ${missing.map((m) => `"${m}"`).join(', ')}, which is not declared`,
      );
    }
  }
}

function compare(
  at: string,
  declared: TensorSpec[],
  graph: GraphTensor[],
  where: string,
  what: 'input' | 'output',
): void {
  declared.forEach((t, i) => {
    const g = graph.find((x) => x.name === t.name);
    if (!g) {
      const names = graph.map((x) => `"${x.name}"`).join(', ');
      throw new ManifestError(
        `${at}[${i}].name: "${t.name}" is not an ${what} of ${where} (its ${what}s: ${names})`,
      );
    }
    if (g.type !== t.type) {
      throw new ManifestError(`${at}[${i}].type: "${t.type}" but ${where} has ${g.type}`);
    }
    if (!g.dims) return;
    if (g.dims.length !== t.dims.length) {
      throw new ManifestError(
        `${at}[${i}].dims: rank ${t.dims.length} but ${where} has rank ${g.dims.length} ([${g.dims.join(', ')}])`,
      );
    }
    t.dims.forEach((d, k) => {
      const gd = g.dims![k]!;
      if (d !== -1 && gd !== -1 && d !== gd) {
        throw new ManifestError(`${at}[${i}].dims[${k}]: ${d} but ${where} fixes it at ${gd}`);
      }
    });
  });
}

/** The inputs (weights left out) and outputs of the ONNX graph in `bytes`; ManifestError if it is none. */
export function readGraph(
  file: string,
  bytes: Uint8Array,
  at: string,
): { inputs: GraphTensor[]; outputs: GraphTensor[] } {
  let graph: proto.onnx.IGraphProto | null | undefined;
  try {
    graph = onnx.ModelProto.decode(bytes).graph;
  } catch (e) {
    throw new ManifestError(`${at}: ${file} is not an ONNX model (${text(e)})`);
  }
  if (!graph) throw new ManifestError(`${at}: ${file} is an ONNX model without a graph`);
  // Before IR version 4 weights were listed as inputs too; a caller never sends those.
  const weights = new Set((graph.initializer ?? []).map((w) => w.name));
  const inputs = (graph.input ?? []).filter((v) => !weights.has(v.name ?? ''));
  return { inputs: inputs.map(tensorOf), outputs: (graph.output ?? []).map(tensorOf) };
}

function tensorOf(v: proto.onnx.IValueInfoProto): GraphTensor {
  const t = v.type?.tensorType;
  const code = t?.elemType ?? 0;
  const dims = t?.shape?.dim?.map((d) => {
    const n = Number(String(d.dimValue ?? 0)); // int64: a Long, or a number
    return d.dimParam || !(n > 0) ? -1 : n;
  });
  const type =
    onnxTypes[code] ?? (t ? `ONNX element type ${code}` : 'no tensor (a sequence or map)');
  return { name: v.name ?? '', type, dims: t?.shape ? dims : undefined };
}

function text(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
