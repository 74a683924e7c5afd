/**
 * The admin console (/admin): the fabric live — topology, nodes and trust, apps and deploys, the
 * scheduling log, latency plots, warnings. Everything comes from the relay's admin API with the
 * token the relay printed at start; without it nothing is shown.
 */
import { html } from 'htm/preact';
import { render } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import type {
  AppSummary,
  CallRecord,
  ContextFanout,
  ContextKeyInfo,
  DecisionRecord,
  HubEvent,
  NodeRecord,
  QuarantineEntry,
} from '../core/api';
import { counts, statsKeyPrefix } from '../core/placement';
import { Quarantine } from './admin-quarantine';

const tokenKey = 'brume-admin-token';
// The token lives for this tab only (sessionStorage): it is not left on disk for whoever opens
// the browser next. Consoles of earlier versions kept it in localStorage: take it out of there.
localStorage.removeItem(tokenKey);

class Unauthorized extends Error {}

async function api<T>(token: string, path: string, init: RequestInit = {}): Promise<T> {
  const res = await fetch(path, {
    ...init,
    headers: { ...(init.headers ?? {}), authorization: `Bearer ${token}` },
  });
  if (res.status === 401) throw new Unauthorized('the relay refused this token');
  const body = res.status === 204 ? undefined : await res.json();
  if (!res.ok) throw new Error(body?.error?.message ?? `${path} answered ${res.status}`);
  return body as T;
}

interface State {
  nodes: NodeRecord[];
  decisions: DecisionRecord[];
  events: HubEvent[];
  calls: CallRecord[];
  apps: AppSummary[];
  trust: { publicKey: string; label: string }[];
  context: ContextKeyInfo[];
  fanout: ContextFanout;
  quarantine: QuarantineEntry[];
}

function App() {
  const [token, setToken] = useState(sessionStorage.getItem(tokenKey) ?? '');
  const [state, setState] = useState<State | undefined>();
  const [error, setError] = useState('');

  useEffect(() => {
    if (!token) return;
    let stop = false;
    const load = async () => {
      try {
        const [nodes, decisions, events, calls, trust] = await Promise.all([
          api<NodeRecord[]>(token, '/api/nodes'),
          api<DecisionRecord[]>(token, '/api/decisions'),
          api<HubEvent[]>(token, '/api/events'),
          api<CallRecord[]>(token, '/api/calls'),
          api<State['trust']>(token, '/api/trust'),
        ]);
        const apps = await api<AppSummary[]>(token, '/api/apps');
        const [context, fanout, quarantine] = await Promise.all([
          api<ContextKeyInfo[]>(token, '/api/context'),
          api<ContextFanout>(token, '/api/context/fanout'),
          api<QuarantineEntry[]>(token, '/api/quarantine'),
        ]);
        if (!stop)
          setState({ nodes, decisions, events, calls, apps, trust, context, fanout, quarantine });
        setError('');
      } catch (e) {
        if (e instanceof Unauthorized) {
          sessionStorage.removeItem(tokenKey);
          setToken('');
          setState(undefined);
        }
        setError((e as Error).message);
      }
    };
    void load();
    const timer = setInterval(load, 1000);
    return () => {
      stop = true;
      clearInterval(timer);
    };
  }, [token]);

  if (!token) {
    return html`<${Login}
      error=${error}
      onToken=${(t: string) => {
        sessionStorage.setItem(tokenKey, t);
        setError('');
        setToken(t);
      }}
    />`;
  }
  if (!state) return html`<p class="console">${error || 'loading…'}</p>`;
  return html`<header>
      <h1>Brume admin</h1>
      <p class="lede">
        ${state.nodes.length} nodes · ${state.apps.length} apps · updated every second
        ${error && html`<span class="error"> · ${error}</span>`}
        <button type="button" style="margin-left:1rem" onClick=${() => {
          sessionStorage.removeItem(tokenKey);
          setToken('');
        }}>Sign out</button>
      </p>
    </header>
    <div class="console">
      <${Warnings} events=${state.events} nodes=${state.nodes} />
      <div class="row">
        <${Topology} nodes=${state.nodes} />
        <${Apps} token=${token} apps=${state.apps} nodes=${state.nodes} />
      </div>
      <${Nodes} token=${token} nodes=${state.nodes} trust=${state.trust} />
      <${Quarantine}
        entries=${state.quarantine}
        release=${(node: string) => api(token, `/api/quarantine/${node}`, { method: 'DELETE' })}
      />
      <div class="row">
        <${LatencyOverTime} calls=${state.calls} />
        <${LatencyDistribution} calls=${state.calls} />
      </div>
      <${Decisions} decisions=${state.decisions} />
      <${Context} keys=${state.context} fanout=${state.fanout} />
    </div>`;
}

