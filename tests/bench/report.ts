/**
 * The readable bench report: `npm run bench` writes bench-results/report.md (the tables in
 * Markdown, each figure as previous → current) and one SVG per plot next to it, from the
 * bench.json object of this run and of the run before (bench-results/previous.json).
 *
 * ## The section shape: how a part of the bench gets into the report
 *
 * Push a `Section` onto `sections` in bench.json (run.ts: `out.sections`):
 *
 *     { id: 'squeezenet', title: 'SqueezeNet 1.1: Logic + Model vs Model alone',
 *       baseline: 'onnxruntime run() on the same node',
 *       rows: [{ label: 'tab, wasm', 'run() (ms)': 61.2, 'Logic+Model (ms)': 70.4 }],
 *       series: [{ id: 'latency', title: '…', x: 'ms', y: 'share of calls', kind: 'cdf',
 *                  lines: [{ label: 'tab', samples: [61.0, 62.3, …] }] }] }
 *
 * - `id` is stable across runs: the previous run's section with the same id, and in it the row
 *   with the same `label`, gives each number its "before". Keep labels stable too.
 * - Every key of a row but `label` is a column; put the unit in its name ("p99 (ms)"). Numbers
 *   show as before → after (change in %); strings show as they are (a path, a note).
 * - `series` are plots, one SVG each (`<section id>-<plot id>.svg`): `kind: 'lines'` draws each
 *   line's `points` ([x, y] pairs); `kind: 'cdf'` draws each line's `samples` as a cumulative
 *   distribution. `logX`/`logY` for wide ranges.
 *
 * Figures that run.ts wrote before sections existed (logic, model, fabric.*, hardening) are
 * converted here (`legacySections`), so an old previous.json still gives "before" figures. A
 * section in `sections` wins over a converted one with the same id. Of those, the decisions plot
 * draws one line per `where` of `fabric.decisions` rows (and reads older runs'
 * `fabric.decisionsPerSecond` keys named `<where><N>Nodes`, inProcess1000Nodes): a new node
 * count or a new `where` named that way gets its point or line with no change here. Anything missing is left
 * out; anything malformed is left out and named at the end of the report, never thrown.
 *
 * @example
 * writeReport('bench-results', bench, previous);   // → ['bench-results/report.md', '….svg']
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { cdfPoints, formatNumber, lineChart } from './svg-plot';

export interface Row {
  label: string;
  [column: string]: number | string | null | undefined;
}

export interface Plot {
  /** Part of the file name: `<section id>-<plot id>.svg`; [a-z0-9-]. */
  id: string;
  title: string;
  /** Axis labels, with units. */
  x: string;
  y: string;
  kind?: 'lines' | 'cdf';
  logX?: boolean;
  logY?: boolean;
  lines: { label: string; points?: [number, number][]; samples?: number[] }[];
}

export interface Section {
  /** Stable across runs; [a-z0-9-]. */
  id: string;
  title: string;
  /** What the figures are compared with, in words (the table's caption names it). */
  baseline?: string;
  /** How it was measured, references; shown under the table. */
  note?: string;
  rows: Row[];
  series?: Plot[];
}

type Json = Record<string, unknown>;
const isObject = (v: unknown): v is Json =>
  typeof v === 'object' && v !== null && !Array.isArray(v);
const num = (v: unknown): number | undefined =>
  typeof v === 'number' && Number.isFinite(v) ? v : undefined;
const arr = (v: unknown): Json[] => (Array.isArray(v) ? v.filter(isObject) : []);
const ID = /^[a-z0-9][a-z0-9-]{0,63}$/;

