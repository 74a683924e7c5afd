/**
 * Pipelines through the relay (PROTOCOL.md §5.8): a call whose service names a pipeline of the app
 * (from an HTTP client, or a node that sends it with `to: ''`) runs core's executor here, over the
 * nodes connected now; each stage is a forwarded call to the node placement chose, which the
 * forwarding moves to another node if that one is lost, as any call.
 * @example const m = await pipes.find('ocr', 'read', qos); if (m) await pipes.call(m, 'read', …);
 */
import type { NodeRecord } from '../../core/api';
import { BrumeError, InternalError, LimitError, QosError } from '../../core/errors';
import type { Manifest } from '../../core/manifest';
import { PipelineStats } from '../../core/pipeline/local';
import type { PlaceNode } from '../../core/pipeline/place';
import { type PipelineHost, runPipeline } from '../../core/pipeline/run';
import { modelKey, runsVersion } from '../../core/placement/figures';
import type { Qos } from '../../core/scheduler';
import { newTraceId } from '../../core/trace';
import type { Call, CallAnswer, Reply } from './forwarding';

/** What a hop between two nodes costs at least, in ms (placement's link cost). */
const minHopMs = 0.1;

export interface PipelinesOptions {
  manifest(app: string, range?: string): Promise<Manifest | undefined>;
  nodes(): readonly NodeRecord[];
  forward(call: Call, reply: Reply): void;
  /** Pipeline calls one caller (a node, or all HTTP clients together) may have running at once. */
  maxPerCaller: number;
  log?: (line: string) => void;
}

export function createPipelines(o: PipelinesOptions) {
  const stats = new PipelineStats();
  /** Pipeline calls running, by caller ('' for HTTP). */
  const running = new Map<string, number>();

  /** Which nodes may run stages: online, holding the app's version, allowed by privacy. */
  function eligible(m: Manifest, name: string, qos: Qos, caller: string): PlaceNode[] {
    const p = qos.privacy;
    return o
      .nodes()
      .filter(
        (n) =>
          n.online &&
          !n.quarantined &&
          (!n.paused || n.id === caller) &&
          n.apps.includes(m.name) &&
          runsVersion(n, m.name, m.version) &&
          (p === undefined || p === 'device' || n.id === p || (n.trusted && n.publicKey === p)),
      )
      .map((n) => ({
        id: n.id,
        tier: n.role,
        free: Math.max(0, n.maxConcurrency - n.queue),
        runs: (stage: string) => runsStage(m, name, n, stage),
      }));
  }

  /**
   * A stage of pipeline `name` whose service has `tiers` runs only on nodes of those roles (§2.1;
   * privacy "device" puts every stage on the source); a model stage that names its variant only
   * where that variant may.
   */
  function runsStage(m: Manifest, name: string, n: NodeRecord, stage: string): boolean {
    const s = m.pipelines?.[name]?.stages[stage];
    if (!s) return true;
    const svc = Object.hasOwn(m.services, s.service) ? m.services[s.service] : undefined;
    if (svc?.tiers && !svc.tiers.includes(n.role)) return false;
    if (s.rpc === undefined || svc?.kind !== 'model') return true;
    const key = modelKey(m.name, s.service);
    return !Object.hasOwn(n.models, key) || n.models[key]!.includes(s.rpc);
  }

  /** A call to a pipeline runs the executor here; any other is forwarded to a node. */
  function route(call: Call, reply: Reply): void {
    const { app, service, input, qos, caller } = call;
    const failed = (e: unknown) =>
      reply({ ok: false, error: e instanceof BrumeError ? e : new InternalError(String(e)) });
    api.find(app, service, qos).then((m) => {
      if (!m) return o.forward(call, reply);
      const traceId = call.traceId ?? newTraceId();
      return api
        .call(m, service, input, qos, caller, traceId)
        .then((a) => reply({ ok: true, ...a }), failed);
    }, failed);
  }

  const api = {
    route,
    /** The manifest whose pipeline `service` is, or undefined when it names no pipeline. */
    async find(app: string, service: string, qos: Qos): Promise<Manifest | undefined> {
      const m = await o.manifest(app, qos.version);
      return m?.pipelines && Object.hasOwn(m.pipelines, service) ? m : undefined;
    },

    /** Runs pipeline `name` of `m` for `caller` ('' for HTTP), answering as a forwarded call. */
    async call(
      m: Manifest,
      name: string,
      input: unknown,
      qos: Qos,
      caller: string,
      traceId: string,
    ): Promise<CallAnswer & { quality?: number }> {
      if (qos.privacy === 'device' && caller === '') {
        throw new QosError('privacy', undefined, 'privacy "device" needs a calling node, not HTTP');
      }
      const now = running.get(caller) ?? 0;
      if (now >= o.maxPerCaller) {
        const who = caller ? `node ${caller.slice(0, 8)}` : 'HTTP clients';
        throw new LimitError(`${who} already run ${now} pipeline calls (limit ${o.maxPerCaller})`);
      }
      running.set(caller, now + 1);
      try {
        return await runOne(m, name, input, qos, caller, traceId);
      } finally {
        const left = (running.get(caller) ?? 1) - 1;
        if (left > 0) running.set(caller, left);
        else running.delete(caller);
      }
    },
  };

  async function runOne(
    m: Manifest,
    name: string,
    input: unknown,
    qos: Qos,
    caller: string,
    traceId: string,
  ): Promise<CallAnswer & { quality?: number }> {
    const rtt = (id: string) => o.nodes().find((n) => n.id === id)?.rttMs ?? 0;
    const host: PipelineHost = {
      source: caller,
      nodes: () => eligible(m, name, qos, caller),
      // A hop between two nodes is never free, even before their round trips are measured.
      cost: (a, b) => (a === b ? 0 : Math.max(minHopMs, rtt(a) + rtt(b))),
      run: (node, c) =>
        new Promise((resolve, reject) => {
          const call: Call = {
            app: m.name,
            service: c.service,
            rpc: c.rpc,
            input: c.input,
            qos: { ...c.qos, version: m.version },
            // Not counted against the caller's own calls: a fan-out is many at once.
            caller: '',
            target: node,
            traceId: c.traceId,
          };
          o.forward(call, (r) => {
            if (!r.ok) return reject(r.error);
            resolve({
              value: r.value,
              rpc: r.rpc,
              node: r.node,
              ...(r.version !== undefined && { version: r.version }),
            });
          });
        }),
    };
    const a = await runPipeline(m, name, input, qos, host, {
      traceId,
      stats: stats.of(m.name, name, m.version),
      ...(o.log && { log: o.log }),
    });
    return {
      value: a.value,
      rpc: '',
      ms: a.ms,
      node: a.node,
      version: a.version,
      trace: a.trace,
      ...(a.quality !== undefined && { quality: a.quality }),
    };
  }
  return api;
}
