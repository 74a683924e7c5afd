/**
 * The admin console's workers panel: each node's Logic workers over time (a line per node, from
 * the history the relay keeps of its heartbeats' `workers`), what each pool holds now, and the
 * latest scale events (PROTOCOL.md §3.2 "Worker pools", §5.2).
 */
import { html } from 'htm/preact';
import uPlot from 'uplot';
import type { NodeRecord } from '../../core/api';
import { Chart, palette } from './charts';

/** The latest size changes of every node's pools, newest first. */
function changes(nodes: NodeRecord[], keep = 12) {
  const out: { at: number; node: string; from: number; to: number }[] = [];
  for (const n of nodes) {
    const h = n.workersHistory ?? [];
    for (let i = 1; i < h.length; i++) {
      if (h[i]!.total !== h[i - 1]!.total)
        out.push({ at: h[i]!.at, node: n.id, from: h[i - 1]!.total, to: h[i]!.total });
    }
  }
  return out.sort((a, b) => b.at - a.at).slice(0, keep);
}

export function Workers({ nodes }: { nodes: NodeRecord[] }) {
  const shown = nodes.filter((n) => n.workersHistory?.length).slice(0, palette.length);
  const xs = [...new Set(shown.flatMap((n) => n.workersHistory!.map((s) => s.at / 1000)))].sort(
    (a, b) => a - b,
  );
  // Each node's count holds until its next sample (a step line).
  const ys = shown.map((n) => {
    const h = n.workersHistory!;
    let k = -1;
    return xs.map((x) => {
      while (k + 1 < h.length && h[k + 1]!.at / 1000 <= x) k++;
      return k < 0 ? null : h[k]!.total;
    });
  });
  const opts = {
    scales: { x: { time: true } },
    series: [
      {},
      ...shown.map((n, i) => ({
        label: `${n.id.slice(0, 8)} (${n.role})`,
        stroke: palette[i],
        // A count holds until it changes.
        paths: uPlot.paths.stepped?.({ align: 1 }),
      })),
    ],
    axes: [{}, { label: 'Logic workers' }],
  };
  const recent = changes(nodes);
  return html`<section class="card" id="workers">
    <h2>Workers</h2>
    ${
      shown.length === 0
        ? html`<p>No node has reported Logic workers yet.</p>`
        : html`<${Chart} id="workers-chart" opts=${opts} data=${[xs, ...ys]} />
      <div class="scroll"><table>
        <thead><tr><th>node</th><th>role</th><th>workers now</th><th>scale-ups</th><th>scale-downs</th></tr></thead>
        <tbody>
          ${shown.map(
            (n) => html`<tr key=${n.id} data-node=${n.id}>
              <td><code>${n.id.slice(0, 8)}</code></td>
              <td>${n.role}</td>
              <td class="now">${Object.entries(n.workers ?? {})
                .map(([s, w]) => `${s}: ${w}`)
                .join(', ')}</td>
              <td class="grows">${n.scaled?.grows ?? 0}</td>
              <td class="shrinks">${n.scaled?.shrinks ?? 0}</td>
            </tr>`,
          )}
        </tbody>
      </table></div>
      <h3>Latest scale events</h3>
      <ul class="scale-events">
        ${recent.map(
          (e) => html`<li key=${`${e.node}-${e.at}`}>
            ${new Date(e.at).toLocaleTimeString()} <code>${e.node.slice(0, 8)}</code>
            ${e.to > e.from ? 'grew' : 'shrank'} ${e.from} → ${e.to}
          </li>`,
        )}
      </ul>`
    }
  </section>`;
}