function Context({ keys, fanout }: { keys: ContextKeyInfo[]; fanout: ContextFanout }) {
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

function Login({ error, onToken }: { error: string; onToken: (t: string) => void }) {
  const input = useRef<HTMLInputElement>(null);
  return html`<form
    class="card login"
    onSubmit=${(e: Event) => {
      e.preventDefault();
      if (input.current?.value) onToken(input.current.value.trim());
    }}
  >
    <h2>Brume admin</h2>
    <p>Paste the admin token the relay printed when it made it (<code>brume token</code> prints it again; it is in <code>.brume/admin-token</code>).</p>
    <input ref=${input} id="token" type="password" autocomplete="off" aria-label="admin token" />
    <button type="submit">Open the console</button>
    ${error && html`<p class="error" id="login-error">${error}</p>`}
  </form>`;
}

function Warnings({ events, nodes }: { events: HubEvent[]; nodes: NodeRecord[] }) {
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
          html`<li>${new Date(e.at).toLocaleTimeString()} · ${e.kind}${e.node ? ` ${e.node.slice(0, 8)}` : ''}: ${e.detail}</li>`,
      )}
    </ul>
  </section>`;
}

const short = (id: string) => id.slice(0, 8);
const evictedText = (n: NodeRecord) =>
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

function Topology({ nodes }: { nodes: NodeRecord[] }) {
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
  return html`<section class="card tree" id="topology">
    <h2>Topology</h2>
    <ul>
      <li>
        <strong>relay</strong>
        <ul>
          ${clouds.map(leaf)}
          ${fogs.map(
            (f) => html`<li key=${f.id} data-node=${f.id}>
              <code>${short(f.id)}</code>${badge(f)} load ${load(f)}
              <ul>${(byParent.get(f.id) ?? []).map(leaf)}</ul>
            </li>`,
          )}
          ${orphans.map(leaf)}
        </ul>
      </li>
    </ul>
  </section>`;
}

function Nodes({
  token,
  nodes,
  trust,
}: {
  token: string;
  nodes: NodeRecord[];
  trust: State['trust'];
}) {
  const [msg, setMsg] = useState('');
  const listed = new Set(trust.map((t) => t.publicKey));
  const act = async (n: NodeRecord, approve: boolean) => {
    try {
      if (approve) {
        await api(token, '/api/trust', {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ publicKey: n.publicKey, label: `fog ${short(n.id)}` }),
        });
      } else {
        await api(token, `/api/trust/${encodeURIComponent(n.publicKey)}`, { method: 'DELETE' });
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
          <tr><th>node</th><th>role</th><th>backends</th><th>cores / memory</th><th>battery / visible</th><th>load</th><th>RTT</th><th>apps</th><th>latency p50 (count)</th><th>context</th><th>trust</th></tr>
        </thead>
        <tbody>
          ${nodes.map(
            (n) => html`<tr key=${n.id} data-node=${n.id}>
              <td><code title=${n.id}>${short(n.id)}</code></td>
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

