/**
 * Opens the ocr app in Node for evaluate.ts, the unit tests and the bench: builds its Logics, packs
 * it and starts a runtime (the real wasm Logics in worker threads, the real models in
 * onnxruntime-node, CPU). `read` is one call of the app's `read` pipeline through core's executor
 * on this one node (core/pipeline), so what is measured is what a node runs; `modelInputs` runs
 * the stages before each model alone, for the bench's models-only baseline.
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
export const METRICS = join(root, 'models/ocr/metrics.json');

export interface Pipeline {
  description: string;
  stages: Record<string, { service: string; rpc?: string; from: string[]; each?: string }>;
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
  /** What one run of each stage costs on this node (a fan-out: its wall time / branches), ms. */
  runMs: Record<string, number>;
}

/** What the two models take for one image: the detector's tensor and each line's. */
export interface ModelInputs {
  prepare: { inputs: { x: unknown } };
  boxes: { lines: { inputs: { x: unknown } }[] };
}

export interface Ocr {
  runtime: Runtime;
  pipeline: Pipeline;
  read(
    image: { width: number; height: number; pixels: Uint8Array },
    side: number,
  ): Promise<ReadResult>;
  modelInputs(
    image: { width: number; height: number; pixels: Uint8Array },
    side: number,
  ): Promise<ModelInputs>;
  close(): Promise<void>;
}

export function readPipeline(): Pipeline {
  return (JSON.parse(readFileSync(DRAFT, 'utf8')) as { pipelines: { read: Pipeline } }).pipelines
    .read;
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
      read: (image, side) => read(runtime, { ...image, side }),
      modelInputs: (image, side) => modelInputs(runtime, { ...image, side }),
      close: async () => runtime.close(),
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** One call of the `read` pipeline; a fanned-out stage's time is its slowest branch. */
async function read(runtime: Runtime, input: Record<string, unknown>): Promise<ReadResult> {
  const r = await runtime.call('ocr', 'read', input);
  const stageMs: Record<string, number> = {};
  const runs: Record<string, number[]> = {};
  for (const t of r.trace) {
    if (t.stage === undefined) continue;
    stageMs[t.stage] = Math.max(stageMs[t.stage] ?? 0, t.ms);
    runs[t.stage] = [...(runs[t.stage] ?? []), t.ms];
  }
  // One branch's share of a fan-out: its branches overlap on this node, so each one's own time
  // counts the others' too; the whole stage's time over their number is what one costs here.
  const runMs = Object.fromEntries(
    Object.entries(runs).map(([k, v]) => [k, Math.max(...v) / v.length]),
  );
  return { lines: (r.value as { lines: Line[] }).lines, stageMs, ms: r.ms, runMs };
}

async function modelInputs(runtime: Runtime, input: Record<string, unknown>): Promise<ModelInputs> {
  const stage = async (service: string, rpc: string, value: unknown) =>
    (await runtime.call('ocr', service, value, {}, rpc ? { rpc } : {})).value;
  const prepare = (await stage('pre', 'prepare', input)) as ModelInputs['prepare'];
  const detect = await stage('det', '', prepare);
  const boxes = (await stage('post', 'boxes', { input, detect })) as ModelInputs['boxes'];
  return { prepare, boxes };
}
