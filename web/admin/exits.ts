/**
 * The admin console's early-exits panel: per app and model service with an exit head, and per
 * role of the nodes that ran it, the runs judged, the exits taken and their share (GET
 * /api/exits, PROTOCOL.md §5.2 `exits`).
 */
import { html } from 'htm/preact';
import type { ExitRow } from '../../core/api';

export function Exits({ rows }: { rows: ExitRow[] }) {
  return html`<section class="card" id="exits">
    <h2>Early exits</h2>
    ${
      rows.length === 0
        ? html`<p>No model with an exit head has run yet.</p>`
        : html`<div class="scroll"><table>
        <thead>
          <tr><th>app/model service</th><th>tier</th><th>calls</th><th>exits taken</th><th>share</th></tr>
        </thead>
        <tbody>
          ${rows.map(
            (
              r,
            ) => html`<tr key=${`${r.app}/${r.service}/${r.role}`} data-exit=${`${r.app}/${r.service}`} data-role=${r.role}>
              <td><code>${r.app}/${r.service}</code></td>
              <td>${r.role}</td>
              <td class="calls">${r.calls}</td>
              <td class="taken">${r.taken}</td>
              <td class="share">${r.calls > 0 ? `${((100 * r.taken) / r.calls).toFixed(1)}%` : '—'}</td>
            </tr>`,
          )}
        </tbody>
      </table></div>`
    }
  </section>`;
}
