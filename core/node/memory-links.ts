/**
 * Direct channels between nodes in one process, on a seeded schedule: frames are encoded and
 * decoded as on a data channel, and each may be delayed (later frames overtake earlier ones),
 * dropped, or find its channel gone; a channel may fail to open; a node may be lost at any time,
 * failing every call in flight to it. The second real PeerLinks (web/peers.ts is the first), for
 * simulations of a whole fabric in Node.
 * @example const net = memoryNetwork({ random: mulberry32(seed), maxDelayMs: 5, drop: 0.01 });
 *          const node = await createNode({ …, links: net.links() });  …  net.lose(node.nodeId);
 */
import { DisconnectedError, fromWire, NoLinkError, TimeoutError, toWire } from '../errors';
import { Pending } from '../pending';
import { decodeFrame, encodeFrame, type PeerFrame } from '../protocol';
import type { PeerCall, PeerContext, PeerLinks, PeerResult } from './links';

export interface MemorySchedule {
  /** The seeded random source every choice is drawn from, in [0, 1). */
  random: () => number;
  /** Chance that a frame is lost on its way (its call then times out). Default 0. */
  drop?: number;
  /** Each frame takes a delay drawn from 0..maxDelayMs, so frames reorder. Default 0. */
  maxDelayMs?: number;
  /** Chance that a channel fails to open (E_NO_LINK: the caller goes through the relay). */
  noLink?: number;
  /** Time a call over a channel may take before it fails with E_TIMEOUT; default 30 000 ms. */
  callTimeoutMs?: number;
}

export interface MemoryNetwork {
  /** A node's channels: give one to each node (createNode's `links`). */
  links(): PeerLinks;
  /** Loses `node` now: every channel to it closes, its calls in flight fail both ways. */
  lose(node: string): void;
  /** Frames sent, and frames lost on the way (dropped, or their channel closed). */
  readonly stats: { sent: number; lost: number };
}

type Serve = (call: PeerCall) => Promise<PeerResult>;

interface Endpoint {
  id: string | undefined;
  serve: Serve | undefined;
  onContext: ((from: string, frame: PeerContext) => void) | undefined;
  /** Peers with an open channel, each with this side's calls waiting on it. */
  open: Map<string, Pending<PeerResult, string>>;
}

export function memoryNetwork(schedule: MemorySchedule): MemoryNetwork {
  const { random } = schedule;
  const timeoutMs = schedule.callTimeoutMs ?? 30_000;
  const nodes = new Map<string, Endpoint>();
  const stats = { sent: 0, lost: 0 };

  function closeChannel(a: Endpoint, b: Endpoint, why: string): void {
    const mine = b.id === undefined ? undefined : a.open.get(b.id);
    const theirs = a.id === undefined ? undefined : b.open.get(a.id);
    if (b.id !== undefined) a.open.delete(b.id);
    if (a.id !== undefined) b.open.delete(a.id);
    mine?.failAll(new DisconnectedError(why));
    theirs?.failAll(new DisconnectedError(why));
  }

  function unregister(e: Endpoint, why: string): void {
    if (e.id === undefined) return;
    for (const peer of [...e.open.keys()]) {
      const other = nodes.get(peer);
      if (other) closeChannel(e, other, why);
    }
    if (nodes.get(e.id) === e) nodes.delete(e.id);
    e.id = undefined;
  }

  function openChannel(from: Endpoint, to: Endpoint): Pending<PeerResult, string> {
    const pending = () =>
      new Pending<PeerResult, string>({
        timeoutMs,
        timeout: (node) =>
          new TimeoutError(
            `${node.slice(0, 8)} did not answer within ${timeoutMs} ms over its data channel`,
          ),
      });
    let mine = from.open.get(to.id!);
    if (!mine) {
      mine = pending();
      from.open.set(to.id!, mine);
    }
    if (!to.open.has(from.id!)) to.open.set(from.id!, pending());
    return mine;
  }

  /** Carries `frame` from one node to another, after its delay, unless it is lost. */
  function deliver(from: Endpoint, fromId: string, toId: string, frame: PeerFrame): void {
    stats.sent++;
    const bytes = encodeFrame(frame);
    if (random() < (schedule.drop ?? 0)) {
      stats.lost++;
      return;
    }
    setTimeout(
      () => {
        const to = nodes.get(toId);
        // A frame whose channel closed meanwhile has nowhere to go.
        if (!to || from.id !== fromId || !to.open.has(fromId) || !from.open.has(toId)) {
          stats.lost++;
          return;
        }
        receive(to, fromId, decodeFrame(bytes, 'peer'));
      },
      random() * (schedule.maxDelayMs ?? 0),
    );
  }

  function receive(to: Endpoint, fromId: string, frame: PeerFrame): void {
    const toId = to.id!;
    if (frame.t === 'ctx-op') {
      to.onContext?.(fromId, frame);
    } else if (frame.t === 'call') {
      const serve = to.serve;
      if (!serve) return;
      const back = (f: PeerFrame) => {
        const caller = nodes.get(fromId);
        if (caller && to.id === toId) deliver(to, toId, fromId, f);
      };
      serve(frame).then(
        (r) => back({ ...r, id: frame.id }),
        (e: unknown) => back({ t: 'error', id: frame.id, error: toWire(e) }),
      );
    } else if (frame.t === 'result') {
      to.open.get(fromId)?.settle(frame.id, frame);
    } else if (frame.t === 'error') {
      to.open.get(fromId)?.fail(frame.id, fromWire(frame.error));
    }
  }

  function links(): PeerLinks {
    const me: Endpoint = { id: undefined, serve: undefined, onContext: undefined, open: new Map() };
    const reach = (node: string): Pending<PeerResult, string> => {
      const to = nodes.get(node);
      if (me.id === undefined) throw new NoLinkError('not registered yet');
      if (!to) throw new NoLinkError(`no channel to ${node.slice(0, 8)}: it is not reachable`);
      if (!me.open.has(node) && random() < (schedule.noLink ?? 0)) {
        throw new NoLinkError(`no channel to ${node.slice(0, 8)} within the open timeout`);
      }
      return openChannel(me, to);
    };
    return {
      start(nodeId, _token, serve, onContext) {
        unregister(me, 'this node joined again');
        const old = nodes.get(nodeId);
        if (old) unregister(old, 'replaced by a new registration');
        me.id = nodeId;
        me.serve = serve;
        me.onContext = onContext;
        nodes.set(nodeId, me);
      },
      async call(node, frame) {
        const calls = reach(node);
        const { id, answer } = calls.open(node);
        deliver(me, me.id!, node, { ...frame, id });
        return answer;
      },
      connect(node) {
        try {
          reach(node);
        } catch {
          // Ahead of use only: a call that needs it finds out itself.
        }
      },
      send(node, frame) {
        if (me.id === undefined || !me.open.has(node)) return false;
        deliver(me, me.id, node, frame);
        return true;
      },
      drop(node) {
        const other = nodes.get(node);
        if (other) closeChannel(me, other, `${node.slice(0, 8)} left the fabric`);
        else me.open.get(node)?.failAll(new DisconnectedError(`${node.slice(0, 8)} left`));
        me.open.delete(node);
      },
      connected: () => [...me.open.keys()],
      close: () => unregister(me, 'the node closed'),
    };
  }

  return {
    links,
    lose(node) {
      const e = nodes.get(node);
      if (e) unregister(e, `the channel to ${node.slice(0, 8)} closed`);
    },
    stats,
  };
}
