/**
 * The relay's Prometheus metrics (prom-client), one registry per relay: what its parts count as
 * it runs (calls, decisions, forwards, context writes, bytes, hub events) and what is read from
 * them at each scrape (nodes, quarantine, leases, the context log). Labels are bounded: an app,
 * service or variant is its name only once a deployed manifest named it, "other" before; an
 * error outcome is a code of core/errors.ts's table, "other" for any a node made up.
 * @example const metrics = createMetrics();
 *          metrics.watch({ nodes: hub.nodes, … });
 *          reply.type(metrics.registry.contentType).send(await metrics.registry.metrics());
 */
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import type { HubEvent, NodeRecord } from '../core/api';
import { isErrorCode } from '../core/errors';
import type { Manifest } from '../core/manifest';

/** What the relay holds now, read at each scrape. */
export interface MetricsSources {
  nodes(): readonly NodeRecord[];
  quarantined(): number;
  leases(): { held: number; granted: number; revoked: number; refused: number };
  /** Bytes of the context log on disk. */
  contextLogBytes(): number;
  /** Jobs kept, by state (relay/jobs/); absent until the jobs are open. */
  jobs?(): Record<string, number>;
}

/** Label values known from manifests, at most: a relay with more names shows "other". */
const maxNames = 10_000;

/** Seconds: from a millisecond local call to a model on a slow tab. */
const buckets = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

export function createMetrics() {
  const registry = new Registry();
  const known = new Set<string>();
  let sources: MetricsSources | undefined;
  const m = metricsIn(registry, () => sources);

  /** `name` under `scope` when a manifest named it, else "other". */
  const label = (scope: string, name: string) =>
    known.has(`${scope}\u0000${name}`) ? name : 'other';
  const named = new WeakSet<Manifest>();
  const remember = (scope: string, name: string) => {
    if (known.size < maxNames) known.add(`${scope}\u0000${name}`);
  };

  return {
    registry,
    /** Makes a manifest's app, services and variants (and Logic rpcs) label values; passes it on. */
    deployed(manifest: Manifest | undefined): Manifest | undefined {
      // Read for every call (placement, forwarding): each manifest object is walked once.
      if (!manifest || named.has(manifest)) return manifest;
      named.add(manifest);
      remember('', manifest.name);
      for (const [service, s] of Object.entries(manifest.services)) {
        remember(manifest.name, service);
        const variants = s.kind === 'model' ? Object.keys(s.variants) : s.rpcs;
        for (const v of variants) remember(`${manifest.name}/${service}`, v);
      }
      return manifest;
    },
    /** A call answered through the relay: its outcome ("ok" or an error code) and latency. */
    call(app: string, service: string, variant: string, outcome: string, ms: number): void {
      const a = label('', app);
      const s = a === 'other' ? 'other' : label(app, service);
      const labels = {
        app: a,
        service: s,
        variant: s === 'other' ? 'other' : label(`${app}/${service}`, variant),
        outcome: outcome === 'ok' || isErrorCode(outcome) ? outcome : 'other',
      };
      m.calls.inc(labels);
      m.callSeconds.observe(labels, ms / 1000);
    },
    /** A placement decision: counted by whether it placed, and timed. */
    decision<T>(decided: Promise<T>): Promise<T> {
      const end = m.decisionSeconds.startTimer();
      return decided.then(
        (r) => {
          end({ outcome: 'placed' });
          return r;
        },
        (e: unknown) => {
          end({ outcome: 'refused' });
          throw e;
        },
      );
    },
    /** A call frame sent to a node for someone else: an HTTP client or another node. */
    forwarded: (caller: string) => m.forwarded.inc({ from: caller ? 'node' : 'http' }),
    /** A call placed again: its node refused it as busy or left. */
    retried: () => m.retried.inc(),
    /** A message between relays of a cluster (relay/hub/cluster.ts): sent, received or dropped. */
    relayMessage: (dir: 'in' | 'out' | 'dropped', kind: string) =>
      m.relayMessages.inc({ dir, kind: relayKinds.has(kind) ? kind : 'other' }),
    /** Entries of a log (decisions, calls, events) dropped: Redis was away, its buffer full. */
    logDropped: (log: 'decisions' | 'calls' | 'events', n: number) => m.logDropped.inc({ log }, n),
    /** A context write: stored, a duplicate (nothing changed), or refused; by where it came from. */
    contextOp(from: string, accepted: Promise<number>): Promise<number> {
      const source = from ? 'node' : 'http';
      accepted.then(
        (seq) => m.contextOps.inc({ source, outcome: seq ? 'stored' : 'duplicate' }),
        () => m.contextOps.inc({ source, outcome: 'refused' }),
      );
      return accepted;
    },
    /** How long a change took to be sent to every node keeping its app. */
    fanout: (ms: number) => m.fanoutSeconds.observe(ms / 1000),
    /** Bytes of node frames, as read from or written to sockets. */
    bytes: (direction: 'in' | 'out', n: number) => m.bytes.inc({ direction }, n),
    /** A hub event: joins, refusals, evictions, quarantines… */
    event: (kind: HubEvent['kind']) => m.events.inc({ kind }),
    /** Where gauges read the relay's state at each scrape. */
    watch(s: MetricsSources): void {
      sources = { ...sources, ...s };
    },
    /** Where the jobs gauge reads the jobs by state (opened after the hub). */
    watchJobs(jobs: () => Record<string, number>): void {
      if (sources) sources = { ...sources, jobs };
    },
    /** The process's own figures (CPU, memory, event loop, handles), prefixed `brume_`. */
    collectDefault: () => collectDefaultMetrics({ register: registry, prefix: 'brume_' }),
  };
}

