/**
 * The hub's bounded logs, read by the admin console: events (joins, refusals, evictions,
 * quarantines), placement decisions, and calls through the relay with their outcome and latency.
 * Kept in a LogStore (log-store.ts): this relay's memory, or Redis for a cluster; keeping an entry
 * never waits, so a call is answered whatever the store's state.
 * @example const logs = createLogs(log, metrics); logs.event('joined', 'fog (trusted)', id);
 */
import type { CallRecord, DecisionRecord, HubEvent } from '../../core/api';
import type { RelayLogger } from '../log';
import type { RelayMetrics } from '../metrics';
import type { Outcome } from '../verify';
import { type LogKind, type LogStore, memoryLogs } from './log-store';

/** What the hub logs through: pino's shape (relay/log.ts). */
export type HubLog = Pick<RelayLogger, 'info' | 'warn' | 'debug'>;

export function createLogs(log: HubLog, metrics: RelayMetrics, store: LogStore = memoryLogs()) {
  store.onDropped((kind, n) => metrics.logDropped(kind, n));
  return {
    event(kind: HubEvent['kind'], detail: string, node?: string): void {
      store.add('events', { at: Date.now(), kind, detail, ...(node ? { node } : {}) });
      metrics.event(kind);
      const warn = kind === 'refused' || kind === 'evicted' || kind === 'quarantined';
      const fields = { event: kind, ...(node && { node }) };
      const line = `${kind}${node ? ` ${node.slice(0, 8)}` : ''}: ${detail}`;
      if (warn) log.warn(fields, line);
      else log.info(fields, line);
    },
    decision: (record: DecisionRecord) => store.add('decisions', record),
    /**
     * `reply`, recording the call's outcome and latency in the bounded call log and the metrics,
     * and logging one line with its trace id (this relay's hop of the request) and `ref`, what
     * names the call here (`reqId` over HTTP, a node's `call`).
     */
    logged<
      A extends {
        value: unknown;
        node: string;
        rpc: string;
        trace?: { kind: string; rpc: string; stage?: string; node?: string }[];
        quality?: number;
      },
    >(
      call: { app: string; service: string; caller: string; traceId?: string | undefined },
      reply: (answer: Outcome<A>) => void,
      ref: Record<string, unknown> = {},
    ): (answer: Outcome<A>) => void {
      const t0 = performance.now();
      const { app, service } = call;
      return (answer) => {
        const model = answer.ok ? answer.trace?.find((t) => t.kind === 'model') : undefined;
        const record: CallRecord = {
          at: Date.now(),
          app,
          service,
          variant: model?.rpc ?? (answer.ok ? answer.rpc : ''),
          node: answer.ok ? answer.node : '',
          ms: performance.now() - t0,
          ok: answer.ok,
          ...(answer.ok && answer.quality !== undefined && { quality: answer.quality }),
          ...(answer.ok && stagesOf(answer.trace)),
        };
        store.add('calls', record);
        const outcome = answer.ok ? 'ok' : answer.error.code;
        metrics.call(app, service, record.variant, outcome, record.ms);
        // Never the input or the value: they are the caller's, not the log's.
        const { at: _, ok, stages: __, ...fields } = record;
        log.info(
          {
            ...ref,
            ...(call.traceId && { trace: call.traceId }),
            ...fields,
            caller: call.caller || 'http',
            outcome,
          },
          ok ? 'call answered' : 'call failed',
        );
        reply(answer);
      };
    },
    /** This relay's own newest entries of each log. */
    decisions: (): DecisionRecord[] => store.recent('decisions'),
    calls: (): CallRecord[] => store.recent('calls'),
    events: (): HubEvent[] => store.recent('events'),
    /** What the admin API shows of a log: this relay's, or a cluster's (E_UNAVAILABLE). */
    list: <K extends LogKind>(kind: K) => store.list(kind),
  };
}

export type Logs = ReturnType<typeof createLogs>;

/** A pipeline's stages from its trace, each with the nodes that ran it (none: not a pipeline). */
function stagesOf(trace: { stage?: string; node?: string }[] | undefined): {
  stages?: { stage: string; nodes: string[] }[];
} {
  const by = new Map<string, Set<string>>();
  for (const t of trace ?? []) {
    if (t.stage === undefined) continue;
    const nodes = by.get(t.stage) ?? new Set<string>();
    if (t.node) nodes.add(t.node);
    by.set(t.stage, nodes);
  }
  if (by.size === 0) return {};
  return { stages: [...by].map(([stage, nodes]) => ({ stage, nodes: [...nodes] })) };
}
