/**
 * Pipelines (issue 13): the fixture pipeline `chain` (tests/apps.ts: echo Logic → small digits
 * model, and the large one fanned out over `lines` → echo join) measured on one real node (a Node
 * runtime), against the same two models run back to back by a plain onnxruntime-node script; then
 * its scaling over 1, 2 and 4 nodes SIMULATED on a virtual clock with the per-stage costs measured
 * here (this machine has 2 cores: real nodes would share them), placed by core's own placement.
 * @example const r = await pipelineBench(50); pipelineSection(r)
 */
import * as ort from 'onnxruntime-node';
import type { Manifest } from '../../core/manifest';
import { type PlaceNode, placePipeline } from '../../core/pipeline/place';
import { INPUT, stageOrder } from '../../core/pipeline/schema';
import { createRuntime } from '../../core/runtime';
import { memoryAppSource } from '../../core/sources';
import { nodePlatform } from '../../relay/platform';
import { digitLines, pipelineApp } from '../apps';
import type { Section } from './report';

export interface PipelineFigures {
  lines: number;
  runs: number;
  /** Medians, ms. */
  pipelineMs: number;
  plainMs: number;
  /** Median ms of one run of each stage (a fan-out stage: one branch). */
  stageMs: Record<string, number>;
  /** Simulated: requests all arriving at once, makespan by node count. */
  requests: number;
  hopMs: number;
  makespanMs: Record<number, number>;
}

const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;

export async function pipelineBench(runs: number, lines = 8): Promise<PipelineFigures> {
  const b = await pipelineApp();
  const rt = createRuntime(nodePlatform(memoryAppSource([b])), { logicWorkers: 1 });
  await rt.refresh();
  const { lines: els } = digitLines(lines);
  const input = { inputs: els[0]!.inputs, lines: els };
  const total: number[] = [];
  const stages: Record<string, number[]> = {};
  try {
    for (let i = 0; i < 3; i++) await rt.call('chain', 'chain', input);
    // Per-stage costs from one-line calls, so no branch waits on another; totals from full ones.
    const single = { ...input, lines: els.slice(0, 1) };
    for (let i = 0; i < runs; i++) {
      total.push((await rt.call('chain', 'chain', input)).ms);
      const r = await rt.call('chain', 'chain', single);
      for (const t of r.trace) {
        if (t.stage) stages[t.stage] = [...(stages[t.stage] ?? []), t.ms];
      }
    }
  } finally {
    rt.close();
  }
  const plainMs = await plain(b.files, input, runs);
  const stageMs = Object.fromEntries(Object.entries(stages).map(([s, xs]) => [s, med(xs)]));
  const requests = 16;
  const hopMs = 0.5;
  const makespanMs: Record<number, number> = {};
  for (const n of [1, 2, 4]) {
    makespanMs[n] = simulate(b.manifest, 'chain', stageMs, lines, n, requests, hopMs);
  }
  return { lines, runs, pipelineMs: med(total), plainMs, stageMs, requests, hopMs, makespanMs };
}

/** The two models back to back, by a plain script: small once, large once per line. */
async function plain(
  files: Record<string, Uint8Array>,
  input: {
    inputs: { pixels: { data: Uint8Array } };
    lines: { inputs: { pixels: { data: Uint8Array } } }[];
  },
  runs: number,
): Promise<number> {
  const opts = { intraOpNumThreads: 1, interOpNumThreads: 1 };
  const small = await ort.InferenceSession.create(files['small.onnx']!, opts);
  const large = await ort.InferenceSession.create(files['large.onnx']!, opts);
  const t = (bytes: Uint8Array) =>
    new ort.Tensor('float32', new Float32Array(bytes.slice().buffer), [1, 784]);
  const once = async () => {
    await small.run({ pixels: t(input.inputs.pixels.data) });
    for (const l of input.lines) await large.run({ pixels: t(l.inputs.pixels.data) });
  };
  for (let i = 0; i < 3; i++) await once();
  const xs: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    await once();
    xs.push(performance.now() - t0);
  }
  await small.release();
  await large.release();
  return med(xs);
}

/**
 * `requests` calls of `chain` arriving at once on `n` simulated nodes of one slot each: each is
 * placed by placePipeline (a node's free capacity falls with its backlog), its fan-out dealt as
 * the executor deals it, each node runs its tasks first come first served, and a hop between two
 * nodes costs `hopMs`. Answers the makespan.
 */
