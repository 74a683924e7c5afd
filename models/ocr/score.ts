/**
 * How the ocr app is scored against rendered ground truth (models/ocr/README.md):
 * - a ground-truth line is found when a read line's box overlaps its box with IoU ≥ 0.5 (each
 *   read line matches at most one truth line, best IoU first);
 * - character errors: the edit distance between a found line's text and its truth, and the whole
 *   length of a missed line's text; CER = errors / characters of the truth;
 * - a page's accuracy = 1 − CER (at least 0); line recall = found / truth lines. Read lines that
 *   match nothing are counted apart (`extra`), not in the CER.
 *
 * @example const s = scorePage(truth.lines, answer.lines); // { chars, errors, lines, found, extra }
 */

export type BoxTuple = [number, number, number, number];

export interface PageScore {
  chars: number;
  errors: number;
  lines: number;
  found: number;
  extra: number;
}

export const MATCH_IOU = 0.5;

export function iou(a: BoxTuple, b: BoxTuple): number {
  const w = Math.min(a[2], b[2]) - Math.max(a[0], b[0]);
  const h = Math.min(a[3], b[3]) - Math.max(a[1], b[1]);
  if (w <= 0 || h <= 0) return 0;
  const inter = w * h;
  const area = (r: BoxTuple) => (r[2] - r[0]) * (r[3] - r[1]);
  return inter / (area(a) + area(b) - inter);
}

/** Levenshtein distance over code points. */
export function editDistance(a: string, b: string): number {
  const x = [...a];
  const y = [...b];
  let prev = Array.from({ length: y.length + 1 }, (_, j) => j);
  for (let i = 1; i <= x.length; i++) {
    const row = [i];
    for (let j = 1; j <= y.length; j++) {
      row[j] = Math.min(
        prev[j]! + 1,
        row[j - 1]! + 1,
        prev[j - 1]! + (x[i - 1] === y[j - 1] ? 0 : 1),
      );
    }
    prev = row;
  }
  return prev[y.length]!;
}

export function scorePage(
  truth: { text: string; box: BoxTuple }[],
  read: { text: string; box: BoxTuple }[],
): PageScore {
  const pairs: { t: number; r: number; v: number }[] = [];
  truth.forEach((t, ti) => {
    read.forEach((r, ri) => {
      const v = iou(t.box, r.box);
      if (v >= MATCH_IOU) pairs.push({ t: ti, r: ri, v });
    });
  });
  pairs.sort((a, b) => b.v - a.v);
  const readOf = new Map<number, number>();
  const used = new Set<number>();
  for (const p of pairs) {
    if (readOf.has(p.t) || used.has(p.r)) continue;
    readOf.set(p.t, p.r);
    used.add(p.r);
  }
  let chars = 0;
  let errors = 0;
  truth.forEach((t, ti) => {
    const n = [...t.text].length;
    chars += n;
    const ri = readOf.get(ti);
    errors += ri === undefined ? n : editDistance(t.text, read[ri]!.text);
  });
  return { chars, errors, lines: truth.length, found: readOf.size, extra: read.length - used.size };
}

export function addScores(scores: PageScore[]): PageScore {
  return scores.reduce(
    (a, s) => ({
      chars: a.chars + s.chars,
      errors: a.errors + s.errors,
      lines: a.lines + s.lines,
      found: a.found + s.found,
      extra: a.extra + s.extra,
    }),
    { chars: 0, errors: 0, lines: 0, found: 0, extra: 0 },
  );
}

/** 1 − CER, at least 0. */
export function accuracyOf(s: PageScore): number {
  return Math.max(0, 1 - s.errors / s.chars);
}
