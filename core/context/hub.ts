/**
 * The relay's side of context sync (PROTOCOL.md §5.5), with no socket in it: it takes a node's
 * `ctx-*` frame, answers through `send(node, frame)`, and fans every accepted change out to the
 * nodes that keep its app — straight, or as one `ctx-fan` to a dew's parent fog when the fog has
 * a channel open to it. The relay's hub calls it over WebSockets; the seeded context simulation
 * calls it over a simulated network. Like Yjs's sync protocol: pure functions both sides call.
 * @example const ctx = createContextHub({ store, send, peer: (id) => registry.get(id), peers });
 *          await ctx.receive(peer, frame);   // a ctx-op, ctx-sync, ctx-unsent, ctx-keys or ctx-check frame
 *          ctx.publish(op, seq);             // a change accepted elsewhere (the HTTP API)
 */
import type { ContextFanout } from '../api';
import { ProtocolError, toWire } from '../errors';
import type { AgreementBinding, ToNode, ToRelay } from '../protocol';
import { type ContextOp, type ContextReplica, catchUpFor, viewFor } from './replica';

/** The store the relay keeps (relay/context.ts `RelayContext` is one). */
export interface ContextStore {
  replica: ContextReplica;
  /** Bytes of ops per `ctx-catchup` frame. */
  catchUpBytes: number;
  /** Checks and stores `op` from node `from`; its log position when it changed the store, else 0. */
  accept(op: ContextOp, from: string): Promise<number>;
  agreements(keys: string[]): AgreementBinding[];
}

/** What the context hub needs to know of a node. */
export interface ContextNode {
  id: string;
  publicKey: string;
  /** A dew's parent fog. */
  parent?: string;
  /** A fog's open data channels (the dews it can pass a change on to). */
  links?: string[];
}

/** This connection's sync state: set by the hub, new with each connection. */
export interface ContextSync {
  /** The apps whose context this node keeps: null all, undefined none (no ctx-sync yet). */
  apps?: Set<string> | null;
  /** The log position last sent to this node. */
  sent?: number;
}

export interface ContextPeer {
  record: ContextNode;
  sync: ContextSync;
}

export type ContextFrameIn = Extract<
  ToRelay,
  { t: 'ctx-op' | 'ctx-sync' | 'ctx-unsent' | 'ctx-keys' | 'ctx-check' }
>;
export type ContextFrameOut = Extract<
  ToNode,
  { t: 'ctx-ack' | 'ctx-nack' | 'ctx-op' | 'ctx-catchup' | 'ctx-keys' | 'ctx-fan' | 'ctx-at' }
>;

export interface ContextHubOptions {
  /** Undefined on a relay that keeps no context: a node asking for it breaks the protocol. */
  store: ContextStore | undefined;
  send(node: string, frame: ContextFrameOut): void;
  /** Sends one frame to many nodes, encoded once (default: `send` to each). */
  sendMany?(nodes: string[], frame: ContextFrameOut): void;
  /** The connected node `id`, if it is. */
  peer(id: string): ContextPeer | undefined;
  /** Every connected node. */
  peers(): Iterable<ContextPeer>;
  /** How long a change took to be sent to every node keeping its app (the relay's metrics). */
  published?(ms: number): void;
}

