// A one-model app whose calls hand-driven nodes (tests/raw-node.ts) answer as an honest
// classifier would, or as a liar: for the honest-placement tests (unit and browser).
import { readFileSync } from 'node:fs';
import { buildManifest, packBundle } from '../core/manifest';
import { answerCall, onCalls, type RawNode } from './raw-node';

export const key = 'honest/classify/small@wasm';

/** One model service with one variant: raw nodes answer its calls by hand. */
export async function honestBundle(): Promise<Uint8Array> {
  const files = { 'small.onnx': new Uint8Array(readFileSync('models/digits/small.onnx')) };
  const manifest = await buildManifest(
    {
      brume: 1,
      name: 'honest',
      version: '1.0.0',
      services: {
        classify: {
          kind: 'model',
          task: 'digit-classification',
          inputs: [{ name: 'pixels', type: 'float32', dims: [-1, 784] }],
          outputs: [{ name: 'probs', type: 'float32', dims: [-1, 10] }],
          variants: {
            small: {
              file: 'small.onnx',
              accuracy: 0.95,
              latencyMs: 5,
              params: 1000,
              weights: 'trained',
              measured: 'test',
            },
          },
        },
      },
    },
    files,
  );
  return packBundle(manifest, files);
}

/** What a classifier answers for digit `d`; a liar answers the next digit. */
export const right = (d: number) => ({ label: d % 10, p: 0.9 });
export const wrong = (d: number) => ({ label: (d + 1) % 10, p: 0.9 });

/** Answers every call with `answer(input)` after `delayMs` (how slow it really is). */
export function serve(node: RawNode, answer: (d: number) => unknown, delayMs: number): number[] {
  const got: number[] = [];
  onCalls(node, (f) => {
    got.push(f.id);
    setTimeout(() => answerCall(node, f, answer(f.input as number)), delayMs);
  });
  return got;
}

/** Reports `p50` ms for the variant over many samples (true or not). */
export function claim(node: RawNode, p50: number): void {
  node.send({
    t: 'heartbeat',
    load: { queue: 0, maxConcurrency: 1 },
    apps: ['honest'],
    models: {},
    stats: { [key]: { count: 100, p50 } },
    paused: false,
  });
}
