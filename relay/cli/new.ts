/**
 * `brume new <name>`: scaffolds an app folder that packs and deploys as it is: brume.json, an
 * AssemblyScript Logic (logic/predict.ts) calling a Model (models/model.onnx: the packaged digit
 * classifier, the SqueezeNet the build generates, or the author's own .onnx, whose input and
 * output are read from the file), a test and a README (relay/cli/templates.ts).
 * @example brume new hello --model ./my-model.onnx
 */
import { mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join, relative, resolve } from 'node:path';
import { InputError } from '../../core/errors';
import { isAppName } from '../../core/names';
import { type GraphTensor, readGraph } from '../bundle-check';
import { packageRoot } from '../package-root';
import { type Invocation, UsageError } from './args';
import { logicSource, manifestSource, readmeSource, type Shape, testSource } from './templates';

/** The models a scaffold can take by name: where they are in the package, and their figures. */
const packaged: Record<string, { file: string; metrics: string; variant: string; note: string }> = {
  digits: {
    file: 'models/digits/small.onnx',
    metrics: 'models/digits/metrics.json',
    variant: 'small',
    note: "Brume's digit classifier (784 → 32 → 10, trained on MNIST; input: 28×28 values in [0, 1], 0 the background)",
  },
  squeezenet: {
    file: 'models/squeezenet/squeezenet.onnx',
    metrics: 'models/squeezenet/metrics.json',
    variant: 'v11',
    note: 'SqueezeNet 1.1 with RANDOM weights (its answers mean nothing): a stand-in for your own image model',
  },
};

/** The largest model file a scaffold copies (the relay's bundle limit is 256 MiB by default). */
const MAX_MODEL_BYTES = 1024 * 2 ** 20;

export async function scaffold({ positionals, flag }: Invocation): Promise<number> {
  const [name, ...extra] = positionals;
  if (!name || extra.length) throw new UsageError('new takes one app name: brume new hello');
  if (!isAppName(name)) {
    throw new UsageError(
      `"${name}" is not an app name: a lowercase letter, then lowercase letters, digits or -`,
    );
  }
  const dir = resolve(flag('dir') ?? name);
  const entries = await readdir(dir).catch(() => [] as string[]);
  if (entries.length > 0) throw new InputError(`${dir} is not empty: pick another --dir`);

  const { bytes, shape } = await modelFor(name, flag('model') ?? 'digits');
  await mkdir(join(dir, 'logic'), { recursive: true });
  await mkdir(join(dir, 'models'), { recursive: true });
  const files: [string, string | Uint8Array][] = [
    ['brume.json', manifestSource(shape)],
    ['logic/predict.ts', logicSource(shape)],
    ['models/model.onnx', bytes],
    ['test.mjs', testSource(shape)],
    ['README.md', readmeSource(shape)],
    ['.gitignore', '*.brume\n'],
  ];
  for (const [file, content] of files) await writeFile(join(dir, file), content, { flag: 'wx' });
  const shown = relative(process.cwd(), dir) || '.';
  console.log(`made ${name} in ${shown}: ${files.map(([f]) => f).join(', ')}`);
  console.log(`next: cd ${shown} && brume dev      (a relay must run: brume start)`);
  return 0;
}

async function modelFor(name: string, model: string): Promise<{ bytes: Uint8Array; shape: Shape }> {
  const known = packaged[model];
  if (!known && !model.endsWith('.onnx')) {
    throw new UsageError(`--model must be digits, squeezenet or a .onnx file, got "${model}"`);
  }
  const file = known ? join(packageRoot, known.file) : resolve(model);
  const size = await stat(file).then(
    (s) => s.size,
    () => {
      const hint = model === 'squeezenet' ? ' (npm run build:models makes it)' : '';
      throw new InputError(`--model: ${file} does not exist${hint}`);
    },
  );
  if (size > MAX_MODEL_BYTES) {
    throw new InputError(`--model: ${file} is ${size} bytes, over the ${MAX_MODEL_BYTES} allowed`);
  }
  const bytes = new Uint8Array(await readFile(file));
  const graph = readGraph(file, bytes, '--model');
  if (graph.inputs.length > 1) {
    throw new InputError(
      `--model: ${file} takes ${graph.inputs.length} inputs; the scaffold's Logic sends one (write yours from it)`,
    );
  }
  const input = ioOf(graph.inputs, 'input', file);
  const output = ioOf(graph.outputs, 'output', file);
  const dims = input.dims.map((d, i) => (d === -1 && i === 0 ? 1 : d));
  if (dims.some((d) => d === -1)) {
    throw new InputError(
      `--model: input "${input.name}" of ${file} has free dimensions beyond the first ([${input.dims.join(', ')}]); the scaffold needs a fixed size`,
    );
  }
  return {
    bytes,
    shape: {
      name,
      input: input.name,
      output: output.name,
      dims,
      inputDims: input.dims,
      outputDims: output.dims,
      figures: known ? await packagedFigures(known) : placeholders(file),
      modelNote: known?.note ?? `copied from ${file}`,
    },
  };
}

/** The first input or output, which must be a float32 tensor of known rank. */
function ioOf(list: GraphTensor[], what: string, file: string): GraphTensor & { dims: number[] } {
  const t = list[0];
  if (!t) throw new InputError(`--model: ${file} has no ${what}`);
  if (t.type !== 'float32' || !t.dims) {
    throw new InputError(
      `--model: ${what} "${t.name}" of ${file} is ${t.type}${t.dims ? '' : ' of no known shape'}; the scaffold's Logic handles float32 tensors of known shape`,
    );
  }
  return t as GraphTensor & { dims: number[] };
}

async function packagedFigures(known: {
  metrics: string;
  variant: string;
}): Promise<Shape['figures']> {
  const m = JSON.parse(await readFile(join(packageRoot, known.metrics), 'utf8'));
  const v = m.variants[known.variant];
  return {
    accuracy: v.accuracy,
    latencyMs: v.latencyMs,
    params: v.params,
    weights: v.weights,
    measured: v.measured ?? m.measured,
  };
}

function placeholders(file: string): Shape['figures'] {
  return {
    accuracy: 0,
    latencyMs: 0,
    params: 0,
    weights: 'trained',
    measured: `NOT MEASURED: brume new wrote placeholders for ${file}; put its accuracy, latency (ms), parameter count and whether its weights are trained or random here`,
  };
}
