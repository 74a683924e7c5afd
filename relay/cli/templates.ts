/**
 * The files `brume new` writes: an AssemblyScript Logic that turns `{ values: number[] }` into
 * the model's input tensor, calls the model and answers the best class; its brume.json; a test
 * that calls the deployed app over HTTP; a README. Each is a function of what the scaffold read
 * from the model (relay/cli/new.ts).
 */

/** What the templates need to know of the app and its model. */
export interface Shape {
  name: string;
  /** The model's first input and first output, as its graph names them. */
  input: string;
  output: string;
  /** The input's dims for one example: the graph's, a free batch dimension as 1. */
  dims: number[];
  /** The graph's dims (-1 free), for the manifest. */
  inputDims: number[];
  outputDims: number[];
  /** The variant's figures (a packaged model's measured ones; placeholders for the user's own). */
  figures: {
    accuracy: number;
    latencyMs: number;
    params: number;
    weights: 'trained' | 'random';
    measured: string;
  };
  /** Where the model came from, for the README. */
  modelNote: string;
}

const size = (s: Shape) => s.dims.reduce((a, b) => a * b, 1);

export function logicSource(s: Shape): string {
  return `// ${s.name}'s Logic: the RPC "predict" takes { values: [${size(s)} numbers] }, makes them the
// model's input tensor "${s.input}" [${s.dims.join(', ')}], calls the "model" service and answers
// { label, score, variant }: the index of the largest value of its output "${s.output}".
// The SDK's API: node_modules/brume/logics/sdk/README.md (logics/sdk in Brume's repository).
import { Request, Continuation, Fields, Writer, done, error, call } from "brume-sdk";
export { brume_alloc, brume_free } from "brume-sdk"; // required: the host allocates through these

const INPUT = "${s.input}";
const OUTPUT = "${s.output}";
const DIMS: i32[] = [${s.dims.join(', ')}];
const SIZE: i32 = ${size(s)};

export function predict(ptr: i32, len: i32): i32 {
  const f = new Fields(Request.read(ptr, len).input);
  const values = f.array("values");
  if (!f.failed && values.length != SIZE) {
    f.problem("input.values: expected " + SIZE.toString() + " numbers, got " + values.length.toString());
  }
  if (f.failed) return error(f.message);
  const data = new Float32Array(SIZE);
  for (let i = 0; i < SIZE; i++) {
    const v = values[i];
    if (!v.isNumber()) {
      return error("input.values[" + i.toString() + "]: expected a number, got " + v.kindName());
    }
    data[i] = <f32>v.asFloat();
  }
  const payload = new Writer().map(1).key("inputs").map(1).key(INPUT).tensor(DIMS, data);
  return call("model", "", payload, "onModel");
}

/** Continuation of predict: the model's answer. */
export function onModel(ptr: i32, len: i32): i32 {
  const c = Continuation.read(ptr, len);
  if (!c.ok) return error("the model failed: " + c.errorMessage, c.errorCode);
  const result = new Fields(c.value, "model result");
  const out = result.map("outputs").tensor(OUTPUT);
  if (!result.failed && out.type != "float32") {
    result.problem("model result.outputs." + OUTPUT + ": expected float32, got " + out.type);
  }
  if (result.failed) return error(result.message);
  const p = out.f32();
  let best = 0;
  for (let i = 1; i < p.length; i++) if (p[i] > p[best]) best = i;
  const answer = new Writer()
    .map(3)
    .key("label").int(best)
    .key("score").float(p[best])
    .key("variant").str(c.rpc);
  return done(answer);
}
`;
}

export function manifestSource(s: Shape): string {
  const manifest = {
    brume: 1,
    name: s.name,
    version: '0.1.0',
    description: `${s.name}: a Logic that calls a Model (made by brume new)`,
    services: {
      predict: {
        kind: 'logic',
        file: 'logic/predict.wasm',
        rpcs: ['predict'],
        models: ['model'],
        limits: { timeoutMs: 5000, memoryMiB: 64 },
      },
      model: {
        kind: 'model',
        task: 'classification',
        inputs: [{ name: s.input, type: 'float32', dims: s.inputDims }],
        outputs: [{ name: s.output, type: 'float32', dims: s.outputDims }],
        variants: { default: { file: 'models/model.onnx', ...s.figures } },
      },
    },
    sources: { 'logic/predict.wasm': 'logic/predict.ts' },
  };
  return `${JSON.stringify(manifest, null, 2)}\n`;
}

export function testSource(s: Shape): string {
  return `// Calls the deployed app over the relay's HTTP API: node --test (after brume dev or deploy).
// BRUME_RELAY says where the relay is (default http://127.0.0.1:8787).
import assert from "node:assert/strict";
import { test } from "node:test";

const relay = process.env.BRUME_RELAY ?? "http://127.0.0.1:8787";
const SIZE = ${size(s)};

async function predict(input) {
  const res = await fetch(\`\${relay}/api/call/${s.name}/predict\`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ input }),
  });
  return { status: res.status, body: await res.json() };
}

test("predict answers the best class of the model's output", async () => {
  const { status, body } = await predict({ values: new Array(SIZE).fill(0.5) });
  assert.equal(status, 200, JSON.stringify(body));
  assert.ok(Number.isInteger(body.value.label) && body.value.label >= 0, JSON.stringify(body.value));
  assert.equal(typeof body.value.score, "number");
});

test("predict refuses an input of the wrong size, naming the field", async () => {
  const { status, body } = await predict({ values: [1, 2, 3] });
  assert.notEqual(status, 200);
  assert.match(body.error.message, /input\\.values: expected ${size(s)} numbers, got 3/);
});
`;
}

export function readmeSource(s: Shape): string {
  return `# ${s.name}

A Brume app made by \`brume new\`: a Logic (\`logic/predict.ts\`, AssemblyScript) that calls a
Model (\`models/model.onnx\`: ${s.modelNote}).

- \`brume.json\`: the manifest; \`sources\` says \`logic/predict.wasm\` is compiled from
  \`logic/predict.ts\` when packed.
- \`logic/predict.ts\`: the RPC \`predict\` takes \`{ values: [${size(s)} numbers] }\` (the input
  tensor \`${s.input}\` [${s.dims.join(', ')}], row-major) and answers \`{ label, score, variant }\`.
- \`test.mjs\`: calls the deployed app over HTTP (\`node --test\`).

With a relay running (\`brume start\`, or \`npm start\` in Brume's checkout):

\`\`\`sh
brume dev                # packs and deploys, then again on every change (Ctrl-C stops)
node --test              # the test, against BRUME_RELAY (default http://127.0.0.1:8787)
brume call ${s.name} predict --input '{"values":[...${size(s)} numbers]}'
brume pack && brume deploy ${s.name}-0.1.0.brume   # ship the version brume.json says
\`\`\`

Open the relay's page in a tab or two: each tab is a node that can run the app
(\`window.brume.invoke("${s.name}", "predict", { values })\` in page code).
`;
}
