// The bench report writer (tests/bench/report.ts): Markdown tables with previous → current, SVG
// plots that are well-formed XML with their data inside the frame, and no throw on missing or
// malformed sections.
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { beforeAfter, renderReport, type Section, writeReport } from '../bench/report';

/** Throws unless `svg` is well-formed XML with an <svg> root (tags nest, attributes quoted). */
function checkXml(svg: string): string[] {
  const stack: string[] = [];
  const tags: string[] = [];
  const text = svg.replace(/<\?xml[^>]*\?>/, '');
  const token = /<(\/?)([a-zA-Z][\w:-]*)((?:\s+[\w:-]+="[^"<]*")*)\s*(\/?)>|<|&(?!#\d+;|[a-z]+;)/g;
  for (const m of text.matchAll(token)) {
    if (m[0] === '<')
      throw new Error(`stray < at ${m.index}: ${text.slice(m.index, m.index + 40)}`);
    if (m[0] === '&') throw new Error(`bare & at ${m.index}`);
    const [, close, name, , selfClose] = m;
    if (close) {
      const open = stack.pop();
      if (open !== name) throw new Error(`</${name}> closes <${open}>`);
    } else {
      if (stack.length === 0 && tags.length > 0) throw new Error(`second root <${name}>`);
      tags.push(name!);
      if (!selfClose) stack.push(name!);
    }
  }
  if (stack.length) throw new Error(`unclosed: ${stack.join(', ')}`);
  if (tags[0] !== 'svg') throw new Error('root is not <svg>');
  return tags;
}

const hardening = (p50: number) => ({
  httpLoad: { clients: 16, calls: 100, errors: 0, perSecond: 600, p50Ms: p50, p99Ms: 70 },
  rss: { idleNoCloudMB: 120, idleWithCloudMB: 150, with1000NodesMB: 146, perNodeKB: 25 },
  soak: {
    nodes: 1000,
    rssMB: [
      { atS: 10, mb: 290 },
      { atS: 30, mb: 300 },
    ],
    endMB: 300,
    growth: 0.03,
  },
});
const context = (p50s: number[]) => ({
  simulated: p50s.map((p50, i) => ({
    nodes: 10 ** (i + 1),
    p50Ms: p50,
    p99Ms: p50 * 3,
    allReachedP50Ms: p50 * 2,
    writesPerSecond: 1000 / (i + 1),
  })),
});
const squeezenet = (app: number): Section => ({
  id: 'squeezenet',
  title: 'SqueezeNet',
  baseline: 'run()',
  rows: [{ label: 'tab, wasm', 'Logic+Model (ms)': app, path: 'local | wasm' }],
  series: [
    {
      id: 'latency',
      title: 'SqueezeNet: latency <distribution> & co',
      x: 'ms',
      y: 'share',
      kind: 'cdf',
      lines: [{ label: 'tab', samples: [app, app * 1.1, app * 0.9, app * 1.5] }],
    },
  ],
});

const previous = {
  date: '2026-12-01T00:00:00Z',
  machine: { cpu: 'AMD EPYC', cores: 2, node: 'v20' },
  model: [
    { where: 'tab', backend: 'wasm', variant: 'small', engineMs: 0.1, modelMs: 0.3, appMs: 0.8 },
  ],
  fabric: {
    decisionsPerSecond: { inProcess1000Nodes: 10_000, viaRelay1000Nodes: 7000 },
    context: context([1, 4]),
  },
  hardening: hardening(25),
  sections: [squeezenet(80)],
};
const current = {
  date: '2026-12-02T00:00:00Z',
  machine: { cpu: 'AMD EPYC', cores: 2, node: 'v20' },
  model: [
    { where: 'tab', backend: 'wasm', variant: 'small', engineMs: 0.1, modelMs: 0.3, appMs: 0.6 },
  ],
  fabric: {
    decisions: [
      { where: 'in process, index', nodes: 100, perSecond: 40_000, p99Ms: 0.1, cpuUs: 20 },
      { where: 'in process, place() scan', nodes: 1000, perSecond: 12_000, p99Ms: 0.2 },
      { where: 'through the relay, 50 asking', nodes: 1000, perSecond: 7700, p99Ms: 9 },
    ],
    context: context([1.5, 3, 20]),
  },
  hardening: hardening(20),
  sections: [
    squeezenet(60),
    { id: 'Bad Id', title: 'x', rows: [] },
    { id: 'leases', title: 'Leases', rows: [{ label: 'a', n: {} }] },
  ],
};

let dir: string | undefined;
afterEach(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
  dir = undefined;
});