/** Why a section is not a Section, or undefined when it is one. */
export function sectionProblem(s: unknown): string | undefined {
  if (!isObject(s)) return 'not an object';
  if (typeof s.id !== 'string' || !ID.test(s.id))
    return 'id: expected [a-z0-9-], 1 to 64 characters';
  if (typeof s.title !== 'string') return `${s.id}: title: expected a string`;
  if (!Array.isArray(s.rows)) return `${s.id}: rows: expected an array`;
  for (const [i, r] of s.rows.entries()) {
    if (!isObject(r) || typeof r.label !== 'string')
      return `${s.id}: rows[${i}].label: expected a string`;
    for (const [k, v] of Object.entries(r)) {
      if (v !== null && v !== undefined && typeof v !== 'number' && typeof v !== 'string')
        return `${s.id}: rows[${i}].${k}: expected a number or a string`;
    }
  }
  if (s.series !== undefined) {
    if (!Array.isArray(s.series)) return `${s.id}: series: expected an array`;
    for (const [i, p] of s.series.entries()) {
      if (!isObject(p) || typeof p.id !== 'string' || !ID.test(p.id))
        return `${s.id}: series[${i}].id: expected [a-z0-9-]`;
      if (!Array.isArray(p.lines)) return `${s.id}: series[${i}].lines: expected an array`;
    }
  }
  return undefined;
}

// ——— Figures written before sections existed ———

const ms = (v: unknown) => num(v);

function logicSection(b: Json): Section | undefined {
  const rows = arr(b.logic).map((s) => ({
    label: String(s.where),
    'compile, first (ms)': ms(s.compileFirstMs),
    'compile, median (ms)': ms(s.compileMs),
    'instantiate (ms)': ms(s.instantiateMs),
    'Logic alone via executor (ms)': ms(s.logicOnlyMs),
  }));
  if (!rows.length) return undefined;
  return { id: 'logic', title: 'The digits Logic: compile and instantiate (Table II)', rows };
}

function modelSection(b: Json): Section | undefined {
  const rows = arr(b.model).map((r) => {
    const engine = num(r.engineMs);
    const app = num(r.appMs);
    return {
      label: `${r.where}, ${r.backend}, ${r.variant}`,
      'onnxruntime run (ms)': engine,
      'model service (ms)': ms(r.modelMs),
      'Logic+Model (ms)': app,
      'added (ms)': engine !== undefined && app !== undefined ? app - engine : undefined,
      'ratio app/engine': engine && app !== undefined ? app / engine : undefined,
    };
  });
  if (!rows.length) return undefined;
  return {
    id: 'digits-model',
    title: 'The digits app: Model alone vs Logic + Model through the executor (Fig. 5)',
    baseline: 'onnxruntime run()',
    rows,
  };
}

function decisionsSection(b: Json): Section | undefined {
  const fabric = isObject(b.fabric) ? b.fabric : {};
  // Rows { where, nodes, perSecond, p99Ms, cpuUs } (tests/bench/decisions.ts); older runs wrote
  // fabric.decisionsPerSecond keys like inProcess1000Nodes / viaRelay1000Nodes instead.
  const legacy = isObject(fabric.decisionsPerSecond) ? fabric.decisionsPerSecond : {};
  const legacyWhere: Record<string, string> = {
    inProcess: 'in process, place() scan',
    viaRelay: 'through the relay, 50 asking',
  };
  const found: Json[] = [
    ...arr(fabric.decisions),
    ...Object.entries(legacy).map(([k, v]) => {
      const m = /^(.*?)(\d+)Nodes$/.exec(k);
      return { where: legacyWhere[m?.[1] ?? ''] ?? k, nodes: Number(m?.[2]), perSecond: v };
    }),
  ].filter((d) => num(d.perSecond) !== undefined);
  const lines = new Map<string, [number, number][]>();
  const rows: Row[] = found.map((d) => {
    const where = String(d.where);
    const nodes = num(d.nodes);
    if (nodes) lines.set(where, [...(lines.get(where) ?? []), [nodes, Number(d.perSecond)]]);
    return {
      label: nodes ? `${where}, ${nodes.toLocaleString('en-US')} nodes` : where,
      'decisions/s': num(d.perSecond),
      'p99 (ms)': ms(d.p99Ms),
      'CPU per decision (µs)': num(d.cpuUs),
    };
  });
  if (!rows.length) return undefined;
  return {
    id: 'decisions',
    title: 'The fabric: scheduling decisions per second',
    note: 'Laqista reports 7,296 decisions/s. CPU per decision is the deciding process: this one in process, the relay through it.',
    rows,
    series: [
      {
        id: 'vs-nodes',
        title: 'Scheduling decisions per second vs nodes',
        x: 'nodes',
        y: 'decisions/s',
        logX: true,
        logY: true,
        lines: [...lines].map(([label, points]) => ({ label, points })),
      },
    ],
  };
}

