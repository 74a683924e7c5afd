/**
 * Exits per tier (PROTOCOL.md §5.2 `exits`): nodes report, per model service with an exit head,
 * how many runs they judged and how many took the exit since they started; the relay adds what
 * each report grew by to its own tally by app, service and the role of the node that ran it, so
 * the counts outlive the nodes (the admin console's "Early exits", GET /api/exits).
 * The last report of each node is kept here, by node id, past its leaving: a node that joins again
 * (a dropped socket) still counts from where it was, and must not be counted twice.
 * @example const exits = createExitTally();
 *          exits.report(node, msg.exits);   // on each heartbeat
 *          exits.list();                     // [{ app, service, role, calls, taken }]
 */
import type { ExitRow, NodeRecord } from '../../core/api';
import type { Role } from '../../core/protocol';

/** Rows kept at most: past it, new (app, service, role) rows are not counted. */
export const maxExitRows = 4096;

/**
 * Counted services remembered at most over all nodes' last reports; past it the node that
 * reported least recently is forgotten (if it joins again, its counts are taken as new).
 */
export const maxRemembered = 100_000;

type Counts = Record<string, { calls: number; taken: number }>;

export function createExitTally() {
  const rows = new Map<string, ExitRow>();
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

  return {
    /**
     * Adds what `now` grew by since the node's last report; a count below the last one is a node
     * that started again, counted from zero.
     */
    report(node: NodeRecord, now: Counts | undefined) {
      if (!now) return;
      const before = last.get(node.id) ?? {};
      remember(node.id, now);
      for (const [key, c] of Object.entries(now)) {
        const slash = key.indexOf('/');
        if (slash <= 0) continue;
        const last = Object.hasOwn(before, key) ? before[key] : undefined;
        const restarted = !last || c.calls < last.calls || c.taken < last.taken;
        const calls = restarted ? c.calls : c.calls - last.calls;
        const taken = restarted ? c.taken : c.taken - last.taken;
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