describe('the bench report', () => {
  it('writes tables with previous → current and a valid SVG per plot', () => {
    dir = mkdtempSync(join(tmpdir(), 'brume-report-'));
    const written = writeReport(dir, current, previous);
    const md = readFileSync(join(dir, 'report.md'), 'utf8');
    // A section adopted the shape (squeezenet) and a converted older one (the digits model).
    expect(md).toContain('| tab, wasm | 80.0 → 60.0 (−25%) | local \\| wasm |');
    expect(md).toContain(
      '| tab, wasm, small | 0.1 → 0.1 (+0.0%) | 0.3 → 0.3 (+0.0%) | 0.8 → 0.6 (−25%) |',
    );
    expect(md).toContain('| HTTP load, 16 clients | 600 → 600 (+0.0%) | 25.0 → 20.0 (−20%) |');
    // A row the previous run did not have: the figure alone.
    expect(md).toContain('| in process, index, 100 nodes | 40,000 | 0.1 | 20.0 |');
    // An older run's decisionsPerSecond keys still give the "before" of the same rows.
    expect(md).toContain('| in process, place() scan, 1,000 nodes | 10,000 → 12,000 (+20%) |');
    expect(md).toContain('| 999 simulated nodes | 20.0 |');
    // Malformed sections are named, not thrown.
    expect(md).toContain('Left out, malformed:');
    expect(md).toContain('- sections: id: expected [a-z0-9-]');
    expect(md).toContain('- sections: leases: rows[0].n: expected a number or a string');

    const svgs = readdirSync(dir)
      .filter((f) => f.endsWith('.svg'))
      .sort();
    expect(svgs).toEqual([
      'context-fanout.svg',
      'decisions-vs-nodes.svg',
      'relay-memory-soak.svg',
      'squeezenet-latency.svg',
    ]);
    expect(written).toHaveLength(1 + svgs.length);
    for (const name of svgs) {
      expect(md).toContain(`](${name})`);
      const svg = readFileSync(join(dir, name), 'utf8');
      expect(checkXml(svg)).toContain('polyline');
      // Every plotted point lies inside the 640×400 canvas.
      for (const m of svg.matchAll(/points="([^"]*)"/g)) {
        for (const pair of m[1]!.split(' ')) {
          const [x, y] = pair.split(',').map(Number);
          expect(x).toBeGreaterThanOrEqual(0);
          expect(x).toBeLessThanOrEqual(640);
          expect(y).toBeGreaterThanOrEqual(0);
          expect(y).toBeLessThanOrEqual(400);
        }
      }
    }
    const fanout = readFileSync(join(dir, 'context-fanout.svg'), 'utf8');
    expect(fanout.match(/<polyline /g)).toHaveLength(3);
    // The title's markup characters are escaped.
    expect(readFileSync(join(dir, 'squeezenet-latency.svg'), 'utf8')).toContain(
      'latency &#60;distribution&#62; &#38; co',
    );
  });

  it('renders whatever is there: no previous run, a hardening-only run, nothing at all', () => {
    const alone = renderReport(current);
    expect(alone.markdown).toContain('No previous run');
    expect(alone.markdown).toContain('| tab, wasm | 60.0 |');
    const onlyHardening = renderReport({ date: 'd', hardening: hardening(20) }, previous);
    expect(onlyHardening.markdown).toContain('25.0 → 20.0');
    expect(onlyHardening.markdown).toContain('Not measured in this run');
    expect(onlyHardening.markdown).not.toContain('## SqueezeNet');
    for (const odd of [{}, null, [], 'x', { fabric: 7, model: 'no', hardening: { soak: null } }]) {
      const r = renderReport(odd, odd);
      expect(r.markdown).toContain('# Brume bench report');
      for (const svg of Object.values(r.svgs)) checkXml(svg);
    }
  });

  it('says before → after with the change, and a figure that disappeared', () => {
    expect(beforeAfter(12, 10)).toBe('10.0 → 12.0 (+20%)');
    expect(beforeAfter(0.5, undefined)).toBe('0.5');
    expect(beforeAfter(undefined, 3)).toBe('3.00 → —');
    expect(beforeAfter(1, 0)).toBe('0 → 1.00');
  });
});