function leasesSection(b: Json): Section | undefined {
  const fabric = isObject(b.fabric) ? b.fabric : {};
  const l = isObject(fabric.leases) ? fabric.leases : undefined;
  const rows = arr(l?.rows).map((r) => ({
    label: `leases ${r.leases}`,
    'p50 (ms)': ms(r.p50Ms),
    'p90 (ms)': ms(r.p90Ms),
    'calls/s, several in flight': num(r.callsPerSecond),
  }));
  if (!rows.length) return undefined;
  return {
    id: 'leases',
    title: "A node's call to another node through the relay, with and without decision leases",
    baseline: 'leases off (--lease-ms 0): a scheduling round trip per call',
    rows,
  };
}

function tabsMemorySection(b: Json): Section | undefined {
  const fabric = isObject(b.fabric) ? b.fabric : {};
  const rows = arr(fabric.tabsMemory).map((m) => ({
    label: `${m.tabs} tab(s), model runner ${m.shared ? 'shared' : 'per tab'}`,
    'renderers Pss (MiB)': num(m.rendererPssMiB),
    'all Pss (MiB)': num(m.allPssMiB),
    'renderers Rss (MiB)': num(m.rendererRssMiB),
    'model loads': num(m.modelLoads),
  }));
  if (!rows.length) return undefined;
  return {
    id: 'tabs-memory',
    title: 'Memory of tabs of one profile running digits (Chromium processes, /proc)',
    baseline: 'one model runner per tab',
    rows,
  };
}

function versusSection(b: Json): Section | undefined {
  const h = isObject(b.hardening) ? b.hardening : {};
  const rows = arr(h.versus).flatMap((v) => {
    const side = (name: string, x: unknown): Row =>
      isObject(x)
        ? {
            label: `${v.clients} client(s), ${name}`,
            'p50 (ms)': ms(x.p50Ms),
            'p99 (ms)': ms(x.p99Ms),
            'calls/s': num(x.perSecond),
            errors: num(x.errors),
          }
        : { label: `${v.clients} client(s), ${name}` };
    return [
      side('bare onnxruntime-node server', v.bare),
      {
        ...side('the relay (Logic + Model on its cloud node)', v.relay),
        'p50 ratio': num(v.p50Ratio),
        'p50 added (ms)': num(v.p50AddedMs),
        'throughput ratio': num(v.throughputRatio),
      },
    ];
  });
  if (!rows.length) return undefined;
  return {
    id: 'http-versus-bare',
    title:
      'HTTP POST /api/call/digits/classify: the relay vs a bare node:http + onnxruntime-node server',
    baseline: 'the bare server running the same large.onnx and preprocessing',
    rows,
  };
}

function hopsSection(b: Json): Section | undefined {
  const fabric = isObject(b.fabric) ? b.fabric : {};
  const rows = arr(fabric.hops).map((h) => ({
    label: `${h.app}, ${h.path}`,
    'runtime (ms)': ms(h.runtimeMs),
    'fabric, local (ms)': ms(h.fabricLocalMs),
    'one hop (ms)': ms(h.hopMs),
    'hop − runtime (ms)':
      num(h.hopMs) !== undefined && num(h.runtimeMs) !== undefined
        ? Number(h.hopMs) - Number(h.runtimeMs)
        : undefined,
  }));
  if (!rows.length) return undefined;
  return {
    id: 'hops',
    title: 'One call across the fabric, in a tab',
    baseline: 'the runtime called directly',
    rows,
  };
}

