/**
 * The hub's bounded logs, read by the admin console: events (joins, refusals, evictions,
 * quarantines), placement decisions, and calls through the relay with their outcome and latency.
 * @example const logs = createLogs(log); logs.event('joined', 'fog (trusted)', id);
 */
import type { CallRecord, DecisionRecord, HubEvent } from '../../core/api';
import type { Outcome } from '../verify';

/** What the console shows of each log: the newest entries. */
const shown = 1000;

/** Bounded logs: the newest `max` entries, dropped a tenth at a time (not one shift per entry). */
function remember<T>(list: T[], item: T, max = shown): void {
  list.push(item);
  if (list.length > max + max / 10) list.splice(0, list.length - max);
}

/** Where the hub's lines go: the relay's logger (pino's shape: fields first, then the message). */
export interface HubLog {
  info(fieldsOrMessage: Record<string, unknown> | string, message?: string): void;
  warn(message: string): void;
}

export function createLogs(log: HubLog) {
  const decisions: DecisionRecord[] = [];
  const calls: CallRecord[] = [];
  const events: HubEvent[] = [];
  return {
    event(kind: HubEvent['kind'], detail: string, node?: string): void {
      remember(events, { at: Date.now(), kind, detail, ...(node ? { node } : {}) });
      (kind === 'refused' || kind === 'evicted' || kind === 'quarantined' ? log.warn : log.info)(
        `${kind}${node ? ` ${node.slice(0, 8)}` : ''}: ${detail}`,
      );
    },
    decision: (record: DecisionRecord) => remember(decisions, record),
    /**
     * `reply`, recording the call's outcome and latency in the bounded call log, and logging one
     * line with its trace id: this relay's hop of the request.
     */
    logged<
      A extends {
        value: unknown;
        node: string;
        rpc: string;
        trace?: { kind: string; rpc: string }[];
      },
    >(
      call: { app: string; service: string; caller: string; traceId?: string | undefined },
      reply: (answer: Outcome<A>) => void,
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
        };
        remember(calls, record);
        if (call.traceId) {
          const { at: _, ok, ...fields } = record;
          const outcome = answer.ok ? 'ok' : answer.error.code;
          log.info(
            { trace: call.traceId, ...fields, caller: call.caller || 'http', outcome },
            ok ? 'call answered' : 'call failed',
          );
        }
        reply(answer);
      };
    },
    decisions: () => decisions.slice(-shown),
    calls: () => calls.slice(-shown),
    events: () => events.slice(-shown),
  };
}

export type Logs = ReturnType<typeof createLogs>;
