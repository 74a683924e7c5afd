/**
 * The relay's sessions (PROTOCOL.md §5.9): a stream of calls placed once with the Nimbus rule
 * (core/session/nimbus.ts) over the nodes joined now, then moved — the caller told by
 * `session-moved` — when its node is lost, leaves gracefully (hidden, paused, unloading, battery
 * low), or the caller asks again. A caller lost closes its sessions. The table is bounded per
 * caller and in all; the last migrations are kept for the console.
 * @example const sessions = createSessions({ limits, nodes, node, manifest, send, stateBytes });
 *          const view = await sessions.open(caller, frame);   // → { id, node, latencyMs, … }
 *          sessions.lost(nodeId);                            // its sessions re-placed, callers told
 */
import { randomBytes } from 'node:crypto';
import type { MigrationRecord, NodeRecord, SessionRecord } from '../../core/api';
import { DisconnectedError, InputError, LimitError, NotFoundError } from '../../core/errors';
import type { Manifest } from '../../core/manifest';
import { slotsFor } from '../../core/placement/figures';
import type { SessionOpen, SessionView, ToNode } from '../../core/protocol';
import { checkStateKey } from '../../core/protocol/session';
import { type NimbusDevice, type NimbusNode, placeSession } from '../../core/session/nimbus';
import type { HubLimits } from '../limits';
import { oncePer } from './once-per';
import {
  budgetMs,
  energyFigures,
  type FigureKey,
  figure,
  figureKey,
  type Known,
  medians,
  UNKNOWN_EXEC_MS,
} from './session-figures';

/** Nodes a session remembers warming; past them it forgets the one it warmed first. */
const MAX_WARMED = 16;
/** Migrations the console is shown, newest last. */
const MAX_MIGRATIONS = 200;
/**
 * A session moves for figures only to a node estimated this much faster (or when its own node no
 * longer meets its budgets): small changes in reported figures do not bounce it between nodes.
 */
const FIGURES_GAIN = 0.75;

export interface SessionsOptions {
  limits: Pick<HubLimits, 'sessionsPerNode' | 'sessions' | 'sessionsServed'>;
  /** The heartbeat period: a node's sessions are judged again at most once in it. */
  periodMs: number;
  nodes(): readonly NodeRecord[];
  node(id: string): NodeRecord | undefined;
  manifest(app: string): Promise<Manifest | undefined>;
  send(node: string, frame: ToNode): void;
  /** Bytes of context key `key` of `app` held by the relay now; undefined when it has none. */
  stateBytes(app: string, key: string): number | undefined;
  /** Work on a session that failed (never thrown out of a socket's listener). */
  warn(fields: Record<string, unknown>, message: string): void;
}

