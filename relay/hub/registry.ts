/**
 * The nodes joined to this relay, with no socket in it: their records as placement sees them,
 * who to tell when a node leaves, dews' parent fogs (given at join, moved when their fog leaves
 * or loses its trust, given to parentless dews when a trusted fog comes), and trust re-read when
 * the list changes. What it tells nodes goes through `send(node, frame)`; each entry carries the
 * transport's own handle for it (`link`), which the registry never looks into.
 * @example const registry = createRegistry<Conn>({ send, trusted, event, revoke });
 *          const { entry, parent } = registry.add(record, conn);
 *          registry.remove(record.id, conn);   // it left: watchers told, its dews moved
 */
import type { NodeRecord } from '../../core/api';
import type { ContextSync } from '../../core/context/hub';
import { createPlacementIndex } from '../../core/placement';
import type { ToNode, ToRelay } from '../../core/protocol';
import type { Logs } from './logs';

export interface Entry<L> {
  record: NodeRecord;
  /** The transport's handle for this node (the hub's connection). */
  link: L;
  /** What this relay gave the node for the PeerJS server. */
  peerToken: string;
  /** Its context sync on this connection (core/context/hub.ts). */
  sync: ContextSync;
}

export interface RegistryOptions {
  send(node: string, frame: ToNode): void;
  /** Is this public key on the trust list? */
  trusted(publicKey: string): boolean;
  event: Logs['event'];
  /** A node that may stay no longer (a cloud node whose key was revoked): close and remove it. */
  revoke(node: string, reason: string): void;
}

/** Samples of a node's workers kept (the console's chart), at most. */
export const WORKERS_HISTORY = 240;

/**
 * What a heartbeat says of a node's workers, and a sample for its history when they changed
 * (heartbeats come at every call; the history keeps only changes, so it spans longer).
 */
export function recordWorkers(
  node: NodeRecord,
  workers: Record<string, number>,
  scaled: { grows: number; shrinks: number } | undefined,
): void {
  node.workers = workers;
  if (scaled) node.scaled = scaled;
  const total = Object.values(workers).reduce((a, b) => a + b, 0);
  node.workersHistory ??= [];
  const history = node.workersHistory;
  const last = history[history.length - 1];
  const grows = scaled?.grows ?? last?.grows ?? 0;
  const shrinks = scaled?.shrinks ?? last?.shrinks ?? 0;
  if (last && last.total === total && last.grows === grows && last.shrinks === shrinks) return;
  history.push({ at: Date.now(), total, grows, shrinks });
  if (history.length > WORKERS_HISTORY) history.shift();
}

/** Nodes told of one node's leaving, at most: a thousand leaving at once must stay cheap. */
const maxWatchers = 10_000;

/** The fields of a record placement reads that change after joining. */
const placed = [
  'online',
  'paused',
  'quarantined',
  'trusted',
  'rttMs',
  'queue',
  'maxConcurrency',
  'workersMax',
  'backends',
  'stats',
  'models',
  'measured',
] as const;

/**
 * Makes every assignment to a field placement reads call `changed`: they are assigned all over the
 * relay (pongs, heartbeats, quarantine, the meter), and a missed one would leave a decision stale.
 * An object field tells even when the same object is assigned again: the meter updates its
 * figures in place and then assigns them (relay/measure.ts).
 */
function observe(record: NodeRecord, changed: () => void): void {
  for (const field of placed) {
    let value = record[field];
    Object.defineProperty(record, field, {
      enumerable: true,
      configurable: true,
      get: () => value,
      set(v: typeof value) {
        if (v === value && typeof v !== 'object') return;
        value = v;
        changed();
      },
    });
  }
}

