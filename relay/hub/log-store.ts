/**
 * Where the hub keeps its logs (decisions, calls, events; logs.ts writes them, the admin API
 * reads them): this relay's memory (`memoryLogs`, a lone relay), or a Redis Stream per log that
 * every relay of a cluster writes and reads (relay/cluster/logs.ts), so each shows the cluster's.
 * Keeping an entry never waits and never fails: a store that sends entries elsewhere does so later,
 * and drops what it cannot send, counted.
 * @example const logs = memoryLogs();
 *          logs.add('events', { at: Date.now(), kind: 'joined', detail: 'fog' });
 *          await logs.list('events');
 */
import type { CallRecord, DecisionRecord, HubEvent } from '../../core/api';

/** The entries of each log, by its name (the admin API's path: /api/decisions, …). */
export interface LogEntries {
  decisions: DecisionRecord;
  calls: CallRecord;
  events: HubEvent;
}
export type LogKind = keyof LogEntries;
export const logKinds: readonly LogKind[] = ['decisions', 'calls', 'events'];

/** Entries a log shows (and keeps, in memory) at most: the newest. */
export const SHOWN = 1000;

export interface LogStore {
  /** Keeps `entry`; returns at once, throws nothing (entries that cannot be kept are counted). */
  add<K extends LogKind>(kind: K, entry: LogEntries[K]): void;
  /** This relay's own newest entries (at most SHOWN), oldest first. */
  recent<K extends LogKind>(kind: K): LogEntries[K][];
  /**
   * What the admin API shows (at most SHOWN, oldest first): this relay's entries, or in a
   * cluster the whole cluster's. A store in Redis fails with E_UNAVAILABLE while it is away.
   */
  list<K extends LogKind>(kind: K): Promise<LogEntries[K][]>;
  /** Calls `fn` with the entries of a log that were dropped (not kept) as they are. */
  onDropped(fn: (kind: LogKind, n: number) => void): void;
  /** Sends what is still waiting (best effort) and stops. */
  close(): Promise<void>;
}

/** Bounded: the newest `max` entries, dropped a tenth at a time (not one shift per entry). */
function remember<T>(list: T[], item: T, max = SHOWN): void {
  list.push(item);
  if (list.length > max + max / 10) list.splice(0, list.length - max);
}

/** The logs in this relay's memory: the newest SHOWN entries of each; nothing is ever dropped. */
export function memoryLogs(): LogStore {
  const kept: { [K in LogKind]: LogEntries[K][] } = { decisions: [], calls: [], events: [] };
  const recent = <K extends LogKind>(kind: K) => kept[kind].slice(-SHOWN) as LogEntries[K][];
  return {
    add: (kind, entry) => remember(kept[kind] as (typeof entry)[], entry),
    recent,
    list: async (kind) => recent(kind),
    onDropped() {},
    async close() {},
  };
}
