/**
 * A small line-chart writer for the bench report: SVG text out, no DOM, no dependency. Why our
 * own: the charts are a few polylines with axes, uPlot (already a dependency) draws on a canvas in
 * a browser, and a charting library (d3, Vega) would be a large dependency for ~150 lines; plain
 * text output is deterministic and reviewable in a diff.
 *
 * @example
 * writeFileSync('fanout.svg', lineChart({ title: 'Fan-out', x: 'watchers', y: 'p50 (ms)',
 *   logX: true, lines: [{ label: 'p50', points: [[10, 1.2], [100, 2.5], [1000, 9]] }] }));
 */

export interface Line {
  label: string;
  /** [x, y] pairs, drawn in x order. */
  points: [number, number][];
}

export interface Chart {
  title: string;
  /** Axis labels, with units. */
  x: string;
  y: string;
  logX?: boolean;
  logY?: boolean;
  lines: Line[];
}

const W = 640;
const H = 400;
const M = { left: 64, right: 180, top: 36, bottom: 48 };
/** Okabe–Ito: told apart by people with any common colour blindness. */
const COLOURS = ['#0072B2', '#D55E00', '#009E73', '#CC79A7', '#E69F00', '#56B4E9', '#000000'];

export function escapeXml(s: string): string {
  return s.replace(/[<>&"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** Round numbers covering [lo, hi], about `count` of them. */
function ticks(lo: number, hi: number, log: boolean, count = 5): number[] {
  if (log) {
    const out: number[] = [];
    for (let e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)); e++) {
      for (const m of [1, 2, 5]) {
        const v = m * 10 ** e;
        if (v >= lo * 0.999 && v <= hi * 1.001) out.push(v);
      }
    }
    // Too many on a wide range: keep the powers of ten.
    return out.length > 8 ? out.filter((v) => Number.isInteger(Math.log10(v))) : out;
  }
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? 10 * mag;
  const out: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) {
    out.push(Number(v.toPrecision(12)));
  }
  return out;
}

/** A tick's label: the round number as it is (10, 0.5, 2,000), no padding zeros. */
function tickLabel(v: number): string {
  return Number(v.toPrecision(6)).toLocaleString('en-US', { maximumFractionDigits: 6 });
}

export function formatNumber(v: number): string {
  const a = Math.abs(v);
  if (a >= 1000) return Math.round(v).toLocaleString('en-US');
  if (a >= 100) return v.toFixed(0);
  if (a >= 10) return v.toFixed(1);
  if (a >= 1) return v.toFixed(2);
  if (a === 0) return '0';
  return Number(v.toPrecision(2)).toString();
}

/** Padded extent of `values`; positive only on a log axis. */
function extent(values: number[], log: boolean, fromZero: boolean): [number, number] {
  const vs = log ? values.filter((v) => v > 0) : values;
  if (vs.length === 0) return log ? [1, 10] : [0, 1];
  let lo = Math.min(...vs);
  const hi = Math.max(...vs);
  if (log) {
    if (lo === hi) return [lo / 2, hi * 2];
    return [lo / 1.1, hi * 1.1];
  }
  if (fromZero && lo > 0) lo = 0;
  if (lo === hi) return [lo - 1, hi + 1];
  const pad = (hi - lo) * 0.05;
  return [fromZero && lo === 0 ? 0 : lo - pad, hi + pad];
}