export function createRegistry<L>(o: RegistryOptions) {
  const nodes = new Map<string, Entry<L>>();
  /**
   * Nodes joined to other relays of the cluster (relay/hub/cluster.ts), placed on as these are:
   * no socket here, their records replaced whole at each report. Never one of `nodes`' ids.
   */
  const remote = new Map<string, NodeRecord>();
  /** This relay's own records, rebuilt only when one joins or leaves. */
  let localList: NodeRecord[] | undefined;
  /** Nodes to tell when a node leaves: those sent to it. Bounded per node. */
  const watchers = new Map<string, Set<string>>();
  /** The nodes as the scheduler sees them, rebuilt only when one joins or leaves. */
  let list: NodeRecord[] | undefined;
  /** The same nodes kept sorted for placement (core/placement/indexed.ts), told of every change. */
  const index = createPlacementIndex();

  function watch(target: string, by: string): void {
    const set = watchers.get(target) ?? new Set<string>();
    watchers.set(target, set);
    if (set.size < maxWatchers) set.add(by);
  }

  function local(): NodeRecord[] {
    localList ??= [...nodes.values()].map((n) => n.record);
    return localList;
  }

  /**
   * Tells the nodes that were sent to `id` (decisions, parenthood) that it left: only those, as a
   * thousand nodes leaving at once must not cost a million frames.
   */
  function tellGone(id: string): void {
    for (const other of watchers.get(id) ?? []) {
      if (nodes.has(other)) o.send(other, { t: 'gone', node: id });
    }
    watchers.delete(id);
  }

  /** A dew's parent: the least loaded trusted fog, then the nearest to the relay. */
  function parentFor(): string | undefined {
    let best: NodeRecord | undefined;
    const load = (n: NodeRecord) => n.queue / n.maxConcurrency;
    for (const { record: n } of nodes.values()) {
      if (n.role !== 'fog' || !n.trusted || n.paused) continue;
      if (!best || load(n) < load(best) || (load(n) === load(best) && n.rttMs < best.rttMs))
        best = n;
    }
    return best?.id;
  }

  /**
   * Gives each dew whose parent is `fog` (or that has none, when `fog` is undefined) the best
   * trusted fog there is now, or none, and tells it (PROTOCOL.md §5.1, `parent`).
   */
  function reparent(fog: string | undefined): void {
    for (const { record } of nodes.values()) {
      if (record.role !== 'dew' || record.parent !== fog) continue;
      const next = parentFor();
      if (next === fog) continue;
      if (next) {
        record.parent = next;
        watch(next, record.id);
      } else delete record.parent;
      o.send(record.id, { t: 'parent', ...(next ? { node: next } : {}) });
    }
  }
  /** A trusted fog arrived: parentless dews get one. */
  const adoptOrphans = () => reparent(undefined);

  return {
    get: (id: string) => nodes.get(id),
    entries: () => nodes.values(),
    /** Every node of the cluster: joined here, then those of other relays. */
    records(): NodeRecord[] {
      list ??= [...local(), ...remote.values()];
      return list;
    },
    /** The nodes whose sockets are on this relay. */
    local,
    /** Node `id`'s record, joined here or to another relay of the cluster. */
    record: (id: string): NodeRecord | undefined => nodes.get(id)?.record ?? remote.get(id),
    /** Whether node `id` is known as joined to another relay. */
    isRemote: (id: string) => remote.has(id),
    /**
     * Another relay's node, joined or reported again: placed on from now. Refused (false) while
     * the same node is joined here: this socket is the newer word on it.
     */
    setRemote(record: NodeRecord): boolean {
      if (nodes.has(record.id)) return false;
      remote.set(record.id, record);
      list = undefined;
      index.set(record);
      return true;
    },
    /** Another relay's node left: forgotten, and those sent to it are told. False if unknown. */
    removeRemote(id: string): boolean {
      if (!remote.delete(id)) return false;
      list = undefined;
      index.delete(id);
      tellGone(id);
      return true;
    },
    /** The nodes for placement: `route` over it answers what it answers over `records()`. */
    placement: () => index,
    watch,
    /**
     * Enters a node that joined (replacing none: remove the old one first), gives a dew its
     * parent, and a trusted fog the dews that have none. Answers the entry and the dew's parent.
     */
    add(record: NodeRecord, link: L): { entry: Entry<L>; parent?: string } {
      const entry: Entry<L> = { record, link, peerToken: crypto.randomUUID(), sync: {} };
      // It was joined to another relay: this socket replaces that record.
      remote.delete(record.id);
      nodes.set(record.id, entry);
      list = undefined;
      localList = undefined;
      // A record left behind (replaced, removed) changes nothing any more.
      observe(record, () => {
        if (nodes.get(record.id)?.record === record) index.set(record);
      });
      index.set(record);
      const parent = record.role === 'dew' ? parentFor() : undefined;
      if (parent) {
        record.parent = parent;
        watch(parent, record.id);
      }
      if (record.role === 'fog' && record.trusted) adoptOrphans();
      return { entry, ...(parent && { parent }) };
    },
    /**
     * Node `id` left on `link` (a newer connection of the same node is not removed): tells those
     * that were sent to it, and moves a fog's dews. True when it was removed.
     */
    remove(id: string, link: L): boolean {
      if (nodes.get(id)?.link !== link) return false;
      const node = nodes.get(id)!.record;
      nodes.delete(id);
      list = undefined;
      localList = undefined;
      index.delete(id);
      o.event('left', 'connection closed', id);
      tellGone(id);
      if (node.role === 'fog') reparent(id);
      return true;
    },
    /** What a heartbeat reports: load, apps, models, statistics, a fog's open channels. */
    heartbeat(node: NodeRecord, msg: Extract<ToRelay, { t: 'heartbeat' }>): void {
      node.queue = msg.load.queue;
      node.maxConcurrency = msg.load.maxConcurrency;
      node.apps = msg.apps;
      node.models = msg.models;
      node.stats = msg.stats;
      node.paused = msg.paused;
      node.versions = msg.versions ?? {};
      node.fetch = msg.fetch === true;
      if (msg.context) node.context = msg.context;
      if (msg.exits) node.exits = msg.exits;
      if (node.role === 'fog') node.links = msg.links ?? [];
      if (msg.workers) recordWorkers(node, msg.workers, msg.scaled);
      if (msg.workersMax || node.workersMax) node.workersMax = msg.workersMax;
      if (msg.caps) {
        node.caps = msg.caps;
        node.backends = msg.caps.backends.map((b) => b.name);
      }
    },
    /** The trust list changed: a revoked cloud node is closed, a revoked fog's dews move. */
    retrust(): void {
      for (const { record } of [...nodes.values()]) {
        if (record.role === 'dew') continue;
        const was = record.trusted;
        record.trusted = o.trusted(record.publicKey);
        if (was === record.trusted) continue;
        o.event(
          record.trusted ? 'joined' : 'refused',
          record.trusted ? 'trusted now' : 'trust revoked',
          record.id,
        );
        if (record.role === 'cloud')
          o.revoke(record.id, 'trust revoked: the cloud role is for keys on the trust list');
        else if (record.trusted) adoptOrphans();
        else reparent(record.id);
      }
    },
    /** Whether `token` is what this relay gave node `id` for the PeerJS server. */
    peerTokenOk(id: string, token: string): boolean {
      const n = nodes.get(id);
      return n !== undefined && token.length === n.peerToken.length && token === n.peerToken;
    },
  };
}

export type Registry<L> = ReturnType<typeof createRegistry<L>>;