function contextSection(b: Json): Section | undefined {
  const fabric = isObject(b.fabric) ? b.fabric : {};
  const c = isObject(fabric.context) ? fabric.context : {};
  const rows: Row[] = [];
  const tabs = isObject(c.tabs) ? c.tabs : undefined;
  if (tabs) {
    rows.push({
      label: `${tabs.tabs} tabs`,
      'p50 (ms)': ms(tabs.p50Ms),
      'p99 (ms)': ms(tabs.p99Ms),
    });
    for (const [label, key] of [
      ['(writer: its own storage write)', 'writerStore'],
      ['(writer: sent → acknowledged)', 'relayAck'],
    ] as const) {
      const stage = isObject(tabs[key]) ? tabs[key] : undefined;
      if (stage) rows.push({ label, 'p50 (ms)': ms(stage.p50Ms), 'p99 (ms)': ms(stage.p99Ms) });
    }
  }
  const sim = arr(c.simulated).filter((s) => num(s.nodes) !== undefined);
  for (const s of sim) {
    rows.push({
      label: `${Number(s.nodes) - 1} simulated nodes`,
      'p50 (ms)': ms(s.p50Ms),
      'p99 (ms)': ms(s.p99Ms),
      'all reached p50 (ms)': ms(s.allReachedP50Ms),
      'writes/s acked': num(s.writesPerSecond),
    });
  }
  for (const st of arr(c.store)) {
    rows.push({
      label: `(the store alone, ${num(st.inFlight)} in flight)`,
      'p50 (ms)': ms(st.p50Ms),
      'p99 (ms)': ms(st.p99Ms),
      'writes/s acked': num(st.writesPerSecond),
    });
  }
  if (!rows.length) return undefined;
  const line = (label: string, key: string) => ({
    label,
    points: sim
      .filter((s) => num(s[key]) !== undefined)
      .map((s) => [Number(s.nodes) - 1, Number(s[key])] as [number, number]),
  });
  return {
    id: 'context',
    title: 'Context: a write reaching N watchers (medians and 99th percentiles)',
    rows,
    series: sim.length
      ? [
          {
            id: 'fanout',
            title: 'Context fan-out: write to watcher latency vs watchers',
            x: 'watchers',
            y: 'latency (ms)',
            logX: true,
            lines: [
              line('p50', 'p50Ms'),
              line('p99', 'p99Ms'),
              line('all reached, p50', 'allReachedP50Ms'),
            ],
          },
        ]
      : [],
  };
}

function vadSection(b: Json): Section | undefined {
  const fabric = isObject(b.fabric) ? b.fabric : {};
  const vad = arr(fabric.vad);
  const first = num(vad[0]?.p50Ms);
  const rows = vad.map((v) => ({
    label: `${v.where}, via ${v.via}`,
    'p50 (ms)': ms(v.p50Ms),
    'p90 (ms)': ms(v.p90Ms),
    'model run() p50 (ms)': ms(v.modelP50Ms),
    'the rest p50 (ms)': ms(v.restP50Ms),
    'vs the calling tab': first && num(v.p50Ms) !== undefined ? Number(v.p50Ms) / first : undefined,
  }));
  if (!rows.length) return undefined;
  return {
    id: 'vad',
    title: 'The vad app: a chunk of 4 frames (128 ms of audio), Silero state in the context store',
    baseline: 'the calling tab',
    rows,
  };
}

function consoleSection(b: Json): Section | undefined {
  const fabric = isObject(b.fabric) ? b.fabric : {};
  const c = isObject(fabric.adminConsole) ? fabric.adminConsole : undefined;
  if (!c) return undefined;
  return {
    id: 'admin-console',
    title: 'The admin console under many nodes',
    rows: [
      {
        label: `${c.nodes} nodes`,
        'first full table (ms)': ms(c.firstTableMs),
        'long tasks (% of main thread)':
          num(c.longTaskShare) !== undefined ? Number(c.longTaskShare) * 100 : undefined,
      },
    ],
  };
}

