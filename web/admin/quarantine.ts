/**
 * The admin console's quarantine panel: nodes caught answering wrong by redundant execution
 * (relay/verify.ts), each with its evidence and a button that lets it serve again.
 */
import { html } from 'htm/preact';
import { useState } from 'preact/hooks';
import type { QuarantineEntry } from '../../core/api';

export function Quarantine({
  entries,
  release,
}: {
  entries: QuarantineEntry[];
  /** DELETE /api/quarantine/:node; rejects with the relay's message. */
  release: (node: string) => Promise<unknown>;
}) {
  const [msg, setMsg] = useState('');
  const act = async (node: string) => {
    try {
      await release(node);
      setMsg(`released ${node.slice(0, 8)}`);
    } catch (e) {
      setMsg((e as Error).message);
    }
  };
  return html`<section class="card" id="quarantine">
    <h2>Quarantine (${entries.length}) ${msg && html`<small class="ok">· ${msg}</small>`}</h2>
    ${
      entries.length === 0
        ? html`<p>No node has disagreed with a check.</p>`
        : html`<div class="scroll"><table>
        <thead>
          <tr><th>node</th><th>since</th><th>call</th><th>difference</th><th>its answer</th><th>checked by</th><th>their answer</th><th></th></tr>
        </thead>
        <tbody>
          ${entries.map(({ node, since, evidence: e }) => {
            const by = e.by === 'trusted' ? 'trusted' : 'majority of three';
            return html`<tr key=${node} data-node=${node}>
              <td><code title=${node}>${node.slice(0, 8)}</code></td>
              <td>${new Date(since).toLocaleTimeString()}</td>
              <td><code>${e.app}/${e.service}/${e.rpc}</code></td>
              <td class="bad">${e.where}</td>
              <td><code title=${`sha256 ${e.digest}…`}>${e.answer}</code></td>
              <td><code title=${e.other}>${e.other.slice(0, 8)}</code> (${by})</td>
              <td><code title=${`sha256 ${e.otherDigest}…`}>${e.otherAnswer}</code></td>
              <td><button type="button" class="release" onClick=${() => act(node)}>Release</button></td>
            </tr>`;
          })}
        </tbody>
      </table></div>`
    }
  </section>`;
}
