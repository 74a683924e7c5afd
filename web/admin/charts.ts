/**
 * The console's latency plots (uPlot): over time, and the distribution per app and variant, for
 * the calls that went through the relay.
 */
import { html } from 'htm/preact';
import { useEffect, useRef } from 'preact/hooks';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import type { CallRecord } from '../../core/api';

export const palette = ['#3a6fd8', '#e08a00', '#1e7b34', '#b3261e', '#7b3ad8', '#008b8b'];

/** Calls through the relay, grouped by app/service/variant. */
function series(calls: CallRecord[]) {
  const groups = new Map<string, CallRecord[]>();
  for (const c of calls) {
    if (!c.ok) continue;
    const k = `${c.app}/${c.service}/${c.variant}`;
    groups.set(k, [...(groups.get(k) ?? []), c]);
  }
  return [...groups.entries()].slice(0, palette.length);
}

/** A uPlot chart kept across renders; `data` and `opts` rebuilt from props. */
export function Chart({
  id,
  opts,
  data,
}: {
  id: string;
  opts: Omit<uPlot.Options, 'width' | 'height'>;
  data: uPlot.AlignedData;
}) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot>();
  // Redrawn when the data changes (once a second at most, at most 1,000 calls): simpler and
  // no slower than patching series in place.
  const key = JSON.stringify([opts.series.map((s) => s.label), data]);
  const last = useRef('');
  useEffect(() => {
    if (!box.current || last.current === key) return;
    plot.current?.destroy();
    const width = box.current.clientWidth || 500;
    plot.current = new uPlot({ ...opts, width, height: 220 }, data, box.current);
    last.current = key;
  });
  useEffect(() => () => plot.current?.destroy(), []);
  return html`<div id=${id} ref=${box}></div>`;
}

export function LatencyOverTime({ calls }: { calls: CallRecord[] }) {
  const groups = series(calls);
  const xs = [...new Set(calls.filter((c) => c.ok).map((c) => c.at / 1000))].sort((a, b) => a - b);
  const index = new Map(xs.map((x, i) => [x, i]));
  const ys = groups.map(([, cs]) => {
    const y: (number | null)[] = xs.map(() => null);
    for (const c of cs) y[index.get(c.at / 1000)!] = c.ms;
    return y;
  });
  return html`<section class="card" id="latency">
    <h2>Latency over time (calls through the relay)</h2>
    ${
      groups.length
        ? html`<${Chart}
            id="latency-plot"
            data=${[xs, ...ys]}
            opts=${{
              scales: { x: { time: true } },
              axes: [{}, { label: 'ms' }],
              series: [
                {},
                ...groups.map(([k], i) => ({
                  label: k,
                  stroke: palette[i],
                  spanGaps: true,
                  points: { show: true, size: 4 },
                })),
              ],
            }}
          />`
        : html`<p>No calls through the relay yet.</p>`
    }
  </section>`;
}

export function LatencyDistribution({ calls }: { calls: CallRecord[] }) {
  const groups = series(calls);
  const all = groups.flatMap(([, cs]) => cs.map((c) => c.ms));
  const bins = 20;
  const max = Math.max(1, ...all);
  const edges = Array.from({ length: bins }, (_, i) => ((i + 0.5) * max) / bins);
  const counts = groups.map(([, cs]) => {
    const h = new Array<number>(bins).fill(0);
    for (const c of cs) h[Math.min(bins - 1, Math.floor((c.ms / max) * bins))]!++;
    return h;
  });
  const bars = uPlot.paths.bars?.({ size: [0.8, 40] });
  return html`<section class="card" id="distribution">
    <h2>Latency distribution per app and variant</h2>
    ${
      groups.length
        ? html`<${Chart}
            id="distribution-plot"
            data=${[edges, ...counts]}
            opts=${{
              scales: { x: { time: false } },
              axes: [{ label: 'ms' }, { label: 'calls' }],
              series: [
                {},
                ...groups.map(([k], i) => ({
                  label: k,
                  stroke: palette[i],
                  fill: `${palette[i]}55`,
                  paths: bars,
                })),
              ],
            }}
          />`
        : html`<p>No calls through the relay yet.</p>`
    }
  </section>`;
}