/** The SVG text of a line chart of `chart`. Lines with no drawable point are left out. */
export function lineChart(chart: Chart): string {
  const usable = (v: number, log?: boolean) => Number.isFinite(v) && (!log || v > 0);
  const lines = chart.lines
    .map((l) => ({
      label: l.label,
      points: l.points
        .filter(([x, y]) => usable(x, chart.logX) && usable(y, chart.logY))
        .sort((a, b) => a[0] - b[0]),
    }))
    .filter((l) => l.points.length > 0);
  const xs = lines.flatMap((l) => l.points.map((p) => p[0]));
  const ys = lines.flatMap((l) => l.points.map((p) => p[1]));
  const [x0, x1] = extent(xs, Boolean(chart.logX), false);
  const [y0, y1] = extent(ys, Boolean(chart.logY), true);
  const pw = W - M.left - M.right;
  const ph = H - M.top - M.bottom;
  const f = (v: number, lo: number, hi: number, log?: boolean) =>
    log ? (Math.log(v) - Math.log(lo)) / (Math.log(hi) - Math.log(lo)) : (v - lo) / (hi - lo);
  const px = (v: number) => M.left + f(v, x0, x1, chart.logX) * pw;
  const py = (v: number) => M.top + (1 - f(v, y0, y1, chart.logY)) * ph;
  const r = (v: number) => Number(v.toFixed(1));
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="#ffffff"/>`,
    `<text x="${W / 2}" y="20" text-anchor="middle" font-size="14" font-weight="bold">${escapeXml(chart.title)}</text>`,
  ];
  for (const t of ticks(x0, x1, Boolean(chart.logX))) {
    const x = r(px(t));
    out.push(
      `<line x1="${x}" y1="${M.top}" x2="${x}" y2="${M.top + ph}" stroke="#e5e5e5"/>`,
      `<text x="${x}" y="${M.top + ph + 16}" text-anchor="middle">${tickLabel(t)}</text>`,
    );
  }
  for (const t of ticks(y0, y1, Boolean(chart.logY))) {
    const y = r(py(t));
    out.push(
      `<line x1="${M.left}" y1="${y}" x2="${M.left + pw}" y2="${y}" stroke="#e5e5e5"/>`,
      `<text x="${M.left - 6}" y="${y + 4}" text-anchor="end">${tickLabel(t)}</text>`,
    );
  }
  out.push(
    `<rect x="${M.left}" y="${M.top}" width="${pw}" height="${ph}" fill="none" stroke="#333333"/>`,
    `<text x="${M.left + pw / 2}" y="${H - 10}" text-anchor="middle">${escapeXml(chart.x)}${chart.logX ? ' (log)' : ''}</text>`,
    `<text transform="translate(16 ${M.top + ph / 2}) rotate(-90)" text-anchor="middle">${escapeXml(chart.y)}${chart.logY ? ' (log)' : ''}</text>`,
  );
  lines.forEach((l, i) => {
    const colour = COLOURS[i % COLOURS.length]!;
    const pts = l.points.map(([x, y]) => `${r(px(x))},${r(py(y))}`).join(' ');
    out.push(`<polyline fill="none" stroke="${colour}" stroke-width="2" points="${pts}"/>`);
    // Few points: mark each, so a one-point line still shows.
    if (l.points.length <= 20) {
      for (const [x, y] of l.points) {
        out.push(`<circle cx="${r(px(x))}" cy="${r(py(y))}" r="3" fill="${colour}"/>`);
      }
    }
    const ly = M.top + 8 + i * 18;
    out.push(
      `<line x1="${W - M.right + 12}" y1="${ly}" x2="${W - M.right + 32}" y2="${ly}" stroke="${colour}" stroke-width="2"/>`,
      `<text x="${W - M.right + 38}" y="${ly + 4}">${escapeXml(l.label)}</text>`,
    );
  });
  if (lines.length === 0) {
    out.push(
      `<text x="${M.left + pw / 2}" y="${M.top + ph / 2}" text-anchor="middle" fill="#777777">no data</text>`,
    );
  }
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}

/** A cumulative distribution of `samples` as points: (value, share of samples ≤ value). */
export function cdfPoints(samples: number[], maxPoints = 200): [number, number][] {
  const s = samples.filter(Number.isFinite).sort((a, b) => a - b);
  if (s.length === 0) return [];
  const step = Math.max(1, Math.floor(s.length / maxPoints));
  const out: [number, number][] = [];
  for (let i = 0; i < s.length; i += step) out.push([s[i]!, (i + 1) / s.length]);
  if (out[out.length - 1]![1] !== 1) out.push([s[s.length - 1]!, 1]);
  return out;
}
