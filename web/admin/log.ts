/**
 * The console's logs: the relay's scheduling decisions with their reasons, and the context store's
 * keys (never their values) with how changes reached the nodes.
 */
import { html } from 'htm/preact';
import type { CallRecord, ContextFanout, ContextKeyInfo, DecisionRecord } from '../../core/api';
import { short } from './fabric';

export function Decisions({ decisions }: { decisions: DecisionRecord[] }) {
  // In a cluster each decision names the relay that made it: a column for it.
  const clustered = decisions.some((d) => d.relay !== undefined);
  return html`<section class="card" id="decisions">
    <h2>Scheduling decisions (newest first)</h2>
    <div class="scroll">
      <table>
        <thead><tr><th>time</th><th>request</th><th>QoS</th><th>caller</th><th>chosen</th>${clustered && html`<th>relay</th>`}<th>reason</th></tr></thead>
        <tbody>
          ${decisions
            .slice(-200)
            .reverse()
            .map(
              // Two decisions can share a millisecond, caller and reason (HTTP calls in a row):
              // the position makes the key unique, so Preact never merges their rows.
              (d, i) => html`<tr key=${`${d.at}-${i}`}>
                <td>${new Date(d.at).toLocaleTimeString()}</td>
                <td>${d.app}/${d.service}</td>
                <td><code>${JSON.stringify(d.qos)}</code></td>
                <td>${d.caller ? short(d.caller) : 'HTTP'}</td>
                <td>${d.ok ? `${short(d.node ?? '')} ${d.rpc ?? ''}` : html`<span class="error">refused</span>`}</td>
                ${clustered && html`<td class="relay"><code title=${d.relay ?? ''}>${d.relay ? short(d.relay) : '—'}</code></td>`}
                <td>${d.reason}</td>
              </tr>`,
            )}
        </tbody>
      </table>
    </div>
  </section>`;
}

/** Pipeline calls through the relay: the quality level chosen and where each stage ran. */
export function Pipelines({ calls }: { calls: CallRecord[] }) {
  const runs = calls
    .filter((c) => c.stages !== undefined)
    .slice(-50)
    .reverse();
  return html`<section class="card" id="pipelines">
    <h2>Pipeline calls (newest first)</h2>
    ${
      runs.length === 0
        ? html`<p>No pipeline calls through the relay yet.</p>`
        : html`<div class="scroll"><table>
            <thead><tr><th>time</th><th>pipeline</th><th>quality</th><th>ms</th><th>stages → nodes</th></tr></thead>
            <tbody>
              ${runs.map(
                (c, i) => html`<tr key=${`${c.at}-${i}`} class="pipeline-call">
                  <td>${new Date(c.at).toLocaleTimeString()}</td>
                  <td>${c.app}/${c.service}</td>
                  <td class="quality">${c.quality ?? '—'}</td>
                  <td>${c.ok ? c.ms.toFixed(1) : html`<span class="error">failed</span>`}</td>
                  <td>${(c.stages ?? []).map((s) => `${s.stage} → ${s.nodes.map(short).join(', ')}`).join(' · ')}</td>
                </tr>`,
              )}
            </tbody>
          </table></div>`
    }
  </section>`;
}

export function Context({ keys, fanout }: { keys: ContextKeyInfo[]; fanout: ContextFanout }) {
  const now = Date.now();
  const live = keys.filter((k) => !k.deleted);
  return html`<section class="card" id="context">
    <h2>Context store (${live.length} keys)</h2>
    <p class="fanout">Changes sent: ${fanout.direct} straight to nodes · ${fanout.viaFog} through fogs${fanout.unsent ? ` · ${fanout.unsent} re-sent for a fog` : ''}</p>
    ${
      live.length === 0
        ? html`<p>No context keys yet.</p>`
        : html`<div class="scroll"><table>
            <thead><tr><th>app</th><th>key</th><th>scope</th><th>expires</th><th>privacy</th><th>size</th><th>written</th></tr></thead>
            <tbody>
              ${live.map(
                (k) => html`<tr key=${`${k.app}/${k.scope}/${k.owner ?? ''}/${k.key}`}>
                  <td>${k.app}</td><td><code>${k.key}</code></td>
                  <td>${k.scope}${k.owner ? ` (${short(k.owner)})` : ''}</td>
                  <td>${k.expiresAt === undefined ? 'never' : k.expiresAt <= now ? html`<span class="error">expired</span>` : `in ${((k.expiresAt - now) / 1000).toFixed(1)} s`}</td>
                  <td>${k.privacy ? `private (${k.privacy.length} key${k.privacy.length > 1 ? 's' : ''})` : 'app-wide'}</td>
                  <td>${k.bytes} B</td>
                  <td>${new Date(k.stamp.wall).toLocaleTimeString()} by ${k.stamp.node === 'relay' ? 'HTTP' : short(k.stamp.node)}</td>
                </tr>`,
              )}
            </tbody>
          </table></div>`
    }
  </section>`;
}
