// Test apps built from the real Logic and model files (npm run build:logics first), shared by
// the Node and browser suites. Each bundle goes through the same packBundle a user's would.
import { readFileSync } from 'node:fs';
import proto from 'onnx-proto';
import { type Bundle, buildManifest, type ManifestDraft, packBundle } from '../core/manifest';
import { type Tensor, tensorFrom } from '../core/tensor';
import { loadDigits } from '../models/digits/data';
import { createStore } from '../relay/store';

const root = new URL('..', import.meta.url);
const read = (path: string) => new Uint8Array(readFileSync(new URL(path, root)));
/** A built Logic (`logics/build/<name>.wasm`; npm run build:logics). */
export const wasm = (name: string) => read(`logics/build/${name}.wasm`);

/**
 * A real ONNX model that passes `input` on as `output` (one Identity node), float32 of `dims`
 * (-1 free): for bundles whose model is checked at deploy but never run.
 */
export function identityOnnx(input: string, output: string, dims: number[]): Uint8Array {
  const { onnx } = proto;
  const shape = { dim: dims.map((d) => (d === -1 ? { dimParam: 'N' } : { dimValue: d })) };
  const value = (name: string) => ({ name, type: { tensorType: { elemType: 1, shape } } });
  // A Uint8Array, not the Buffer protobufjs gives in Node (whose slice() shares memory).
  const bytes = onnx.ModelProto.encode({
    irVersion: 7,
    opsetImport: [{ domain: '', version: 13 }],
    graph: {
      name: 'identity',
      node: [{ opType: 'Identity', input: [input], output: [output] }],
      input: [value(input)],
      output: [value(output)],
    },
  }).finish();
  return new Uint8Array(bytes);
}
const metrics = JSON.parse(readFileSync(new URL('models/digits/metrics.json', root), 'utf8')) as {
  measured: string;
  variants: Record<string, { accuracy: number; latencyMs: number; params: number }>;
};

const tensorIo = {
  inputs: [{ name: 'pixels', type: 'float32' as const, dims: [-1, 784] }],
  outputs: [{ name: 'probs', type: 'float32' as const, dims: [-1, 10] }],
};
const variant = (id: string, file: string) => ({
  file,
  accuracy: metrics.variants[id]!.accuracy,
  latencyMs: metrics.variants[id]!.latencyMs,
  params: metrics.variants[id]!.params,
  weights: 'trained' as const,
  measured: metrics.measured,
});

async function bundle(draft: ManifestDraft, files: Record<string, Uint8Array>): Promise<Bundle> {
  return { manifest: await buildManifest(draft, files), files };
}

/** Logics that misbehave: loop forever, exhaust memory, trap, fail; plus echo for the healthy path. */
export function hostileApp(): Promise<Bundle> {
  return bundle(
    {
      brume: 1,
      name: 'hostile',
      version: '1.0.0',
      description: 'test fixtures: Logics that misbehave',
      demos: [{ title: 'Echo a greeting', service: 'echo', rpc: 'echo', input: 'hello, fabric' }],
      services: {
        loop: {
          kind: 'logic',
          file: 'loop.wasm',
          rpcs: ['run'],
          limits: { timeoutMs: 500, memoryMiB: 4 },
        },
        hog: {
          kind: 'logic',
          file: 'hog.wasm',
          rpcs: ['run'],
          limits: { timeoutMs: 5000, memoryMiB: 4 },
        },
        echo: {
          kind: 'logic',
          file: 'echo.wasm',
          rpcs: ['echo', 'fail', 'trap', 'spin'],
          // Room for a 4 MiB payload in, decoded and written out again (the transfer tests).
          limits: { timeoutMs: 20_000, memoryMiB: 64 },
        },
      },
    },
    {
      'loop.wasm': wasm('loop-forever'),
      'hog.wasm': wasm('memory-hog'),
      'echo.wasm': wasm('echo'),
    },
  );
}