function hardeningSections(b: Json): Section[] {
  const h = isObject(b.hardening) ? b.hardening : undefined;
  if (!h) return [];
  const out: Section[] = [];
  const load = (label: string, l: unknown): Row | undefined =>
    isObject(l)
      ? {
          label,
          'calls/s': num(l.perSecond),
          'p50 (ms)': ms(l.p50Ms),
          'p99 (ms)': ms(l.p99Ms),
          errors: num(l.errors),
        }
      : undefined;
  const soak = isObject(h.soak) ? h.soak : {};
  const loads = [
    load(`HTTP load, ${isObject(h.httpLoad) ? h.httpLoad.clients : '?'} clients`, h.httpLoad),
    load(`soak, ${soak.nodes} nodes connected`, soak.load),
  ].filter((r): r is Row => r !== undefined);
  if (loads.length) {
    out.push({
      id: 'http-load',
      title:
        'The relay under HTTP load: digits/classify (MessagePack) on the relay and its cloud node',
      rows: loads,
    });
  }
  const rss = isObject(h.rss) ? h.rss : {};
  const httpLoad = isObject(h.httpLoad) ? h.httpLoad : {};
  const mem: Row[] = [
    { label: 'idle, no cloud node', MB: num(rss.idleNoCloudMB) },
    { label: 'idle, with its cloud node', MB: num(rss.idleWithCloudMB) },
    {
      label: '1,000 simulated nodes connected',
      MB: num(rss.with1000NodesMB),
      'per node (KB)': num(rss.perNodeKB),
    },
    { label: 'after the HTTP load', MB: num(httpLoad.relayRssMB) },
    {
      label: 'soak: at the end',
      MB: num(soak.endMB),
      'growth (%)': num(soak.growth) !== undefined ? Number(soak.growth) * 100 : undefined,
    },
  ].filter((r) => r.MB !== undefined);
  const samples = arr(soak.rssMB).filter(
    (s) => num(s.atS) !== undefined && num(s.mb) !== undefined,
  );
  if (mem.length) {
    out.push({
      id: 'relay-memory',
      title: 'Relay memory (RSS of the relay process)',
      rows: mem,
      series: samples.length
        ? [
            {
              id: 'soak',
              title: 'Relay RSS during the soak',
              x: 'time (s)',
              y: 'RSS (MB)',
              lines: [{ label: 'RSS', points: samples.map((s) => [Number(s.atS), Number(s.mb)]) }],
            },
          ]
        : [],
    });
  }
  return out;
}

const converters: ((b: Json) => Section | Section[] | undefined)[] = [
  logicSection,
  modelSection,
  decisionsSection,
  leasesSection,
  hopsSection,
  contextSection,
  vadSection,
  consoleSection,
  tabsMemorySection,
  versusSection,
  hardeningSections,
];

/** The sections of a bench.json object: its `sections`, then the converted older figures. */
export function sectionsOf(bench: unknown): { sections: Section[]; skipped: string[] } {
  const skipped: string[] = [];
  if (!isObject(bench)) return { sections: [], skipped: ['the bench object is not an object'] };
  const sections: Section[] = [];
  const seen = new Set<string>();
  for (const s of Array.isArray(bench.sections) ? bench.sections : []) {
    const problem = sectionProblem(s);
    if (problem) skipped.push(`sections: ${problem}`);
    else if (seen.has((s as Section).id))
      skipped.push(`sections: ${(s as Section).id}: a second section with this id`);
    else {
      sections.push(s as Section);
      seen.add((s as Section).id);
    }
  }
  for (const convert of converters) {
    let made: Section | Section[] | undefined;
    try {
      made = convert(bench);
    } catch (e) {
      skipped.push(`${convert.name}: ${(e as Error).message}`);
      continue;
    }
    for (const s of made === undefined ? [] : Array.isArray(made) ? made : [made]) {
      if (!seen.has(s.id)) sections.push(s);
      seen.add(s.id);
    }
  }
  return { sections, skipped };
}

// ——— Markdown ———

const cellText = (s: string) => s.replace(/\|/g, '\\|').replace(/\n/g, ' ');

/** `after`, or `before → after (±x%)` when the previous run had the figure. */
export function beforeAfter(after: number | undefined, before: number | undefined): string {
  if (after === undefined) return before === undefined ? '' : `${formatNumber(before)} → —`;
  if (before === undefined) return formatNumber(after);
  const pct = Math.abs((after / before - 1) * 100);
  const change =
    before === 0
      ? ''
      : ` (${after >= before ? '+' : '−'}${pct < 10 ? pct.toFixed(1) : Math.round(pct)}%)`;
  return `${formatNumber(before)} → ${formatNumber(after)}${change}`;
}

