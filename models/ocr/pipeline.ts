/**
 * Runs the ocr app's `read` pipeline in Node, stage by stage, as logics/ocr/pipeline.json
 * describes it: the real Logics (wasm, in the runtime's worker threads) and the real models
 * (onnxruntime-node, CPU) through core/runtime, on one node. It follows the agreed pipeline
 * semantics (a stage's input is its one predecessor's value, or a map of them keyed by stage
 * name with `$input` as `input`; `each` runs a stage once per element of its predecessor's list,
 * concurrently). It is the driver of evaluate.ts, the unit tests and the bench; the engine that
 * places stages over the fabric is core's, not this.
 *
 * @example
 * const ocr = await openOcr();
 * const { lines, stageMs } = await ocr.read({ width, height, pixels }, 640);
 * await ocr.close();
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { unpackBundle } from '../../core/manifest';
import { createRuntime, type Runtime } from '../../core/runtime';
import { memoryAppSource } from '../../core/sources';
import { nodePlatform } from '../../relay/platform';
import { buildLogics } from '../../scripts/build-logics';
import { packApp } from '../../scripts/pack-apps';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const DRAFT = join(root, 'logics/ocr/brume.json');
export const PIPELINE = join(root, 'logics/ocr/pipeline.json');
export const METRICS = join(root, 'models/ocr/metrics.json');

export interface Stage {
  service: string;
  rpc?: string;
  from: string[];
  each?: string;
  class: 'NI' | 'LI' | 'HI';
  priority?: number;
  deadlineMs?: number;
}

export interface Pipeline {
  description: string;
  stages: Record<string, Stage>;
  output: string;
  quality: { field: string; levels: unknown };
}

export interface Line {
  text: string;
  confidence: number;
  box: [number, number, number, number];
}

export interface ReadResult {
  lines: Line[];
  /** Wall time of each stage (a fanned-out stage: all its branches), ms. */
  stageMs: Record<string, number>;
  ms: number;
  /** Each stage's value (`$input` too), for the bench's model-only baseline. */
  values: Map<string, unknown>;
}

export interface Ocr {
  runtime: Runtime;
  pipeline: Pipeline;
  read(
    image: { width: number; height: number; pixels: Uint8Array },
    side: number,
  ): Promise<ReadResult>;
  close(): Promise<void>;
}

export function readPipeline(): Pipeline {
  return (JSON.parse(readFileSync(PIPELINE, 'utf8')) as { read: Pipeline }).read;
}

/**
 * Builds the Logics, packs the app (figures from metrics.json, or zeros labelled as not yet
 * measured when it is absent: evaluate.ts makes it with this very driver) and starts a runtime.
 */
export async function openOcr(): Promise<Ocr> {
  await buildLogics({ only: ['ocr-pre', 'ocr-post'] });
  const dir = mkdtempSync(join(tmpdir(), 'brume-ocr-'));
  try {
    const draft = JSON.parse(readFileSync(DRAFT, 'utf8')) as Record<string, unknown> & {
      sources: Record<string, string>;
      services: Record<string, { kind: string; variants?: Record<string, object> }>;
    };
    const base = dirname(DRAFT);
    for (const [k, v] of Object.entries(draft.sources)) draft.sources[k] = resolve(base, v);
    let hasMetrics = true;
    try {
      readFileSync(METRICS);
    } catch {
      hasMetrics = false;
    }
    if (hasMetrics) draft.metrics = METRICS;
    else {
      delete draft.metrics;
      for (const s of Object.values(draft.services)) {
        for (const v of Object.values(s.variants ?? {})) {
          Object.assign(v, {
            accuracy: 0,
            latencyMs: 0,
            params: 0,
            weights: 'trained',
            measured: 'not measured yet: models/ocr/evaluate.ts is measuring',
          });
        }
      }
    }
    const draftPath = join(dir, 'brume.json');
    writeFileSync(draftPath, JSON.stringify(draft));
    const { outPath } = await packApp(draftPath, join(dir, 'ocr.brume'));
    const bundle = await unpackBundle(new Uint8Array(readFileSync(outPath)));
    const runtime = createRuntime(nodePlatform(memoryAppSource([bundle])));
    await runtime.refresh();
    const pipeline = readPipeline();
    return {
      runtime,
      pipeline,
      read: (image, side) => runPipeline(runtime, pipeline, { ...image, side }),
      close: async () => runtime.close(),
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function runStage(runtime: Runtime, stage: Stage, input: unknown): Promise<unknown> {
  const r = await runtime.call(
    'ocr',
    stage.service,
    input,
    {},
    stage.rpc ? { rpc: stage.rpc } : {},
  );
  return r.value;
}

/** Runs the stages in the order they are listed (each after those it takes from). */
export async function runPipeline(
  runtime: Runtime,
  pipeline: Pipeline,
  input: Record<string, unknown>,
): Promise<ReadResult> {
  const start = performance.now();
  const values = new Map<string, unknown>([['$input', input]]);
  const stageMs: Record<string, number> = {};
  for (const [name, stage] of Object.entries(pipeline.stages)) {
    const missing = stage.from.find((f) => !values.has(f));
    if (missing) throw new Error(`stage ${name} takes from ${missing}, which has not run`);
    const arg =
      stage.from.length === 1
        ? values.get(stage.from[0]!)
        : Object.fromEntries(stage.from.map((f) => [f === '$input' ? 'input' : f, values.get(f)]));
    const t0 = performance.now();
    if (stage.each) {
      const list = (arg as Record<string, unknown>)[stage.each];
      if (!Array.isArray(list)) throw new Error(`stage ${name}: ${stage.each} is not a list`);
      values.set(name, await Promise.all(list.map((item) => runStage(runtime, stage, item))));
    } else {
      values.set(name, await runStage(runtime, stage, arg));
    }
    stageMs[name] = performance.now() - t0;
  }
  const out = values.get(pipeline.output) as { lines: Line[] };
  return { lines: out.lines, stageMs, ms: performance.now() - start, values };
}
