/**
 * Exits per tier (PROTOCOL.md §5.2 `exits`): nodes report, per model service with an exit head,
 * how many runs they judged and how many took the exit since they started; the relay adds what
 * each report grew by to its own tally by app, service and the role of the node that ran it, so
 * the counts outlive the nodes (the admin console's "Early exits", GET /api/exits).
 * @example const exits = createExitTally();
 *          exits.report(node, msg.exits);   // on each heartbeat, before node.exits is replaced
 *          exits.list();                     // [{ app, service, role, calls, taken }]
 */
import type { ExitRow, NodeRecord } from '../../core/api';
import type { Role } from '../../core/protocol';

/** Rows kept at most: past it, new (app, service, role) rows are not counted. */
export const maxExitRows = 4096;

export function createExitTally() {
  const rows = new Map<string, ExitRow>();
  return {
    /**
     * Adds what `now` grew by since the node's last report (`node.exits`); a count below the last
     * one is a node that started again, counted from zero.
     */
    report(node: NodeRecord, now: Record<string, { calls: number; taken: number }> | undefined) {
      if (!now) return;
      const before = node.exits ?? {};
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
