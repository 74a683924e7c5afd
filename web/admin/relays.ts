/**
 * The admin console's relays panel (GET /api/relays, PROTOCOL.md §5.10): the relays of a cluster
 * sharing one Redis (`brume start --redis`), each with the nodes joined there and when it last
 * registered, the one this console talks to marked; and whether that relay reaches Redis. A lone
 * relay shows itself, Redis not configured.
 */
import { html } from 'htm/preact';
import type { RelaysAnswer } from '../../core/api';
import { short } from './fabric';

/** How long ago `at` was, in words a glance reads. */
function ago(at: number, now: number): string {
  const s = Math.max(0, (now - at) / 1000);
  return s < 60 ? `${s.toFixed(1)} s ago` : `${Math.round(s / 60)} min ago`;
}

export function Relays({ relays, redis }: RelaysAnswer) {
  const now = Date.now();
  return html`<section class="card" id="relays">
    <h2>Relays (${relays.length})</h2>
    <p class="redis">
      Redis: ${redis.ok ? html`<span class="ok">${redis.detail}</span>` : html`<span class="error">${redis.detail}</span>`}
    </p>
    <div class="scroll"><table>
      <thead><tr><th>relay</th><th>nodes</th><th>last heard</th></tr></thead>
      <tbody>
        ${relays.map(
          (r) => html`<tr key=${r.id} data-relay=${r.id} class=${r.self ? 'self' : ''}>
            <td><code title=${r.id}>${short(r.id)}</code>${r.self ? html`<span class="badge">this relay</span>` : ''}</td>
            <td class="nodes">${r.nodes}</td>
            <td>${ago(r.lastHeard, now)}</td>
          </tr>`,
        )}
      </tbody>
    </table></div>
  </section>`;
}
