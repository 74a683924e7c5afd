/**
 * The admin console (/admin): the fabric live — a cluster's relays, topology, nodes and trust, apps
 * and deploys, the scheduling log, latency plots, warnings, blobs, sessions and their migrations. Everything comes from the relay's admin API
 * with the token the relay printed at start; without it nothing is shown. The panels live in
 * web/admin/.
 */
import { html } from 'htm/preact';
import { render } from 'preact';
import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import type {
  AppSummary,
  CallRecord,
  ContextFanout,
  ContextKeyInfo,
  DecisionRecord,
  ExitRow,
  HubEvent,
  NodeRecord,
  QuarantineEntry,
  RelaysAnswer,
  SessionsAnswer,
} from '../core/api';
import { AuthError } from '../core/errors';
import type { JobState, JobView } from '../core/jobs-client';
import { type RelayClient, relayClient } from '../core/relay-client';
import { Apps } from './admin/apps';
import { Blobs } from './admin/blobs';
import { LatencyDistribution, LatencyOverTime } from './admin/charts';
import { Exits } from './admin/exits';
import { Nodes, Topology, Warnings } from './admin/fabric';
import { Jobs } from './admin/jobs';
import { Context, Decisions, Pipelines } from './admin/log';
import { Quarantine } from './admin/quarantine';
import { Relays } from './admin/relays';
import { Sessions } from './admin/sessions';
import { Workers } from './admin/workers';

const tokenKey = 'brume-admin-token';
// The token lives for this tab only (sessionStorage): it is not left on disk for whoever opens
// the browser next. Consoles of earlier versions kept it in localStorage: take it out of there.
localStorage.removeItem(tokenKey);

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
  jobs: { counts: Record<JobState, number>; active: JobView[] };
  exits: ExitRow[];
  sessions: SessionsAnswer;
  relays: RelaysAnswer;
}

/** Everything the console shows, from the admin API. */
async function loadState(relay: RelayClient): Promise<State> {
  const get = <T>(path: string) => relay.json<T>('GET', path);
  const [nodes, relays, decisions, events, calls, trust] = await Promise.all([
    get<NodeRecord[]>('/api/nodes'),
    get<RelaysAnswer>('/api/relays'),
    get<DecisionRecord[]>('/api/decisions'),
    get<HubEvent[]>('/api/events'),
    get<CallRecord[]>('/api/calls'),
    get<State['trust']>('/api/trust'),
  ]);
  const apps = await get<AppSummary[]>('/api/apps');
  const [context, fanout, quarantine, exits, sessions] = await Promise.all([
    get<ContextKeyInfo[]>('/api/context'),
    get<ContextFanout>('/api/context/fanout'),
    get<QuarantineEntry[]>('/api/quarantine'),
    get<ExitRow[]>('/api/exits'),
    get<SessionsAnswer>('/api/sessions'),
  ]);
  const page = (state: JobState) =>
    get<{ jobs: JobView[] }>(`/api/jobs?state=${state}&limit=20`).then((p) => p.jobs);
  const [counts, running, queued] = await Promise.all([
    get<Record<JobState, number>>('/api/jobs/counts'),
    page('running'),
    page('queued'),
  ]);
  const jobs = { counts, active: [...running, ...queued] };
  return {
    nodes,
    decisions,
    events,
    calls,
    apps,
    trust,
    context,
    fanout,
    quarantine,
    jobs,
    exits,
    sessions,
    relays,
  };
}

function App() {
  const [token, setToken] = useState(sessionStorage.getItem(tokenKey) ?? '');
  const [state, setState] = useState<State | undefined>();
  const [error, setError] = useState('');
  // This page's own relay, with the token as its credential.
  const relay = useMemo(
    () => relayClient({ base: '', credential: token, fetch: (u, init) => fetch(u, init) }),
    [token],
  );

  useEffect(() => {
    if (!token) return;
    let stop = false;
    const load = async () => {
      try {
        const next = await loadState(relay);
        if (!stop) setState(next);
        setError('');
      } catch (e) {
        if (e instanceof AuthError) {
          sessionStorage.removeItem(tokenKey);
          setToken('');
          setState(undefined);
          setError('the relay refused this token');
        } else setError((e as Error).message);
      }
    };
    void load();
    const timer = setInterval(load, 1000);
    return () => {
      stop = true;
      clearInterval(timer);
    };
  }, [token, relay]);

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
        ${state.nodes.length} nodes${state.relays.relays.length > 1 ? ` · ${state.relays.relays.length} relays` : ''} · ${state.apps.length} apps · updated every second
        ${error && html`<span class="error"> · ${error}</span>`}
        <button type="button" style="margin-left:1rem" onClick=${() => {
          sessionStorage.removeItem(tokenKey);
          setToken('');
        }}>Sign out</button>
      </p>
    </header>
    <div class="console">
      <${Warnings} events=${state.events} nodes=${state.nodes} />
      <${Relays} ...${state.relays} />
      <div class="row">
        <${Topology} nodes=${state.nodes} relays=${state.relays.relays} />
        <${Apps} relay=${relay} apps=${state.apps} nodes=${state.nodes} />
      </div>
      <${Nodes} relay=${relay} nodes=${state.nodes} trust=${state.trust} />
      <${Quarantine}
        entries=${state.quarantine}
        release=${(node: string) => relay.json('DELETE', `/api/quarantine/${node}`)}
      />
      <${Jobs} counts=${state.jobs.counts} active=${state.jobs.active} />
      <${Exits} rows=${state.exits} />
      <${Workers} nodes=${state.nodes} />
      <${Sessions} ...${state.sessions} />
      <div class="row">
        <${LatencyOverTime} calls=${state.calls} />
        <${LatencyDistribution} calls=${state.calls} />
      </div>
      <${Pipelines} calls=${state.calls} />
      <${Decisions} decisions=${state.decisions} />
      <${Context} keys=${state.context} fanout=${state.fanout} />
      <${Blobs} relay=${relay} />
    </div>`;
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
    <p>Paste the admin token the relay printed when it made it (<code>brume token --reveal</code> prints it again; it is in <code>.brume/admin-token</code>).</p>
    <input ref=${input} id="token" type="password" autocomplete="off" aria-label="admin token" />
    <button type="submit">Open the console</button>
    ${error && html`<p class="error" id="login-error">${error}</p>`}
  </form>`;
}

render(html`<${App} />`, document.getElementById('app')!);