function Apps({ token, apps, nodes }: { token: string; apps: AppSummary[]; nodes: NodeRecord[] }) {
  const [upload, setUpload] = useState<{ name: string; sent: number; total: number } | undefined>();
  const [result, setResult] = useState<{ ok: boolean; text: string } | undefined>();
  const [over, setOver] = useState(false);
  const measured = (app: string, service: string, variant: string) => {
    const xs = nodes.flatMap((n) =>
      Object.entries(n.stats)
        .filter(([k, v]) => k.startsWith(statsKeyPrefix(app, service, variant)) && counts(v))
        .map(([, v]) => v.p50),
    );
    return xs.length
      ? `${Math.min(...xs).toFixed(2)}–${Math.max(...xs).toFixed(2)} ms on ${xs.length}`
      : '—';
  };
  const deploy = (file: File) => {
    setResult(undefined);
    setUpload({ name: file.name, sent: 0, total: file.size });
    // XMLHttpRequest, for upload progress (fetch has none).
    const xhr = new XMLHttpRequest();
    xhr.open('POST', '/api/apps');
    xhr.setRequestHeader('content-type', 'application/vnd.brume.bundle');
    xhr.setRequestHeader('authorization', `Bearer ${token}`);
    xhr.upload.onprogress = (e) => setUpload({ name: file.name, sent: e.loaded, total: e.total });
    xhr.onload = () => {
      setUpload(undefined);
      const body = JSON.parse(xhr.responseText || '{}');
      setResult(
        xhr.status < 300
          ? { ok: true, text: `deployed ${body.name}@${body.version}` }
          : { ok: false, text: `refused: ${body.error?.message ?? xhr.statusText}` },
      );
    };
    xhr.onerror = () => {
      setUpload(undefined);
      setResult({ ok: false, text: 'the upload failed: is the relay reachable?' });
    };
    xhr.send(file);
  };
  return html`<section class="card" id="apps">
    <h2>Apps</h2>
    <table>
      <thead><tr><th>app</th><th>service</th><th>variant</th><th>accuracy</th><th>manifest latency</th><th>measured p50</th></tr></thead>
      <tbody>
        ${apps.flatMap((a) =>
          Object.entries(a.services).flatMap(([name, s]) =>
            s.kind === 'logic'
              ? [
                  html`<tr key=${`${a.name}/${name}`}><td>${a.name}@${a.version}</td><td>${name}</td><td colspan="4">Logic: ${s.rpcs.join(', ')}</td></tr>`,
                ]
              : Object.entries(s.variants).map(
                  ([v, f]) => html`<tr key=${`${a.name}/${name}/${v}`}>
                    <td>${a.name}@${a.version}</td><td>${name}</td>
                    <td>${v}${f.weights === 'random' ? html` <span class="badge bad">random weights</span>` : ''}</td>
                    <td>${f.accuracy}</td><td>${f.latencyMs} ms</td><td>${measured(a.name, name, v)}</td>
                  </tr>`,
                ),
          ),
        )}
      </tbody>
    </table>
    <label
      class=${`drop${over ? ' over' : ''}`}
      onDragOver=${(e: DragEvent) => {
        e.preventDefault();
        setOver(true);
      }}
      onDragLeave=${() => setOver(false)}
      onDrop=${(e: DragEvent) => {
        e.preventDefault();
        setOver(false);
        const f = e.dataTransfer?.files[0];
        if (f) deploy(f);
      }}
    >
      Deploy a bundle: drop a <code>.brume</code> file here or
      <input id="bundle" type="file" accept=".brume" onChange=${(e: Event) => {
        const f = (e.target as HTMLInputElement).files?.[0];
        if (f) deploy(f);
      }} />
    </label>
    ${upload && html`<p>uploading ${upload.name}: <progress max=${upload.total} value=${upload.sent}></progress></p>`}
    ${result && html`<p id="deploy-result" class=${result.ok ? 'ok' : 'error'}>${result.text}</p>`}
  </section>`;
}

function Decisions({ decisions }: { decisions: DecisionRecord[] }) {
  return html`<section class="card" id="decisions">
    <h2>Scheduling decisions (newest first)</h2>
    <div class="scroll">
      <table>
        <thead><tr><th>time</th><th>request</th><th>QoS</th><th>caller</th><th>chosen</th><th>reason</th></tr></thead>
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
                <td>${d.reason}</td>
              </tr>`,
            )}
        </tbody>
      </table>
    </div>
  </section>`;
}

const palette = ['#3a6fd8', '#e08a00', '#1e7b34', '#b3261e', '#7b3ad8', '#008b8b'];

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
function Chart({
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

function LatencyOverTime({ calls }: { calls: CallRecord[] }) {
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

function LatencyDistribution({ calls }: { calls: CallRecord[] }) {
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

render(html`<${App} />`, document.getElementById('app')!);
