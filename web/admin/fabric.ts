/**
 * The console's view of the fabric: warnings, the topology (cloud, fogs with their dews, other
 * dews; in a cluster, under the relay each node's socket is on) and the node table with the
 * trust buttons for fog keys.
 */
import { html } from 'htm/preact';
import { useState } from 'preact/hooks';
import type { HubEvent, NodeRecord, RelayRecord } from '../../core/api';
import type { RelayClient } from '../../core/relay-client';

export function Warnings({ events, nodes }: { events: HubEvent[]; nodes: NodeRecord[] }) {
  const bad = events.filter((e) => e.kind === 'evicted' || e.kind === 'refused').slice(-8);
  const hidden = nodes.filter((n) => n.paused).length;
  const full = nodes.filter((n) => n.context?.lastFull);
  if (bad.length === 0 && hidden === 0 && full.length === 0) return null;
  return html`<section class="card warnings" id="warnings">
    <h2>Warnings</h2>
    <ul>
      ${hidden > 0 && html`<li>${hidden} node${hidden > 1 ? 's are' : ' is'} paused and serve only themselves</li>`}
      ${full.map(
        (n) =>
          html`<li class="storage-full">${new Date(n.context!.lastFull!.at).toLocaleTimeString()} · storage full on ${short(n.id)}: ${evictedText(n)}${n.context!.lastFull!.freed ? '' : ', nothing left to evict: offline writes fail'}</li>`,
      )}
      ${bad.map(
        (e) =>
          html`<li>${new Date(e.at).toLocaleTimeString()} · ${e.kind}${e.node ? ` ${e.node.slice(0, 8)}` : ''}${e.relay ? ` at relay ${short(e.relay)}` : ''}: ${e.detail}</li>`,
      )}
    </ul>
  </section>`;
}

export const short = (id: string) => id.slice(0, 8);
export const evictedText = (n: NodeRecord) =>
  `evicted ${n.context?.evicted.expired ?? 0} expired, ${n.context?.evicted.lru ?? 0} least recently used${n.context?.unstored ? `; ${n.context.unstored} changes in memory only` : ''}`;
const kib = (bytes: number) => `${(bytes / 1024).toFixed(1)} KiB`;
const badge = (n: NodeRecord) =>
  html`<span class=${`badge ${n.role}`}>${n.role}</span>${n.trusted ? html`<span class="badge">trusted</span>` : ''}${n.paused ? html`<span class="badge bad">paused</span>` : ''}${n.quarantined ? html`<span class="badge bad">quarantined</span>` : ''}`;
const load = (n: NodeRecord) => `${n.queue}/${n.maxConcurrency}`;
/** What the relay measured for a key the node reports: placement uses it past three samples. */
const measuredText = (n: NodeRecord, key: string) => {
  const m = n.measured?.[key];
  return m ? ` · relay ${m.p50.toFixed(2)} ms (${m.count})` : '';
};

/** One relay's nodes as a tree: clouds, fogs with their dews, the other dews. */
function tree(nodes: NodeRecord[]) {
  const byParent = new Map<string, NodeRecord[]>();
  for (const n of nodes) {
    if (n.role !== 'dew' || !n.parent) continue;
    byParent.set(n.parent, [...(byParent.get(n.parent) ?? []), n]);
  }
  const leaf = (n: NodeRecord) =>
    html`<li key=${n.id} data-node=${n.id}><code>${short(n.id)}</code>${badge(n)} load ${load(n)}</li>`;
  const fogs = nodes.filter((n) => n.role === 'fog');
  const clouds = nodes.filter((n) => n.role === 'cloud');
  const orphans = nodes.filter(
    (n) => n.role === 'dew' && !(n.parent && fogs.some((f) => f.id === n.parent)),
  );
  return html`<ul>
    ${clouds.map(leaf)}
    ${fogs.map(
      (f) => html`<li key=${f.id} data-node=${f.id}>
        <code>${short(f.id)}</code>${badge(f)} load ${load(f)}
        <ul>${(byParent.get(f.id) ?? []).map(leaf)}</ul>
      </li>`,
    )}
    ${orphans.map(leaf)}
  </ul>`;
}

/**
 * The fabric as trees: one relay's, or in a cluster of several one per relay (`relays`, and any
 * relay a node names that the list lacks), each node under the relay its socket is on.
 */