/** The echo Logic shipped as app `greet` at `version` (its `echo` and slow `spin` rpcs): versions tests. */
export function greetApp(version: string): Promise<Bundle> {
  return bundle(
    {
      brume: 1,
      name: 'greet',
      version,
      services: {
        greet: {
          kind: 'logic',
          file: 'echo.wasm',
          rpcs: ['echo', 'spin'],
          limits: { timeoutMs: 60_000, memoryMiB: 16 },
        },
      },
    },
    { 'echo.wasm': wasm('echo') },
  );
}

/** The echo Logic as app `scaled`, whose service asks for up to 4 workers per node (§2.1 `scale`). */
export function scaledApp(): Promise<Bundle> {
  return bundle(
    {
      brume: 1,
      name: 'scaled',
      version: '1.0.0',
      services: {
        echo: {
          kind: 'logic',
          file: 'echo.wasm',
          rpcs: ['echo'],
          limits: { timeoutMs: 10_000, memoryMiB: 16 },
          scale: { max: 4, idleMs: 60_000 },
        },
      },
    },
    { 'echo.wasm': wasm('echo') },
  );
}

/** Files whose hashes match the manifest but whose content is not WebAssembly / ONNX. */
export function brokenApp(): Promise<Bundle> {
  const junk = new TextEncoder().encode('this is not a wasm module nor an onnx model');
  return bundle(
    {
      brume: 1,
      name: 'broken',
      version: '1.0.0',
      description: 'test fixtures: corrupt files with honest hashes',
      services: {
        logic: { kind: 'logic', file: 'corrupt.wasm', rpcs: ['run'] },
        imports: { kind: 'logic', file: 'bad-import.wasm', rpcs: ['run'] },
        ownmem: { kind: 'logic', file: 'own-memory.wasm', rpcs: ['run'] },
        model: {
          kind: 'model',
          task: 'digit-classification',
          ...tensorIo,
          variants: { bad: { ...variant('small', 'corrupt.onnx') } },
        },
      },
    },
    {
      'corrupt.wasm': junk,
      'corrupt.onnx': junk.slice(0, 30),
      'bad-import.wasm': wasm('bad-import'),
      'own-memory.wasm': wasm('own-memory'),
    },
  );
}

/**
 * Logic → Logic → Model: `front` calls `classify`, which calls `model`. `frontAlone`: `front`
 * depends on no model (`models: []`), so it is placed by its own figures and any node may run it.
 */
export function hopsApp(o: { frontAlone?: boolean } = {}): Promise<Bundle> {
  return bundle(
    {
      brume: 1,
      name: 'hops',
      version: '1.0.0',
      description: 'test fixture: a request that crosses three services',
      services: {
        front: {
          kind: 'logic',
          file: 'front.wasm',
          rpcs: ['entry'],
          ...(o.frontAlone && { models: [] }),
        },
        classify: { kind: 'logic', file: 'classify.wasm', rpcs: ['classify', 'preprocess'] },
        model: {
          kind: 'model',
          task: 'digit-classification',
          ...tensorIo,
          variants: {
            small: variant('small', 'small.onnx'),
            large: variant('large', 'large.onnx'),
          },
        },
      },
    },
    {
      'front.wasm': wasm('front'),
      'classify.wasm': wasm('digits'),
      'small.onnx': read('models/digits/small.onnx'),
      'large.onnx': read('models/digits/large.onnx'),
    },
  );
}

/**
 * A one-Logic app named `name` (the echo fixture, with its context RPCs): HTTP context writes
 * need a deployed app, and a test that shares context across apps needs two.
 */
export function contextApp(name: string, version = '1.0.0'): Promise<Bundle> {
  return bundle(
    {
      brume: 1,
      name,
      version,
      description: 'test fixture: an app whose Logic reads and writes its context',
      services: {
        main: {
          kind: 'logic',
          file: 'echo.wasm',
          rpcs: ['echo', 'remember', 'recall'],
          limits: { timeoutMs: 20_000, memoryMiB: 16 },
        },
      },
    },
    { 'echo.wasm': wasm('echo') },
  );
}

/**
 * The squeezenet sample app (logics/squeezenet/brume.json) as a bundle: SqueezeNet 1.1 with
 * RANDOM weights (`npm run build` generates models/squeezenet/squeezenet.onnx).
 */
