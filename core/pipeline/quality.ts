/**
 * Data-quality adaptation (seed 001 §V, Algorithm 1): among the candidates whose accuracy meets
 * `a_min`, the fastest; then a slower one replaces it when it is less than 10 ms slower and at
 * least 20 points more accurate (the seed's scan, in order, each against the best so far). No
 * candidate meets `a_min`: a QosError naming the best accuracy there is. For one request the
 * candidates are the pipeline's levels; for K sources they are the seed's distributions B (how
 * many sources at each level), judged by the mean latency and accuracy over the sources (its
 * eqs. 3 and 4). Figures are re-read at each choice: a level's measured p50 (`LevelStats`)
 * replaces its declared latency once it has `minSamples` samples.
 * @example
 * const { level } = chooseLevel(levels, { accuracy: 0.9 }); // the fastest level ≥ 0.9
 * const d = chooseDistribution(levels, 19, 0.5); // d.counts: sources per level
 */
import { InputError, QosError } from '../errors';
import { counts, type LatencyFigure } from '../placement/figures';
import type { Qos } from '../scheduler';
import type { PipelineQuality, QualityLevel } from './schema';

/** The seed's override: less than this much slower… */
export const OVERRIDE_MS = 10;
/** …and at least this much more accurate (20 points). */
export const OVERRIDE_ACCURACY = 0.2;
/** Accuracies are fractions: 0.7 − 0.5 is 0.19999999999999996 in binary, still 20 points. */
const EPSILON = 1e-9;

export interface Candidate<T> {
  item: T;
  latencyMs: number;
  accuracy: number;
}

/** Algorithm 1 over `list` (in its order); undefined when none reaches `aMin`. */
export function algorithm1<T>(list: Candidate<T>[], aMin: number): Candidate<T> | undefined {
  const ok = list.filter((c) => c.accuracy >= aMin);
  if (ok.length === 0) return undefined;
  let best = ok[0]!;
  for (const c of ok) if (c.latencyMs < best.latencyMs) best = c;
  for (const x of ok) {
    if (
      x.latencyMs - best.latencyMs < OVERRIDE_MS &&
      x.accuracy - best.accuracy >= OVERRIDE_ACCURACY - EPSILON
    ) {
      best = x;
    }
  }
  return best;
}

export interface LevelChoice {
  level: QualityLevel;
  /** The latency it was judged by, and whether it was measured here (else declared). */
  latencyMs: number;
  measured: boolean;
  reason: string;
}

/** A level's latency as placement judges it now: measured once it counts, else declared. */
export function levelLatency(
  level: QualityLevel,
  stats?: LevelStats,
): { ms: number; measured: boolean } {
  const f = stats?.figure(level.value);
  return counts(f) ? { ms: f.p50, measured: true } : { ms: level.latencyMs, measured: false };
}

/**
 * The level for one request by Algorithm 1 with `a_min = qos.accuracy` (0 when absent). With a
 * `qos.latencyMs` only the levels that fit it are candidates (so the override never trades a
 * fitting level for one that misses it); none fits: QosError('latencyMs') naming the fastest
 * level that meets the accuracy.
 */
export function chooseLevel(
  levels: QualityLevel[],
  qos: Qos = {},
  stats?: LevelStats,
): LevelChoice {
  const aMin = qos.accuracy ?? 0;
  const list = levels.map((level) => {
    const l = levelLatency(level, stats);
    return { item: { level, ...l }, latencyMs: l.ms, accuracy: level.accuracy };
  });
  const fits = list.filter((c) => qos.latencyMs === undefined || c.latencyMs <= qos.latencyMs);
  const best = algorithm1(fits, aMin);
  if (!best && algorithm1(list, aMin)) {
    const fastest = Math.min(...list.filter((c) => c.accuracy >= aMin).map((c) => c.latencyMs));
    throw new QosError(
      'latencyMs',
      fastest,
      `no quality level reaching accuracy ${aMin} runs within ${qos.latencyMs} ms; the fastest takes ~${fastest.toFixed(1)} ms`,
    );
  }
  if (!best) {
    const top = Math.max(...levels.map((l) => l.accuracy));
    throw new QosError(
      'accuracy',
      top,
      `no quality level reaches accuracy ${aMin}; the best achievable is ${top}`,
    );
  }
  const { level, ms, measured } = best.item;
  const source = measured ? 'measured' : 'declared';
  return {
    level,
    latencyMs: ms,
    measured,
    reason: `quality ${level.value}: accuracy ${level.accuracy} ≥ ${aMin}, ~${ms.toFixed(1)} ms (${source})`,
  };
}