function table(s: Section, previous: Section | undefined): string {
  const columns: string[] = [];
  for (const r of s.rows)
    for (const k of Object.keys(r)) if (k !== 'label' && !columns.includes(k)) columns.push(k);
  const prevRow = new Map((previous?.rows ?? []).map((r) => [r.label, r]));
  const lines = [
    `| | ${columns.map(cellText).join(' | ')} |`,
    `|---|${columns.map(() => '---:').join('|')}|`,
  ];
  for (const r of s.rows) {
    const p = prevRow.get(r.label);
    const cells = columns.map((c) => {
      const v = r[c];
      if (typeof v === 'string') return cellText(v);
      const before = p?.[c];
      return beforeAfter(num(v), num(before));
    });
    lines.push(`| ${cellText(r.label)} | ${cells.join(' | ')} |`);
  }
  return lines.join('\n');
}

/** The SVG of one plot. */
export function plotSvg(p: Plot): string {
  return lineChart({
    title: p.title,
    x: p.x,
    y: p.y,
    ...(p.logX && { logX: true }),
    ...(p.logY && { logY: true }),
    lines: p.lines.map((l) => ({
      label: l.label,
      points: p.kind === 'cdf' ? cdfPoints(l.samples ?? []) : (l.points ?? []),
    })),
  });
}

function describeRun(b: unknown): string {
  if (!isObject(b)) return 'none';
  const m = isObject(b.machine) ? b.machine : {};
  return `${b.date ?? 'undated'} (${m.cpu ?? '?'}, ${m.cores ?? '?'} cores, Node ${m.node ?? '?'})`;
}

/** report.md's text and the plots it links to, by file name. */
export function renderReport(
  current: unknown,
  previous?: unknown,
): { markdown: string; svgs: Record<string, string> } {
  const now = sectionsOf(current);
  const before = previous === undefined ? undefined : sectionsOf(previous);
  const prevById = new Map((before?.sections ?? []).map((s) => [s.id, s]));
  const svgs: Record<string, string> = {};
  const md: string[] = [
    '# Brume bench report',
    '',
    `This run: ${describeRun(current)}  `,
    `Previous run: ${describeRun(previous)}`,
    '',
    before
      ? 'Each figure reads previous → this run (change). Figures are medians unless a column says otherwise; runs on a shared machine move by several percent on their own.'
      : 'No previous run (bench-results/previous.json): figures are this run alone.',
    '',
  ];
  for (const s of now.sections) {
    md.push(`## ${s.title}`, '');
    if (s.baseline) md.push(`Baseline: ${s.baseline}.`, '');
    if (s.rows.length) md.push(table(s, prevById.get(s.id)), '');
    if (s.note) md.push(s.note, '');
    for (const p of s.series ?? []) {
      const name = `${s.id}-${p.id}.svg`;
      svgs[name] = plotSvg(p);
      md.push(`![${cellText(p.title)}](${name})`, '');
    }
  }
  const gone = (before?.sections ?? []).filter((s) => !now.sections.some((n) => n.id === s.id));
  if (gone.length)
    md.push(
      `Not measured in this run (the previous run had them): ${gone.map((s) => s.title).join('; ')}.`,
      '',
    );
  const skipped = [...now.skipped, ...(before?.skipped ?? []).map((s) => `previous: ${s}`)];
  if (skipped.length) md.push('Left out, malformed:', '', ...skipped.map((s) => `- ${s}`), '');
  return { markdown: md.join('\n'), svgs };
}

/** Writes report.md and its SVG files into `dir`; answers the paths written. */
export function writeReport(dir: string, current: unknown, previous?: unknown): string[] {
  mkdirSync(dir, { recursive: true });
  const { markdown, svgs } = renderReport(current, previous);
  const written = [join(dir, 'report.md')];
  writeFileSync(written[0]!, markdown);
  for (const [name, svg] of Object.entries(svgs)) {
    writeFileSync(join(dir, name), svg);
    written.push(join(dir, name));
  }
  return written;
}