export function squeezenetApp(): Promise<Bundle> {
  const m = JSON.parse(readFileSync(new URL('models/squeezenet/metrics.json', root), 'utf8')) as {
    measured: string;
    variants: { v11: { accuracy: number; latencyMs: number; params: number } };
  };
  const { accuracy, latencyMs, params } = m.variants.v11;
  return bundle(
    {
      brume: 1,
      name: 'squeezenet',
      version: '1.0.0',
      description: 'SqueezeNet 1.1 with random weights, for overhead measurements',
      services: {
        classify: {
          kind: 'logic',
          file: 'classify.wasm',
          rpcs: ['classify', 'preprocess'],
          limits: { timeoutMs: 10_000, memoryMiB: 64 },
        },
        model: {
          kind: 'model',
          task: 'image-classification',
          inputs: [{ name: 'data', type: 'float32', dims: [-1, 3, 224, 224] }],
          outputs: [{ name: 'probs', type: 'float32', dims: [-1, 1000] }],
          variants: {
            v11: {
              file: 'squeezenet.onnx',
              accuracy,
              latencyMs,
              params,
              weights: 'random',
              measured: m.measured,
            },
          },
        },
      },
    },
    {
      'classify.wasm': wasm('squeezenet'),
      'squeezenet.onnx': read('models/squeezenet/squeezenet.onnx'),
    },
  );
}

/** A `width`×`height` RGBA test picture: smooth colour gradients with a bright disc off-centre. */
export function rgbaImage(width: number, height: number): Uint8Array {
  const out = new Uint8Array(width * height * 4);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const i = (y * width + x) * 4;
      const disc =
        (x - width * 0.6) ** 2 + (y - height * 0.4) ** 2 < (Math.min(width, height) / 5) ** 2;
      out[i] = disc ? 250 : Math.round((255 * x) / width);
      out[i + 1] = disc ? 240 : Math.round((255 * y) / height);
      out[i + 2] = disc ? 40 : Math.round((255 * (x + y)) / (width + height));
      out[i + 3] = 255;
    }
  }
  return out;
}

/**
 * The test apps a relay's deploy accepts. `brokenApp` is not one of them (its code does not match
 * its manifest): `plantApp` puts it in a relay's store, as a tampered disk would.
 */
export async function testBundles(): Promise<Uint8Array[]> {
  return (await Promise.all([hostileApp(), hopsApp()])).map((b) => packBundle(b.manifest, b.files));
}

/**
 * Writes `b` straight into the store under `dataDir`, past the deploy's checks: how a node's own
 * defences (it verifies and loads every file itself) meet files a relay should never have served.
 */
export async function plantApp(dataDir: string, b: Bundle): Promise<void> {
  const store = await createStore(dataDir);
  for (const [path, entry] of Object.entries(b.manifest.files)) {
    await store.blobs.put(entry.sha256, b.files[path]!);
  }
  await store.apps.put(b.manifest);
}

/**
 * A held-out digit drawn as a caller would send it: scaled by `scale`, placed at (dx, dy) on a
 * `width`×`height` canvas, as grayscale bytes (0 background, 255 ink).
 */
export function drawDigit(
  x: Float32Array,
  index: number,
  {
    width,
    height,
    scale,
    dx,
    dy,
  }: { width: number; height: number; scale: number; dx: number; dy: number },
): Uint8Array {
  const out = new Uint8Array(width * height);
  for (let y = 0; y < height; y++) {
    for (let xx = 0; xx < width; xx++) {
      const sx = Math.floor((xx - dx) / scale);
      const sy = Math.floor((y - dy) / scale);
      if (sx < 0 || sy < 0 || sx >= 28 || sy >= 28) continue;
      out[y * width + xx] = Math.round(x[index * 784 + sy * 28 + sx]! * 255);
    }
  }
  return out;
}

