/**
 * Writes models/squeezenet/squeezenet.onnx (SqueezeNet 1.1, RANDOM weights, seed SEED) unless the
 * file already holds those bytes; `npm run build` runs it. With --measure it also times the model
 * on onnxruntime-node and rewrites metrics.json, whose figures the app's manifest carries.
 *
 * @example npx tsx models/squeezenet/generate.ts [--measure]
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { fileURLToPath, pathToFileURL } from 'node:url';
import * as ort from 'onnxruntime-node';
import { SEED, SIDE, squeezenet } from './squeezenet';

const here = (name: string) => fileURLToPath(new URL(name, import.meta.url));
const onnxPath = here('squeezenet.onnx');

/** Writes the model file unless it holds these bytes already; returns them and what it did. */
export function ensureModel(): {
  bytes: Uint8Array;
  params: number;
  sha256: string;
  written: boolean;
} {
  const { bytes, params } = squeezenet(SEED);
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  const same = existsSync(onnxPath) && Buffer.from(bytes).equals(readFileSync(onnxPath));
  if (!same) {
    // Whole or not at all: a build running beside a test never reads half a model.
    const tmp = `${onnxPath}.${process.pid}.tmp`;
    writeFileSync(tmp, bytes);
    renameSync(tmp, onnxPath);
  }
  return { bytes, params, sha256, written: !same };
}

async function main(): Promise<void> {
  const start = performance.now();
  const { bytes, params, sha256, written } = ensureModel();
  console.log(
    `models/squeezenet/squeezenet.onnx  ${(bytes.length / 1024).toFixed(1)} KiB  ${
      written ? `written in ${((performance.now() - start) / 1000).toFixed(1)} s` : 'up to date'
    }  (sha256 ${sha256.slice(0, 16)}…)`,
  );
  if (process.argv.includes('--measure')) await measure(bytes, params, sha256);
}

async function measure(bytes: Uint8Array, params: number, sha256: string): Promise<void> {
  const session = await ort.InferenceSession.create(bytes, { intraOpNumThreads: 1 });
  const data = new ort.Tensor('float32', new Float32Array(3 * SIDE * SIDE), [1, 3, SIDE, SIDE]);
  const times: number[] = [];
  for (let i = 0; i < 5; i++) await session.run({ data });
  for (let i = 0; i < 30; i++) {
    const t0 = performance.now();
    await session.run({ data });
    times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  const q = (p: number) => Math.round(times[Math.floor(p * (times.length - 1))]! * 1000) / 1000;
  const measured = `${new Date().toISOString()}, ${os.cpus()[0]?.model}, ${os.cpus().length} threads, onnxruntime-node (CPU, intraOpNumThreads 1), Node ${process.version}, 30 runs of one 224×224 image`;
  const metrics = {
    measured,
    variants: {
      v11: {
        file: 'squeezenet.onnx',
        // Random weights: the expected top-1 accuracy is chance, 1 in 1,000 classes.
        accuracy: 0.001,
        latencyMs: q(0.5),
        latencyP90Ms: q(0.9),
        params,
        bytes: bytes.length,
        sha256,
        weights: 'random',
        seed: SEED,
        architecture: 'SqueezeNet 1.1, 224×224, 1000 classes, He-normal init, zero biases',
      },
    },
  };
  writeFileSync(here('metrics.json'), `${JSON.stringify(metrics, null, 2)}\n`);
  console.log(`metrics.json: median ${q(0.5)} ms, p90 ${q(0.9)} ms`);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((e: Error) => {
    console.error(e.message);
    process.exitCode = 1;
  });
}
