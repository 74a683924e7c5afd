/**
 * The ocr app's read pipeline (models/ocr/pipeline.ts: its real Logics and PP-OCRv4 models, on
 * one Node node) per quality level, against the same two models run back to back by a plain
 * onnxruntime-node script on the very same tensors (models/ocr/baseline.ts): what Brume's
 * pipeline adds is the Logics' own work (resize, regions, crops, decoding) and carrying the
 * tensors between stages. Held-out rendered images; medians per image.
 *
 * @example const figures = await ocrBench(10); sections.push(ocrSection(figures));
 */
import { openModels } from '../../models/ocr/baseline';
import { loadSplit } from '../../models/ocr/data';
import { DEFAULT_SIDE, QUALITY_LEVELS } from '../../models/ocr/levels';
import { openOcr } from '../../models/ocr/pipeline';
import { scalingRows, simulate } from './pipeline';
import type { Section } from './report';

export interface OcrLevelFigures {
  side: number;
  images: number;
  /** Medians per image, ms. */
  pipelineMs: number;
  modelsMs: number;
  detMs: number;
  recMs: number;
  stageMs: Record<string, number>;
  /** Median of one run of each stage (recognize: one line), ms. */
  runMs: Record<string, number>;
  /** Median lines read per image. */
  lines: number;
}

export interface OcrFigures {
  levels: OcrLevelFigures[];
  /**
   * At DEFAULT_SIDE, SIMULATED on a virtual clock: `requests` reads arriving at once on 1, 2 and
   * 4 one-slot nodes, stages costing their measured `runMs`, a hop `hopMs` (tests/bench/pipeline.ts).
   */
  scaling: { side: number; requests: number; hopMs: number; makespanMs: Record<number, number> };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;

/** `images` held-out images at each level, after one warm-up read per level. */
export async function ocrBench(images: number): Promise<OcrFigures> {
  const set = loadSplit('heldout').slice(0, images);
  const ocr = await openOcr();
  const models = await openModels();
  try {
    const out: OcrLevelFigures[] = [];
    for (const side of QUALITY_LEVELS) {
      await models.time(await ocr.modelInputs(set[0]!, side));
      const pipeline: number[] = [];
      const det: number[] = [];
      const rec: number[] = [];
      const total: number[] = [];
      const stages: Record<string, number[]> = {};
      const runs: Record<string, number[]> = {};
      const lines: number[] = [];
      for (const image of set) {
        const r = await ocr.read(image, side);
        pipeline.push(r.ms);
        lines.push(r.lines.length);
        for (const [k, v] of Object.entries(r.stageMs)) stages[k] = [...(stages[k] ?? []), v];
        for (const [k, v] of Object.entries(r.runMs)) runs[k] = [...(runs[k] ?? []), v];
        const t = await models.time(await ocr.modelInputs(image, side));
        const recSum = t.recMs.reduce((a, b) => a + b, 0);
        det.push(t.detMs);
        rec.push(recSum);
        total.push(t.detMs + recSum);
      }
      out.push({
        side,
        images: set.length,
        pipelineMs: median(pipeline),
        modelsMs: median(total),
        detMs: median(det),
        recMs: median(rec),
        stageMs: Object.fromEntries(Object.entries(stages).map(([k, v]) => [k, median(v)])),
        runMs: Object.fromEntries(Object.entries(runs).map(([k, v]) => [k, median(v)])),
        lines: median(lines),
      });
    }
    const at = out.find((f) => f.side === DEFAULT_SIDE)!;
    const manifest = ocr.runtime.apps().find((m) => m.name === 'ocr')!;
    const requests = 16;
    const hopMs = 0.5;
    const makespanMs: Record<number, number> = {};
    for (const n of [1, 2, 4]) {
      makespanMs[n] = simulate(manifest, 'read', at.runMs, at.lines, n, requests, hopMs);
    }
    return { levels: out, scaling: { side: DEFAULT_SIDE, requests, hopMs, makespanMs } };
  } finally {
    await models.close();
    await ocr.close();
  }
}

export function ocrSection({ levels: figures, scaling }: OcrFigures): Section {
  const at = figures.find((f) => f.side === scaling.side);
  return {
    id: 'ocr',
    title:
      'OCR read pipeline (PP-OCRv4) per detector side: Brume on one Node node vs the models alone',
    baseline:
      'the same detector and recognizer run back to back by a plain onnxruntime-node script on the same tensors (one thread)',
    note: `Held-out rendered images (models/ocr/images), medians of ${figures[0]?.images ?? 0} images per level. The pipeline runs its stages one after the other and its recognition branches concurrently on one node; the models-alone figure runs every line one after the other. "pipeline − models alone" is the Logics (resize and normalise, regions and crops, CTC decoding, ordering) and carrying tensors between stages through MessagePack and the workers, less what running the lines concurrently saves: not Brume's overhead alone. The node rows are SIMULATED on a virtual clock (this machine has 2 cores): ${scaling.requests} reads arriving at once at side ${scaling.side}, each placed by core/pipeline/place.ts over one-slot nodes, each stage costing its median run measured above (a fan-out stage: its wall time over its branches) (${Object.entries(
      at?.runMs ?? {},
    )
      .map(([s, ms]) => `${s} ${ms.toFixed(1)} ms`)
      .join(
        ', ',
      )}; recognize: one line, ${at?.lines ?? 0} lines an image), a hop ${scaling.hopMs} ms; speed-up = makespan on 1 node / on n, cluster efficiency = speed-up / n.`,
    rows: [
      ...figures.map((f) => ({
        label: `side ${f.side}`,
        'pipeline (ms)': f.pipelineMs,
        'models alone (ms)': f.modelsMs,
        'detector (ms)': f.detMs,
        'recognizer, all lines (ms)': f.recMs,
        'pipeline − models alone (ms)': f.pipelineMs - f.modelsMs,
        'prepare (ms)': f.stageMs.prepare,
        'boxes (ms)': f.stageMs.boxes,
        'join (ms)': f.stageMs.join,
      })),
      ...scalingRows(scaling.makespanMs, `side ${scaling.side}, simulated`),
    ],
  };
}
