/**
 * Exits per tier (PROTOCOL.md §5.2 `exits`): nodes report, per model service with an exit head,
 * how many runs they judged and how many took the exit since they started; the relay adds what
 * each report grew by to its own tally by app, service and the role of the node that ran it, so
 * the counts outlive the nodes (the admin console's "Early exits", GET /api/exits).
 * The last report of each node is kept here, by node id, past its leaving: a node that joins again
 * (a dropped socket) still counts from where it was, and must not be counted twice.
 * Only a service that the app's current manifest declares as a model with an exit head is counted:
 * a node's report is its own word, and made-up keys must not fill the table. Reports are taken
 * one after another, in the order they came, each once its apps' manifests are read.
 * @example const exits = createExitTally({ manifest });
 *          exits.report(node, msg.exits);   // on each heartbeat
 *          exits.list();                     // [{ app, service, role, calls, taken }]
 */
import type { ExitRow, NodeRecord } from '../../core/api';
import type { Manifest } from '../../core/manifest';
import type { Role } from '../../core/protocol';

/** Rows kept at most: past it, new (app, service, role) rows are not counted. */
export const maxExitRows = 4096;

/**
 * Counted services remembered at most over all nodes' last reports; past it the node that
 * reported least recently is forgotten (if it joins again, its counts are taken as new).
 */
export const maxRemembered = 100_000;

/** Reports waiting for manifests at most. */
const maxWaiting = 1000;

type Counts = Record<string, { calls: number; taken: number }>;

export function createExitTally(o: { manifest(app: string): Promise<Manifest | undefined> }) {
  const rows = new Map<string, ExitRow>();
  /** Reports waiting for their manifests, in order, and how many (at most maxWaiting). */
  let queue: Promise<void> = Promise.resolve();
  let waiting = 0;

  /** The entries of `now` that name a model service with an exit head of a deployed app. */
  async function declared(now: Counts): Promise<Counts> {
    const apps = new Map<string, Promise<Manifest | undefined>>();
    const out: Counts = {};
    for (const [key, c] of Object.entries(now)) {
      const slash = key.indexOf('/');
      if (slash <= 0) continue;
      const app = key.slice(0, slash);
      if (!apps.has(app))
        apps.set(
          app,
          o.manifest(app).catch(() => undefined),
        );
      const svc = (await apps.get(app))?.services[key.slice(slash + 1)];
      if (svc?.kind === 'model' && svc.exit) out[key] = c;
    }
    return out;
  }

  /** Each node's last report, least recently reporting first, and their entries in all. */
  const last = new Map<string, Counts>();
  let remembered = 0;

  function remember(node: string, now: Counts): void {
    const before = last.get(node);
    if (before) remembered -= Object.keys(before).length;
    last.delete(node);
    last.set(node, now);
    remembered += Object.keys(now).length;
    for (const [id, r] of last) {
      if (remembered <= maxRemembered) break;
      last.delete(id);
      remembered -= Object.keys(r).length;
    }
  }

  /** Adds what `now` grew by since the node's last report (a count below it: the node restarted). */
  function add(node: NodeRecord, now: Counts): void {
    const before = last.get(node.id) ?? {};
    remember(node.id, now);
    for (const [key, c] of Object.entries(now)) {
      const slash = key.indexOf('/');
      if (slash <= 0) continue;
      const prev = Object.hasOwn(before, key) ? before[key] : undefined;
      const restarted = !prev || c.calls < prev.calls || c.taken < prev.taken;
      const calls = restarted ? c.calls : c.calls - prev.calls;
      const taken = restarted ? c.taken : c.taken - prev.taken;
      if (calls === 0 && taken === 0) continue;
      const id = `${key}\n${node.role}`;
      let row = rows.get(id);
      if (!row) {
        if (rows.size >= maxExitRows) continue;
        row = {
          app: key.slice(0, slash),
          service: key.slice(slash + 1),
          role: node.role,
          calls: 0,
          taken: 0,
        };
        rows.set(id, row);
      }
      row.calls += calls;
      row.taken += taken;
    }
  }

  return {
    /**
     * Counts a node's report (its declared exit services only), after those before it. Past
     * maxWaiting reports waiting, one is dropped: counts are totals, so the node's next report
     * brings what it had.
     */
    report(node: NodeRecord, now: Counts | undefined): Promise<void> {
      if (!now || waiting >= maxWaiting) return queue;
      waiting++;
      queue = queue
        .then(() => declared(now))
        .then((ok) => add(node, ok))
        .catch(() => {}) // nothing to count from a report that could not be read
        .finally(() => waiting--);
      return queue;
    },
    /** Every row, by app, service, then role (dew, fog, cloud). */
    list(): ExitRow[] {
      const order: Record<Role, number> = { dew: 0, fog: 1, cloud: 2 };
      return [...rows.values()]
        .map((r) => ({ ...r }))
        .sort(
          (a, b) =>
            a.app.localeCompare(b.app) ||
            a.service.localeCompare(b.service) ||
            order[a.role] - order[b.role],
        );
    },
  };
}

export type ExitTally = ReturnType<typeof createExitTally>;