/**
 * The makespan of `requests` calls of pipeline `name` arriving at once on `n` one-slot nodes, on
 * a virtual clock: each placed by core/pipeline/place.ts, each stage costing `cost[stage]` ms
 * (a fan-out stage: one branch of `lines`), a hop between nodes `hopMs`.
 */
export function simulate(
  m: Manifest,
  name: string,
  cost: Record<string, number>,
  lines: number,
  n: number,
  requests: number,
  hopMs: number,
): number {
  const p = m.pipelines![name]!;
  const order = stageOrder(p.stages);
  const freeAt = new Map<string, number>();
  const ids = Array.from({ length: n }, (_, i) => `node-${i}`);
  for (const id of ids) freeAt.set(id, 0);
  let end = 0;
  for (let r = 0; r < requests; r++) {
    const nodes: PlaceNode[] = ids.map((id) => ({
      id,
      tier: 'dew',
      free: 1 / (1 + freeAt.get(id)!),
    }));
    const placement = placePipeline({
      stages: order.map((s) => ({
        name: s,
        class: p.stages[s]!.class,
        from: p.stages[s]!.from,
        need: 1e-6,
        fanOut: p.stages[s]!.each !== undefined,
      })),
      nodes,
      source: '',
      cost: (a, b) => (a === b ? 0 : hopMs),
    });
    const done = new Map<string, { at: number; node: string }[]>();
    for (const s of order) {
      const st = p.stages[s]!;
      const where = placement.stages[s]!;
      const targets = [where.node, ...where.spread];
      const count = st.each === undefined ? 1 : lines;
      const runs: { at: number; node: string }[] = [];
      for (let i = 0; i < count; i++) {
        const node = targets[i % targets.length]!;
        let ready = 0;
        for (const f of st.from) {
          if (f === INPUT) continue;
          for (const d of done.get(f)!)
            ready = Math.max(ready, d.at + (d.node === node ? 0 : hopMs));
        }
        const start = Math.max(ready, freeAt.get(node)!);
        const at = start + (cost[s] ?? 0);
        freeAt.set(node, at);
        runs.push({ at, node });
      }
      done.set(s, runs);
    }
    end = Math.max(end, ...done.get(p.output)!.map((d) => d.at));
  }
  return end;
}

/** Rows of speed-up and cluster efficiency from makespans on 1, 2 and 4 simulated nodes. */
export function scalingRows(makespanMs: Record<number, number>, what = 'simulated') {
  return [1, 2, 4].map((n) => {
    const speedup = makespanMs[1]! / makespanMs[n]!;
    return {
      label: `${what}: ${n} node${n === 1 ? '' : 's'}`,
      'makespan (ms)': makespanMs[n]!,
      'speed-up': speedup,
      'cluster efficiency': speedup / n,
    };
  });
}

export function pipelineSection(f: PipelineFigures): Section {
  const sim = scalingRows(f.makespanMs);
  return {
    id: 'pipeline',
    title: `A pipeline (fixture chain, ${f.lines}-way fan-out): one real node, and 1/2/4 simulated nodes`,
    baseline: 'the same two models run back to back by a plain onnxruntime-node script',
    note: `Real: a Node runtime runs prepare (echo Logic) → detect (small digits MLP) ‖ classify × ${f.lines} (large digits MLP) → join (echo), medians of ${f.runs}. Brume's overhead is that minus the plain script's time. Scaling is SIMULATED on a virtual clock (this machine has 2 cores): ${f.requests} requests arriving at once, each placed by core/pipeline/place.ts over one-slot nodes, each stage costing its median measured here alone (one-line calls) (${Object.entries(
      f.stageMs,
    )
      .map(([s, ms]) => `${s} ${ms.toFixed(2)} ms`)
      .join(
        ', ',
      )}), a hop between nodes ${f.hopMs} ms; speed-up = makespan on 1 node / on n, cluster efficiency = speed-up / n.`,
    rows: [
      { label: 'real: one node, Brume pipeline', 'median (ms)': f.pipelineMs },
      { label: 'real: plain onnxruntime-node, back to back', 'median (ms)': f.plainMs },
      { label: "Brume's pipeline overhead", 'median (ms)': f.pipelineMs - f.plainMs },
      ...sim,
    ],
  };
}