export function Topology({ nodes, relays = [] }: { nodes: NodeRecord[]; relays?: RelayRecord[] }) {
  const self = relays.find((r) => r.self)?.id;
  const ids = [...new Set([...relays.map((r) => r.id), ...nodes.flatMap((n) => n.relay ?? [])])];
  if (ids.length <= 1)
    return html`<section class="card tree" id="topology">
      <h2>Topology</h2>
      <ul><li><strong>relay</strong>${tree(nodes)}</li></ul>
    </section>`;
  return html`<section class="card tree" id="topology">
    <h2>Topology (${ids.length} relays)</h2>
    <ul>
      ${ids.map(
        (id) => html`<li key=${id} data-relay=${id}>
          <strong>relay <code title=${id}>${short(id)}</code></strong>${id === self ? html`<span class="badge">this relay</span>` : ''}
          ${tree(nodes.filter((n) => (n.relay ?? self) === id))}
        </li>`,
      )}
    </ul>
  </section>`;
}

export function Nodes({
  relay,
  nodes,
  trust,
}: {
  relay: RelayClient;
  nodes: NodeRecord[];
  trust: { publicKey: string; label: string }[];
}) {
  const [msg, setMsg] = useState('');
  const listed = new Set(trust.map((t) => t.publicKey));
  // In a cluster every record names its relay: a column for it; a lone relay has none.
  const clustered = nodes.some((n) => n.relay !== undefined);
  const act = async (n: NodeRecord, approve: boolean) => {
    try {
      if (approve) {
        await relay.json('POST', '/api/trust', {
          publicKey: n.publicKey,
          label: `fog ${short(n.id)}`,
        });
      } else {
        await relay.json('DELETE', `/api/trust/${encodeURIComponent(n.publicKey)}`);
      }
      setMsg(`${approve ? 'trusted' : 'revoked'} ${short(n.id)}`);
    } catch (e) {
      setMsg((e as Error).message);
    }
  };
  return html`<section class="card" id="nodes">
    <h2>Nodes ${msg && html`<small class="ok">· ${msg}</small>`}</h2>
    <div class="scroll">
      <table>
        <thead>
          <tr><th>node</th>${clustered && html`<th>relay</th>`}<th>role</th><th>backends</th><th>cores / memory</th><th>battery / visible</th><th>load</th><th>RTT</th><th>apps</th><th>latency p50 (count)</th><th>context</th><th>trust</th></tr>
        </thead>
        <tbody>
          ${nodes.map(
            (n) => html`<tr key=${n.id} data-node=${n.id}>
              <td><code title=${n.id}>${short(n.id)}</code></td>
              ${clustered && html`<td class="relay"><code title=${n.relay ?? ''}>${n.relay ? short(n.relay) : '—'}</code></td>`}
              <td>${badge(n)}</td>
              <td>${n.caps.backends.map((b) => html`<div>${b.name}: ${b.detail}</div>`)}</td>
              <td>${n.caps.cores ?? '?'} cores${n.caps.memoryGiB ? ` · ${n.caps.memoryGiB} GiB` : ''}</td>
              <td>${n.caps.battery ? `${Math.round(n.caps.battery.level * 100)}%${n.caps.battery.charging ? ' ⚡' : ''}` : '—'} / ${n.caps.visible === undefined ? '—' : n.caps.visible ? 'yes' : 'hidden'}</td>
              <td>${load(n)}</td>
              <td>${n.rttMs.toFixed(1)} ms</td>
              <td>${n.apps.join(', ')}</td>
              <td>${Object.entries(n.stats)
                .slice(0, 6)
                .map(
                  ([k, v]) =>
                    html`<div><code>${k}</code> ${v.p50.toFixed(2)} ms (${v.count})${measuredText(n, k)}</div>`,
                )}</td>
              <td class="context">${
                n.context
                  ? html`${n.context.keys} keys · ${kib(n.context.bytes)}${
                      n.context.lastFull ? html`<div class="bad">${evictedText(n)}</div>` : ''
                    }`
                  : '—'
              }</td>
              <td>${
                n.role === 'dew'
                  ? '—'
                  : n.trusted && !listed.has(n.publicKey)
                    ? "the relay's own"
                    : listed.has(n.publicKey)
                      ? html`<button type="button" class="revoke" onClick=${() => act(n, false)}>Revoke</button>`
                      : html`<button type="button" class="approve" onClick=${() => act(n, true)}>Approve</button>`
              }</td>
            </tr>`,
          )}
        </tbody>
      </table>
    </div>
  </section>`;
}