export function createContextHub(o: ContextHubOptions) {
  /** How context changes left the relay: straight to a node, or through its parent fog. */
  const fanout: ContextFanout = { direct: 0, viaFog: 0, unsent: 0 };

  const need = (): ContextStore => {
    if (!o.store) throw new ProtocolError('this relay keeps no context store');
    return o.store;
  };

  /** What of a change this node gets: only apps it keeps, and what core's viewFor lets it see. */
  function view(op: ContextOp, p: ContextPeer): ContextOp | undefined {
    if (p.sync.apps === undefined) return undefined;
    if (p.sync.apps && !p.sync.apps.has(op.app)) return undefined;
    return viewFor(op, p.record);
  }

  /**
   * Sends a context change to every node that keeps its app, numbered per node so gaps show.
   * A dew whose parent fog keeps the app and has a channel open to it gets a change the fog
   * may see (not private, not node-scoped) through the fog: one frame to the fog for all its
   * children.
   */
  function publish(op: ContextOp, seq: number): void {
    const t0 = performance.now();
    const fogs = new Map<string, { node: string; prev: number }[]>();
    const shareable = !op.privacy && op.scope === 'app';
    // Nodes that get the same frame (the same view of the op after the same `prev`: most of
    // them, in a fabric whose nodes keep the same apps) get it as one encoded frame.
    const same = new Map<ContextOp, Map<number, string[]>>();
    for (const p of o.peers()) {
      const v = view(op, p);
      if (!v) continue;
      const prev = p.sync.sent ?? 0;
      p.sync.sent = seq;
      const fog = p.record.parent ? o.peer(p.record.parent) : undefined;
      if (shareable && fog?.record.links?.includes(p.record.id) && view(op, fog)) {
        const children = fogs.get(fog.record.id) ?? [];
        children.push({ node: p.record.id, prev });
        fogs.set(fog.record.id, children);
        fanout.viaFog++;
      } else {
        const byPrev = same.get(v) ?? new Map<number, string[]>();
        same.set(v, byPrev);
        const ids = byPrev.get(prev) ?? [];
        byPrev.set(prev, ids);
        ids.push(p.record.id);
        fanout.direct++;
      }
    }
    for (const [v, byPrev] of same) {
      for (const [prev, ids] of byPrev) {
        const frame: ContextFrameOut = { t: 'ctx-op', prev, seq, op: v };
        if (o.sendMany && ids.length > 1) o.sendMany(ids, frame);
        else for (const id of ids) o.send(id, frame);
      }
    }
    for (const [fog, to] of fogs) o.send(fog, { t: 'ctx-fan', seq, op, to });
    o.published?.(performance.now() - t0);
  }

  /** A write: accepted (`ctx-ack`, then fanned out) or refused (`ctx-nack` naming why). */
  async function write(from: ContextPeer, frame: Extract<ContextFrameIn, { t: 'ctx-op' }>) {
    const store = need();
    const id = from.record.id;
    try {
      const seq = await store.accept(frame.op, id);
      o.send(id, { t: 'ctx-ack', opId: frame.op.opId });
      if (seq) publish(frame.op, seq);
    } catch (e) {
      o.send(id, { t: 'ctx-nack', opId: frame.op.opId, error: toWire(e) });
    }
  }

  /** A sync: the catch-up, in parts under the frame budget, back to back (no change between). */
  function sync(from: ContextPeer, frame: Extract<ContextFrameIn, { t: 'ctx-sync' }>): void {
    const store = need();
    from.sync.apps = frame.apps ? new Set(frame.apps) : null;
    const parts = catchUpFor(store.replica, frame, (op) => view(op, from), store.catchUpBytes);
    from.sync.sent = parts[0]!.cursor;
    for (const part of parts) o.send(from.record.id, { t: 'ctx-catchup', ...part });
  }

  /** A fog could not pass a change on: the relay sends it to those of its children itself. */
  function unsent(from: ContextPeer, frame: Extract<ContextFrameIn, { t: 'ctx-unsent' }>): void {
    const op = o.store?.replica.at(frame.seq);
    for (const t of frame.to) {
      const child = o.peer(t.node);
      if (!child || child.record.parent !== from.record.id) continue;
      fanout.unsent++;
      // Gone from the log: the child's next change shows a gap and it catches up.
      const v = op && view(op, child);
      if (v) o.send(t.node, { t: 'ctx-op', prev: t.prev, seq: frame.seq, op: v });
    }
  }

  return {
    /** A `ctx-*` frame from a joined node; throws a ProtocolError when it cannot be served. */
    async receive(from: ContextPeer, frame: ContextFrameIn): Promise<void> {
      switch (frame.t) {
        case 'ctx-op':
          return write(from, frame);
        case 'ctx-sync':
          return sync(from, frame);
        case 'ctx-unsent':
          return unsent(from, frame);
        case 'ctx-check': {
          // Every change this node may see went out before this answer, on this link or
          // through its fog; one it has not synced yet is told the relay's whole log position.
          const seq = from.sync.apps === undefined ? need().replica.cursor : (from.sync.sent ?? 0);
          o.send(from.record.id, { t: 'ctx-at', id: frame.id, seq });
          return;
        }
        case 'ctx-keys':
          o.send(from.record.id, {
            t: 'ctx-keys',
            id: frame.id,
            found: need().agreements(frame.keys),
          });
          return;
      }
    },
    publish,
    /** Context changes sent straight to nodes, through fogs, and sent again for a fog. */
    fanout: (): ContextFanout => ({ ...fanout }),
  };
}

export type ContextHub = ReturnType<typeof createContextHub>;