/**
 * A pipeline fixture (issue 13) without the OCR app (`tiered`: a stage whose service runs on fog
 * nodes only): `chain` runs prepare (the echo Logic, NI) →
 * detect (the small digits model, LI) and, fanned out over `lines`, classify (the large digits
 * model, HI, one run per element) → join (echo again, NI, given `{ detect, classify }`).
 * `spin` fans the spin Logic out over `jobs` (`{ n }` each): branches that take a while.
 * Quality levels are test figures, not measurements.
 */
export function pipelineApp(): Promise<Bundle> {
  const levels = [
    { value: 1, accuracy: 0.9, latencyMs: 5, measured: 'test fixture figures, not measured' },
    { value: 2, accuracy: 0.97, latencyMs: 50, measured: 'test fixture figures, not measured' },
  ];
  return bundle(
    {
      brume: 1,
      name: 'chain',
      version: '1.0.0',
      description: 'test fixture: pipelines of a Logic, two models, a fan-out and a join',
      services: {
        pre: {
          kind: 'logic',
          file: 'echo.wasm',
          rpcs: ['echo', 'spin', 'fail'],
          models: [],
          limits: { timeoutMs: 30_000 },
        },
        model: {
          kind: 'model',
          task: 'digit-classification',
          ...tensorIo,
          variants: {
            small: variant('small', 'small.onnx'),
            large: variant('large', 'large.onnx'),
          },
        },
        // The echo again, on fog nodes only (PROTOCOL.md §2.1 `tiers`).
        up: { kind: 'logic', file: 'echo.wasm', rpcs: ['echo'], models: [], tiers: ['fog'] },
      },
      pipelines: {
        chain: {
          description: 'prepare → detect, prepare → classify each line → join',
          stages: {
            prepare: { service: 'pre', rpc: 'echo', from: ['$input'], class: 'NI' },
            detect: { service: 'model', rpc: 'small', from: ['prepare'], class: 'LI' },
            classify: {
              service: 'model',
              rpc: 'large',
              from: ['prepare'],
              each: 'lines',
              class: 'HI',
              priority: 1,
            },
            join: { service: 'pre', rpc: 'echo', from: ['detect', 'classify'], class: 'NI' },
          },
          output: 'join',
          quality: { field: 'side', levels },
        },
        spin: {
          stages: {
            prepare: { service: 'pre', rpc: 'echo', from: ['$input'], class: 'NI' },
            work: { service: 'pre', rpc: 'spin', from: ['prepare'], each: 'jobs', class: 'HI' },
            join: { service: 'pre', rpc: 'echo', from: ['$input', 'work'], class: 'NI' },
          },
          output: 'join',
        },
        failing: {
          stages: { bad: { service: 'pre', rpc: 'fail', from: ['$input'], class: 'NI' } },
          output: 'bad',
        },
        late: {
          stages: {
            slow: { service: 'pre', rpc: 'spin', from: ['$input'], class: 'NI', deadlineMs: 30 },
          },
          output: 'slow',
        },
        tiered: {
          stages: {
            near: { service: 'pre', rpc: 'echo', from: ['$input'], class: 'NI' },
            far: { service: 'up', rpc: 'echo', from: ['near'], class: 'NI' },
          },
          output: 'far',
        },
        after: {
          stages: {
            slow: { service: 'pre', rpc: 'spin', from: ['$input'], class: 'NI' },
            echo: { service: 'pre', rpc: 'echo', from: ['slow'], class: 'NI', deadlineMs: 1000 },
          },
          output: 'echo',
        },
      },
    },
    {
      'echo.wasm': wasm('echo'),
      'small.onnx': read('models/digits/small.onnx'),
      'large.onnx': read('models/digits/large.onnx'),
    },
  );
}

/** Held-out digits as model inputs, and their labels. */
export function digitLines(count: number): {
  lines: { inputs: { pixels: Tensor } }[];
  labels: number[];
} {
  const { heldout } = loadDigits();
  const lines = [];
  const labels = [];
  for (let i = 0; i < count; i++) {
    const x = heldout.x.subarray(i * 784, (i + 1) * 784);
    lines.push({ inputs: { pixels: tensorFrom('float32', [1, 784], Float32Array.from(x)) } });
    labels.push(heldout.y[i]!);
  }
  return { lines, labels };
}