export function createSessions(o: SessionsOptions) {
  const table = new Map<string, SessionRecord>();
  const byCaller = new Map<string, Set<string>>();
  /** Nodes that said they are leaving (§5.9): no session is placed on them. */
  const leaving = new Map<string, string>();
  const migrations: MigrationRecord[] = [];
  /** Sessions by the node serving them (the caller's own id when local). */
  const served = new Map<string, Set<string>>();
  /** Where each session's figures are kept: its own rpc's stats key, and its slots' pool. */
  const keyOf = new Map<string, FigureKey>();
  /** The nodes each session has warmed. */
  const warmed = new Map<string, Set<string>>();

  /**
   * Tells the node the session would go to if its node went (the rule's choice without it) to
   * load the app: a move then costs no cold start. Once per session and node (of the last
   * MAX_WARMED it warmed).
   */
  function standby(s: SessionRecord, caller: NodeRecord): void {
    const next = choose(s, caller, new Set([s.node])).node;
    if (next === caller.id || next === s.node) return;
    s.standby = next;
    const done = warmed.get(s.id) ?? new Set<string>();
    if (done.has(next)) return;
    if (done.size >= MAX_WARMED) done.delete(done.values().next().value!);
    warmed.set(s.id, done.add(next));
    o.send(next, { t: 'session-warm', app: s.app });
  }

  /** Puts the rule's choice on `s`, keeping `served` true. */
  function assign(s: SessionRecord, choice: ReturnType<typeof choose>): void {
    if (choice.node !== s.node) {
      const was = served.get(s.node);
      was?.delete(s.id);
      if (was?.size === 0) served.delete(s.node);
      if (table.has(s.id))
        served.set(choice.node, (served.get(choice.node) ?? new Set()).add(s.id));
    }
    Object.assign(s, choice);
  }
  const servedBy = (node: string) =>
    [...(served.get(node) ?? [])].flatMap((id) => table.get(id) ?? []);

  /**
   * The Nimbus rule over the nodes that can serve `s` now, `exclude` left out (`only`: that node
   * alone, to judge where it is).
   */
  function choose(
    s: SessionRecord,
    caller: NodeRecord,
    exclude: ReadonlySet<string>,
    only?: string,
    known = knownFigures(s),
  ) {
    const k = keyOf.get(s.id);
    const nodes: NimbusNode[] = [];
    const able = o.nodes().filter(
      (n) =>
        n.id !== caller.id &&
        !exclude.has(n.id) &&
        !leaving.has(n.id) &&
        (only === undefined || n.id === only) &&
        n.online &&
        !n.paused &&
        !n.quarantined &&
        n.apps.includes(s.app) &&
        // Full: it serves sessionsServed sessions besides this one.
        (served.get(n.id)?.size ?? 0) - (s.node === n.id ? 1 : 0) < o.limits.sessionsServed,
    );
    const guess = s.localMs ?? known.all ?? UNKNOWN_EXEC_MS;
    for (const n of able) {
      const execMs = (k && figure(n, k, known.measured)) ?? guess;
      const slots = slotsFor(n, k?.pool ?? '');
      nodes.push({
        id: n.id,
        role: n.role,
        // Through the relay: the caller's round trip to it and the node's (a data channel is
        // shorter, so this is the most it costs).
        rttMs: caller.rttMs + n.rttMs,
        bandwidthMbps: energyFigures.bandwidthMbps,
        execMs,
        // q(n) = m·n + b: each session shares the node's slots (m·n), and what it has queued
        // beyond one frame of each session it serves waits too (b).
        queue: {
          m: execMs / slots,
          b: (Math.max(0, n.queue - (served.get(n.id)?.size ?? 0)) / slots) * execMs,
        },
        sessions: servedBy(n.id)
          .filter((other) => other.id !== s.id)
          .map((other) => ({ latencyBudgetMs: budgetMs(other), netMs: other.netMs })),
        ...(n.caps.battery && { onBattery: !n.caps.battery.charging }),
      });
    }
    // Figures are bounded where they enter (MAX_FIGURE_MS) and figure() skips any other: the
    // rule never throws on what a node reported.
    const localMs = s.localMs ?? (k && figure(caller, k)) ?? budgetMs(s);
    const battery = caller.caps.battery;
    const device: NimbusDevice = {
      frameBytes: s.frameBytes,
      fps: s.fps,
      latencyBudgetMs: budgetMs(s),
      localMs,
      localEnergyMj: localMs * energyFigures.localMjPerMs,
      radioMjPerMs: energyFigures.radioMjPerMs,
      // No battery reported: on mains.
      charging: battery ? battery.charging : true,
      ...(s.energyBudgetMj !== undefined && { energyBudgetMj: s.energyBudgetMj }),
    };
    const c = placeSession(device, nodes);
    return {
      node: c.node ?? caller.id,
      latencyMs: round(c.latencyMs),
      energyMj: round(c.energyMj),
      netMs: c.netMs,
      reason: c.reason,
    };
  }

  const knownFigures = (s: SessionRecord): Known => {
    const k = keyOf.get(s.id);
    return k ? medians(o.nodes(), k) : {};
  };

  const view = (s: SessionRecord): SessionView => ({
    id: s.id,
    app: s.app,
    service: s.service,
    node: s.node,
    latencyMs: s.latencyMs,
    energyMj: s.energyMj,
    reason: s.reason,
  });

  /** Places `s` again (not on `exclude`) and tells its caller when its node changed. */
  function replace(
    s: SessionRecord,
    why: MigrationRecord['why'],
    since: number,
    exclude: string[],
    chosen?: ReturnType<typeof choose>,
  ) {
    const caller = o.node(s.caller);
    if (!caller) return;
    const from = s.node;
    assign(s, chosen ?? choose(s, caller, new Set(exclude)));
    if (s.node === from) return;
    standby(s, caller);
    s.moves++;
    const key = s.stateKey?.replaceAll('{session}', s.id);
    const stateBytes = key === undefined ? undefined : o.stateBytes(s.app, key);
    // A caller that asked hears of the new node in the answer to its `session-open`.
    if (why !== 'asked')
      o.send(s.caller, {
        t: 'session-moved',
        session: view(s),
        from,
        why,
        ...(stateBytes !== undefined && { stateBytes }),
      });
    migrations.push({
      at: Date.now(),
      session: s.id,
      app: s.app,
      service: s.service,
      from,
      to: s.node,
      why,
      ...(stateBytes !== undefined && { stateBytes }),
      handOverMs: round(performance.now() - since),
    });
    if (migrations.length > MAX_MIGRATIONS) migrations.shift();
  }

  /** Every session served by `node`, placed elsewhere. */
  function moveFrom(node: string, why: MigrationRecord['why']): void {
    const since = performance.now();
    for (const s of servedBy(node)) guarded(s, () => replace(s, why, since, [node]));
  }

  /**
   * Runs session work from a heartbeat, a drop or a leave: a failure is logged with the session
   * and leaves it where it is, never thrown out of the socket's listener (it would end the relay).
   */
  function guarded(s: SessionRecord, work: () => void): void {
    try {
      work();
    } catch (e) {
      o.warn(
        { session: s.id, app: s.app, service: s.service, err: String(e) },
        'session not re-placed',
      );
    }
  }

  /**
   * Node `node` reported new figures: its sessions are judged again, and one moves (`figures`)
   * when its node no longer meets its budgets and another does, or another is estimated
   * FIGURES_GAIN faster. A local session is judged on its caller's reports.
   */
  function review(node: string): boolean {
    const sessions = servedBy(node);
    if (sessions.length === 0) return false;
    const since = performance.now();
    // The figures for each service, once per review rather than once per session and choice.
    const known = new Map<string, Known>();
    for (const s of sessions)
      guarded(s, () => {
        const key = keyOf.get(s.id)?.prefix ?? '';
        const figures = known.get(key) ?? knownFigures(s);
        known.set(key, figures);
        judge(s, since, figures);
      });
    return true;
  }
  /** Reviews at most once per heartbeat period and node, the last asked at the period's end. */
  const reviews = oncePer(o.periodMs, review);

  /** Whether `s` stays where it is or moves for figures. */
  function judge(s: SessionRecord, since: number, known: Known): void {
    const caller = o.node(s.caller);
    if (!caller) return;
    const next = choose(s, caller, new Set(), undefined, known);
    // Where it is, by the same rule over that node alone (none: local).
    const stay = next.node === s.node ? next : choose(s, caller, new Set(), s.node, known);
    const fits = stay.node === s.node;
    if (next.node === s.node || (fits && next.latencyMs >= FIGURES_GAIN * stay.latencyMs))
      assign(s, stay);
    else replace(s, 'figures', since, [], next);
  }

  function remove(id: string): void {
    const s = table.get(id);
    if (!s) return;
    table.delete(id);
    keyOf.delete(id);
    warmed.delete(id);
    const on = served.get(s.node);
    on?.delete(id);
    if (on?.size === 0) served.delete(s.node);
    const mine = byCaller.get(s.caller);
    mine?.delete(id);
    if (mine?.size === 0) byCaller.delete(s.caller);
  }

  return {
    /**
     * Opens a session for `caller` (or places again one of its own, `frame.session`): E_NOT_FOUND
     * for an app or service the relay does not have or a session not the caller's, E_LIMIT past
     * the bounds.
     */
    async open(caller: NodeRecord, frame: SessionOpen): Promise<SessionView> {
      const manifest = await o.manifest(frame.app);
      // The caller's socket may have closed while the manifest was read: its sessions are gone
      // with it, and one added now would never be closed.
      if (o.node(caller.id) !== caller)
        throw new DisconnectedError('session: the caller left while its session was placed');
      const again = frame.session === undefined ? undefined : table.get(frame.session);
      if (frame.session !== undefined && (!again || again.caller !== caller.id))
        throw new NotFoundError(`session: no open session ${frame.session} of this node`);
      // Placed again: the same app and service, other requirements only.
      for (const field of ['app', 'service'] as const)
        if (again && again[field] !== frame[field])
          throw new InputError(
            `session ${field} must stay "${again[field]}" when placed again (got "${frame[field]}")`,
          );
      if (frame.stateKey !== undefined) checkStateKey(frame.stateKey);
      if (!manifest || !Object.hasOwn(manifest.services, frame.service))
        throw new NotFoundError(
          `no service "${frame.service}" in app "${frame.app}" on this relay`,
        );
      const since = performance.now();
      if (again) {
        // What the frame leaves out is cleared, not kept from the last time.
        delete again.energyBudgetMj;
        delete again.localMs;
        delete again.stateKey;
        Object.assign(again, requirements(frame));
        keyOf.set(again.id, figureKey(manifest, again));
        replace(again, 'asked', since, frame.exclude ?? []);
        return view(again);
      }
      const mine = byCaller.get(caller.id) ?? new Set<string>();
      if (mine.size >= o.limits.sessionsPerNode)
        throw new LimitError(
          `this node has ${mine.size} sessions open (limit sessionsPerNode ${o.limits.sessionsPerNode}): close one first`,
        );
      if (table.size >= o.limits.sessions)
        throw new LimitError(
          `the relay has ${table.size} sessions open (limit sessions ${o.limits.sessions}): try again later`,
        );
      const s: SessionRecord = {
        id: randomBytes(12).toString('hex'),
        app: frame.app,
        service: frame.service,
        caller: caller.id,
        ...requirements(frame),
        node: '',
        latencyMs: 0,
        energyMj: 0,
        netMs: 0,
        reason: '',
        openedAt: Date.now(),
        moves: 0,
      };
      keyOf.set(s.id, figureKey(manifest, s));
      const chosen = choose(s, caller, new Set(frame.exclude));
      table.set(s.id, s);
      assign(s, chosen);
      standby(s, caller);
      mine.add(s.id);
      byCaller.set(caller.id, mine);
      return view(s);
    },
    /** The caller closed it (a session not its own is ignored). */
    close(caller: string, id: string): void {
      if (table.get(id)?.caller === caller) remove(id);
    },
    /** Node `node` is leaving gracefully (`on`) or back: its sessions are handed over. */
    leave(node: string, on: boolean, reason: string): void {
      if (!on) {
        leaving.delete(node);
        return;
      }
      leaving.set(node, reason);
      moveFrom(node, 'left');
    },
    /** Node `node` reported figures: its sessions judged (at most once per heartbeat period). */
    review: reviews.ask,
    /** Node `node` was lost: its own sessions close, those it served are placed again. */
    lost(node: string): void {
      leaving.delete(node);
      reviews.forget(node);
      for (const id of [...(byCaller.get(node) ?? [])]) remove(id);
      moveFrom(node, 'lost');
    },
    /** Sessions open now, by when they opened. */
    list: (): SessionRecord[] => [...table.values()],
    migrations: (): MigrationRecord[] => [...migrations],
    /** Nodes leaving now, with why. */
    leaving: () => Object.fromEntries(leaving),
  };
}

/** The session's requirements from an open frame. */
function requirements(f: SessionOpen) {
  return {
    rpc: f.rpc ?? '',
    fps: f.fps,
    frameBytes: f.frameBytes ?? 0,
    ...(f.energyBudgetMj !== undefined && { energyBudgetMj: f.energyBudgetMj }),
    ...(f.localMs !== undefined && { localMs: f.localMs }),
    ...(f.stateKey !== undefined && { stateKey: f.stateKey }),
  };
}

const round = (x: number) => Math.round(x * 100) / 100;
