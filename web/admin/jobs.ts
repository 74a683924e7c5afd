/**
 * The admin console's jobs panel: how many jobs are in each state, and the ones queued or running
 * now (their node, attempts, and why a queued one waits). PROTOCOL.md §6.1.
 */
import { html } from 'htm/preact';
import type { JobState, JobView } from '../../core/jobs-client';

export function Jobs({ counts, active }: { counts: Record<JobState, number>; active: JobView[] }) {
  const states = Object.entries(counts) as [JobState, number][];
  return html`<section class="card" id="jobs">
    <h2>Jobs</h2>
    <p class="counts">
      ${states.map(([s, n]) => html`<span class="count" data-state=${s}><b>${n}</b> ${s} </span>`)}
    </p>
    ${
      active.length === 0
        ? html`<p>No job is queued or running.</p>`
        : html`<div class="scroll"><table>
        <thead>
          <tr><th>job</th><th>app/service</th><th>state</th><th>node</th><th>attempts</th><th>submitted</th><th>waiting for</th></tr>
        </thead>
        <tbody>
          ${active.map(
            (j) => html`<tr key=${j.id} data-job=${j.id}>
              <td><code title=${j.id}>${j.id.slice(-8)}</code></td>
              <td><code>${j.app}/${j.service}</code></td>
              <td>${j.state}</td>
              <td>${j.node ? html`<code title=${j.node}>${j.node.slice(0, 8)}</code>` : '—'}</td>
              <td>${j.attempts}</td>
              <td>${new Date(j.created).toLocaleTimeString()}</td>
              <td>${j.waiting ?? ''}</td>
            </tr>`,
          )}
        </tbody>
      </table></div>`
    }
  </section>`;
}
