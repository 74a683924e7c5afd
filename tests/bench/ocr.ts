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
import { QUALITY_LEVELS } from '../../models/ocr/levels';
import { openOcr } from '../../models/ocr/pipeline';
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
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;

/** `images` held-out images at each level, after one warm-up read per level. */
export async function ocrBench(images: number): Promise<OcrLevelFigures[]> {
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
      for (const image of set) {
        const r = await ocr.read(image, side);
        pipeline.push(r.ms);
        for (const [k, v] of Object.entries(r.stageMs)) {
          stages[k] ??= [];
          stages[k].push(v);
        }
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
      });
    }
    return out;
  } finally {
    await models.close();
    await ocr.close();
  }
}

export function ocrSection(figures: OcrLevelFigures[]): Section {
  return {
    id: 'ocr',
    title:
      'OCR read pipeline (PP-OCRv4) per detector side: Brume on one Node node vs the models alone',
    baseline:
      'the same detector and recognizer run back to back by a plain onnxruntime-node script on the same tensors (one thread)',
    note: `Held-out rendered images (models/ocr/images), medians of ${figures[0]?.images ?? 0} images per level. The pipeline runs its stages one after the other and its recognition branches concurrently on one node; the models-alone figure runs every line one after the other. "Brume adds" is the Logics (resize and normalise, regions and crops, CTC decoding, ordering) and carrying tensors between stages through MessagePack and the workers.`,
    rows: figures.map((f) => ({
      label: `side ${f.side}`,
      'pipeline (ms)': f.pipelineMs,
      'models alone (ms)': f.modelsMs,
      'detector (ms)': f.detMs,
      'recognizer, all lines (ms)': f.recMs,
      'Brume adds (ms)': f.pipelineMs - f.modelsMs,
      'prepare (ms)': f.stageMs.prepare,
      'boxes (ms)': f.stageMs.boxes,
      'join (ms)': f.stageMs.join,
    })),
  };
}
