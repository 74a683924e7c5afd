/**
 * The admin console's sessions panel (PROTOCOL.md §5.9): each session open now with its caller,
 * the node serving it, its frame rate, the relay's latency and energy estimates and why; the
 * nodes leaving their sessions; and the last migrations (from → to, why, state moved, hand-over).
 */
import { html } from 'htm/preact';
import type { SessionsAnswer } from '../../core/api';

const short = (id: string) => html`<code title=${id}>${id.slice(0, 8)}</code>`;

export function Sessions({ sessions, migrations, leaving }: SessionsAnswer) {
  const away = Object.entries(leaving);
  const recent = migrations.slice(-20).reverse();
  return html`<section class="card" id="sessions">
    <h2>Sessions (${sessions.length})</h2>
    ${
      sessions.length === 0
        ? html`<p>No session is open.</p>`
        : html`<div class="scroll"><table>
        <thead>
          <tr><th>session</th><th>service</th><th>caller</th><th>node</th><th>fps</th><th>latency (ms)</th><th>energy (mJ/frame)</th><th>moves</th><th>reason</th></tr>
        </thead>
        <tbody>
          ${sessions.map(
            (s) => html`<tr key=${s.id} data-session=${s.id}>
              <td>${short(s.id)}</td>
              <td><code>${s.app}/${s.service}</code></td>
              <td>${short(s.caller)}</td>
              <td>${s.node === s.caller ? html`local` : short(s.node)}</td>
              <td>${s.fps}</td>
              <td>${s.latencyMs.toFixed(1)}</td>
              <td>${s.energyMj.toFixed(1)}</td>
              <td>${s.moves}</td>
              <td class="reason">${s.reason}</td>
            </tr>`,
          )}
        </tbody>
      </table></div>`
    }
    ${
      away.length > 0 &&
      html`<p>Leaving: ${away.map(([node, why]) => html`${short(node)} (${why}) `)}</p>`
    }
    <h3>Migrations (${migrations.length})</h3>
    ${
      recent.length === 0
        ? html`<p>No session has moved.</p>`
        : html`<div class="scroll"><table>
        <thead>
          <tr><th>at</th><th>session</th><th>from → to</th><th>why</th><th>state (B)</th><th>hand-over (ms)</th></tr>
        </thead>
        <tbody>
          ${recent.map(
            (m) => html`<tr key=${`${m.session}-${m.at}`} data-migration=${m.session}>
              <td>${new Date(m.at).toLocaleTimeString()}</td>
              <td>${short(m.session)}</td>
              <td>${short(m.from)} → ${short(m.to)}</td>
              <td>${m.why}</td>
              <td>${m.stateBytes ?? ''}</td>
              <td>${m.handOverMs.toFixed(1)}</td>
            </tr>`,
          )}
        </tbody>
      </table></div>`
    }
  </section>`;
}