/** The most distributions of K sources over the levels Algorithm 1 is asked to scan. */
export const MAX_DISTRIBUTIONS = 100_000;

export interface Distribution {
  /** Sources at each level, in the order of `levels`. */
  counts: number[];
  latencyMs: number;
  accuracy: number;
}

/**
 * Algorithm 1 for K sources (the seed's B): every way of putting K sources on the levels, judged
 * by mean latency and mean accuracy over the sources. Throws QosError when none reaches `aMin`
 * (the source that joins is refused for this period), naming the best achievable accuracy.
 */
export function chooseDistribution(
  levels: QualityLevel[],
  sources: number,
  aMin: number,
  stats?: LevelStats,
): Distribution {
  if (!Number.isInteger(sources) || sources < 1) throw new InputError('sources must be at least 1');
  if (binomial(sources + levels.length - 1, levels.length - 1) > MAX_DISTRIBUTIONS) {
    throw new InputError(`more than ${MAX_DISTRIBUTIONS} distributions of ${sources} sources`);
  }
  const ms = levels.map((l) => levelLatency(l, stats).ms);
  const list: Candidate<number[]>[] = [];
  const walk = (i: number, left: number, acc: number[]) => {
    if (i === levels.length - 1) {
      const c = [...acc, left];
      const mean = (xs: number[]) => c.reduce((s, n, j) => s + n * xs[j]!, 0) / sources;
      list.push({ item: c, latencyMs: mean(ms), accuracy: mean(levels.map((l) => l.accuracy)) });
      return;
    }
    for (let n = 0; n <= left; n++) walk(i + 1, left - n, [...acc, n]);
  };
  walk(0, sources, []);
  const best = algorithm1(list, aMin);
  if (!best) {
    const top = Math.max(...list.map((c) => c.accuracy));
    throw new QosError(
      'accuracy',
      top,
      `no distribution of ${sources} sources reaches accuracy ${aMin}; the best achievable is ${top.toFixed(4)}: the joining source is refused`,
    );
  }
  return { counts: best.item, latencyMs: best.latencyMs, accuracy: best.accuracy };
}

function binomial(n: number, k: number): number {
  let r = 1;
  for (let i = 1; i <= k; i++) r = (r * (n - k + i)) / i;
  return r;
}

/**
 * The level a request runs at: the caller's own `input[field]` when it set one (it must be a
 * level), else Algorithm 1's choice, written into a copy of the input (which must be a map).
 */
export function applyQuality(
  quality: PipelineQuality,
  input: unknown,
  qos: Qos,
  stats?: LevelStats,
): { input: Record<string, unknown>; choice: LevelChoice } {
  if (
    input === null ||
    typeof input !== 'object' ||
    Array.isArray(input) ||
    input instanceof Uint8Array
  ) {
    throw new InputError(
      `input must be a map: the pipeline writes its quality into input.${quality.field}`,
    );
  }
  const map = input as Record<string, unknown>;
  const asked = map[quality.field];
  let choice: LevelChoice;
  if (asked !== undefined) {
    const level = quality.levels.find((l) => l.value === asked);
    if (!level) {
      const values = quality.levels.map((l) => l.value).join(', ');
      throw new InputError(`input.${quality.field} must be one of the quality levels ${values}`);
    }
    const l = levelLatency(level, stats);
    choice = {
      level,
      latencyMs: l.ms,
      measured: l.measured,
      reason: `quality ${level.value}: the caller's`,
    };
  } else {
    choice = chooseLevel(quality.levels, qos, stats);
  }
  return { input: { ...map, [quality.field]: choice.level.value }, choice };
}

/** Pipeline wall times by level, kept per pipeline: the last `window` samples of each. */
export class LevelStats {
  private readonly samples = new Map<number, number[]>();
  constructor(private readonly window = 32) {}

  record(value: number, ms: number): void {
    const s = this.samples.get(value) ?? [];
    this.samples.set(value, s);
    s.push(ms);
    if (s.length > this.window) s.shift();
  }

  figure(value: number): LatencyFigure | undefined {
    const s = this.samples.get(value);
    if (!s || s.length === 0) return undefined;
    const sorted = [...s].sort((a, b) => a - b);
    return { count: s.length, p50: sorted[Math.floor((sorted.length - 1) / 2)]! };
  }
}