export type RelayMetrics = ReturnType<typeof createMetrics>;

/** The kinds of messages between relays a label may name (anything else counts as `other`). */
const relayKinds = new Set(['nodes', 'left', 'bye', 'call', 'result', 'error']);

/** The metric objects, registered in `registry`; gauges read `sources()` when scraped. */
function metricsIn(registry: Registry, sources: () => MetricsSources | undefined) {
  const registers = [registry];
  return {
    calls: new Counter({
      name: 'brume_calls_total',
      help: 'Calls answered through the relay (HTTP and forwarded), by outcome: ok or error code',
      labelNames: ['app', 'service', 'variant', 'outcome'],
      registers,
    }),
    callSeconds: new Histogram({
      name: 'brume_call_duration_seconds',
      help: 'Time from a call reaching the relay to its answer',
      labelNames: ['app', 'service', 'variant', 'outcome'],
      buckets,
      registers,
    }),
    decisionSeconds: new Histogram({
      name: 'brume_decision_duration_seconds',
      help: 'Placement decisions (count: _count) and their time, by outcome: placed or refused',
      labelNames: ['outcome'],
      buckets,
      registers,
    }),
    forwarded: new Counter({
      name: 'brume_forwarded_calls_total',
      help: 'Call frames the relay sent to a node for an HTTP client or another node',
      labelNames: ['from'],
      registers,
    }),
    retried: new Counter({
      name: 'brume_retried_calls_total',
      help: 'Calls placed again because their node refused them as busy or left',
      registers,
    }),
    relayMessages: new Counter({
      name: 'brume_relay_messages_total',
      help: 'Messages between the relays of a cluster, by direction (in, out, dropped: invalid) and kind',
      labelNames: ['dir', 'kind'],
      registers,
    }),
    logDropped: new Counter({
      name: 'brume_log_entries_dropped_total',
      help: 'Log entries (decisions, calls, events) not kept: a cluster relay could not send them to Redis',
      labelNames: ['log'],
      registers,
    }),
    contextOps: new Counter({
      name: 'brume_context_ops_total',
      help: 'Context writes, by source (node, http) and outcome (stored, duplicate, refused)',
      labelNames: ['source', 'outcome'],
      registers,
    }),
    fanoutSeconds: new Histogram({
      name: 'brume_context_fanout_duration_seconds',
      help: 'Time to send one context change to every node keeping its app',
      buckets,
      registers,
    }),
    bytes: new Counter({
      name: 'brume_node_bytes_total',
      help: 'Bytes of node socket frames, by direction (in: from nodes, out: to nodes)',
      labelNames: ['direction'],
      registers,
    }),
    events: new Counter({
      name: 'brume_hub_events_total',
      help: 'Hub events by kind: joined, left, evicted, refused, closed, quarantined, released, disagreed',
      labelNames: ['kind'],
      registers,
    }),
    ...gaugesIn(registers, sources),
  };
}

/** What is read from the relay at each scrape. */
function gaugesIn(registers: Registry[], sources: () => MetricsSources | undefined) {
  const read = <T>(f: (s: MetricsSources) => T, set: (v: T) => void) => {
    const s = sources();
    if (s) set(f(s));
  };
  const leaseCount = (name: 'granted' | 'revoked' | 'refused', help: string) =>
    new Counter({
      name: `brume_leases_${name}_total`,
      help,
      registers,
      // The hub counts leases itself; the counter shows its count.
      collect() {
        read(
          (s) => s.leases()[name],
          (v) => {
            this.reset();
            this.inc(v);
          },
        );
      },
    });
  return {
    nodes: new Gauge({
      name: 'brume_nodes',
      help: 'Nodes joined, by role (cloud, fog, dew) and state (ready, busy, paused, quarantined)',
      labelNames: ['role', 'state'],
      registers,
      collect() {
        this.reset();
        read(
          (s) => s.nodes(),
          (nodes) => {
            for (const n of nodes) this.inc({ role: n.role, state: stateOf(n) });
          },
        );
      },
    }),
    quarantined: new Gauge({
      name: 'brume_quarantined_nodes',
      help: 'Nodes in quarantine (joined or not)',
      registers,
      collect() {
        read(
          (s) => s.quarantined(),
          (v) => this.set(v),
        );
      },
    }),
    leasesHeld: new Gauge({
      name: 'brume_leases_held',
      help: 'Decision leases held by nodes now',
      registers,
      collect() {
        read(
          (s) => s.leases().held,
          (v) => this.set(v),
        );
      },
    }),
    leasesGranted: leaseCount('granted', 'Decision leases granted'),
    leasesRevoked: leaseCount('revoked', 'Decision leases revoked before they expired'),
    leasesRefused: leaseCount('refused', 'Decision leases not granted: the lease table was full'),
    jobs: new Gauge({
      name: 'brume_jobs',
      help: 'Jobs kept by the relay, by state (queued, running, succeeded, failed, cancelled)',
      labelNames: ['state'],
      registers,
      collect() {
        this.reset();
        read(
          (s) => s.jobs?.() ?? {},
          (counts) => {
            for (const [state, n] of Object.entries(counts)) this.set({ state }, n);
          },
        );
      },
    }),
    contextLog: new Gauge({
      name: 'brume_context_log_bytes',
      help: 'Bytes of the context log on disk',
      registers,
      collect() {
        read(
          (s) => s.contextLogBytes(),
          (v) => this.set(v),
        );
      },
    }),
  };
}

function stateOf(n: NodeRecord): string {
  if (n.quarantined) return 'quarantined';
  if (n.paused) return 'paused';
  return n.queue >= n.maxConcurrency ? 'busy' : 'ready';
}
