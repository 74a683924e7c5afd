/**
 * The hub's side of a cluster (relay/hub/cluster.ts): other relays' nodes mirrored into the
 * registry as they report them, a call placed on one of them handed to its relay, and calls other
 * relays hand this one run on the node joined here, their answers sent back. Each call is still
 * answered once, by forwarding.ts: a node lost on another relay, or that relay gone, places it again.
 * @example const relays = createRelays({ relayId, cluster, registry, forwarding, … });
 *          forwarding's send: relays.sendCall;   await relays.started;
 */
import type { NodeRecord, RelaysAnswer } from '../../core/api';
import { type BrumeError, DisconnectedError, toWire } from '../../core/errors';
import type { ToNode } from '../../core/protocol';
import type { RelayMetrics } from '../metrics';
import type { Outcome } from '../verify';
import type { HubCluster, RelayFrame, SignalFrame } from './cluster';
import type { Call, CallAnswer, Forwarding, Reply } from './forwarding';

export interface RelaysOptions {
  relayId: string;
  cluster: HubCluster;
  heartbeatMs: number;
  registry: {
    get(id: string): unknown;
    record(id: string): NodeRecord | undefined;
    local(): NodeRecord[];
    setRemote(record: NodeRecord): boolean;
    removeRemote(id: string): boolean;
  };
  /** Read when used: forwarding is made after this. */
  forwarding: () => Forwarding;
  /** Sends a frame to a node joined here. */
  sendTo(node: string, frame: ToNode): void;
  /** Counts a call in flight until answered (a drain waits for it). */
  tracked(reply: Reply): Reply;
  metrics: Pick<RelayMetrics, 'relayMessage'>;
  warn(fields: Record<string, unknown>, message: string): void;
}

export function createRelays(o: RelaysOptions) {
  const { relayId, cluster, registry, metrics } = o;
  /** Who takes the PeerJS messages other relays hand this one (none: they are dropped). */
  let onSignal: ((frame: SignalFrame) => void) | undefined;

  /**
   * Sends a call frame to node `node`, joined here or to another relay of the cluster, which
   * runs it there and sends the answer back. A frame that cannot reach that relay fails its call.
   */
  function sendCall(node: string, frame: ToNode): void {
    if (registry.get(node) || frame.t !== 'call') {
      o.sendTo(node, frame);
      return;
    }
    const relay = registry.record(node)?.relay;
    if (relay === undefined) return;
    const { t: _, from, ...call } = frame;
    const sent: RelayFrame = { t: 'call', from: relayId, node, caller: from, ...call };
    cluster.send(relay, sent).catch((e: BrumeError) => {
      // That relay is gone: its node with it, so the call runs elsewhere; else the call fails.
      if (e.code !== 'E_DISCONNECTED') return o.forwarding().fail(frame.id, e);
      const error = toWire(e);
      o.forwarding().answerFrom(relay, { t: 'error', from: relay, node, id: frame.id, error });
    });
  }

  /**
   * A frame another relay sent: an answer to a call handed to it, or a call for a node joined
   * here, run on that node only (checked, counted and timed by the relay that placed it). The
   * node gone: E_DISCONNECTED, and that relay places the call again.
   */
  function received(frame: RelayFrame): void {
    if (frame.t === 'signal') {
      onSignal?.(frame);
      return;
    }
    if (frame.t !== 'call') {
      o.forwarding().answerFrom(frame.from, frame);
      return;
    }
    const { t: _, from, node, id, caller, timeoutMs, ...call } = frame;
    const back = (answer: RelayFrame) => {
      cluster.send(from, answer).catch((e: BrumeError) => {
        o.warn({ relay: from, node }, `an answer to another relay was lost: ${e.message}`);
      });
    };
    const reply = o.tracked((r: Outcome<CallAnswer>) => {
      if (!r.ok) {
        back({ t: 'error', from: relayId, node, id, error: toWire(r.error) });
        return;
      }
      const { ok: __, node: ___, ...answer } = r;
      back({ t: 'result', from: relayId, node, id, ...answer });
    });
    if (!registry.get(node)) {
      const gone = new DisconnectedError(`node ${node.slice(0, 8)} is not joined to this relay`);
      reply({ ok: false, error: gone });
      return;
    }
    const run: Call = { ...call, caller, target: node, stay: true, leg: true };
    o.forwarding().forward(timeoutMs === undefined ? run : { ...run, timeoutMs }, reply);
  }

  const started = cluster.start(
    relayId,
    o.heartbeatMs,
    {
      node(r) {
        if (registry.get(r.id)) return;
        const previous = registry.record(r.id);
        registry.setRemote(r);
        // It moved between two other relays: calls waiting on the old one run elsewhere.
        if (previous && previous.relay !== r.relay) o.forwarding().moveFrom(r.id);
      },
      left(ids) {
        for (const id of ids) if (registry.removeRemote(id)) o.forwarding().moveFrom(id);
      },
      frame: received,
      counted: metrics.relayMessage,
    },
    registry.local,
  );
  // Whoever starts the hub awaits `started`; until then a refusal must not go unhandled.
  started.catch(() => {});

  return {
    sendCall,
    /** PeerJS messages between relays (PROTOCOL.md §5.10), for relay/peer-signal.ts. */
    signals: {
      /** Sends `frame` to relay `to`; rejects (a typed error) when it cannot be sent. */
      send: (to: string, frame: SignalFrame): Promise<void> => cluster.send(to, frame),
      /** `fn` takes the signalling frames other relays send here. */
      listen(fn: (frame: SignalFrame) => void): void {
        onSignal = fn;
      },
    },
    /** Joined the cluster; rejects when it may not (the most relays are there already). */
    started,
    /**
     * A node joins here: if it was joined to another relay, the calls waiting there run
     * elsewhere (its old socket's answers would match nothing), and the others are told.
     */
    joining(id: string): void {
      if (registry.removeRemote(id)) o.forwarding().moveFrom(id);
    },
  };
}

/**
 * `GET /api/relays`: the relays `cluster` lists, each with the nodes joined there among `nodes`
 * (this relay's own: `relay` unset or its id), this relay always among them; a lone relay
 * answers itself only.
 */
export async function listRelays(
  relayId: string,
  cluster: HubCluster,
  nodes: Iterable<NodeRecord>,
): Promise<RelaysAnswer> {
  const { relays, redis } = await cluster.relays();
  const joined = new Map<string, number>();
  for (const n of nodes) {
    const at = n.relay ?? relayId;
    joined.set(at, (joined.get(at) ?? 0) + 1);
  }
  const heard = relays.some((r) => r.id === relayId)
    ? relays
    : [{ id: relayId, at: Date.now() }, ...relays];
  return {
    relays: heard.map((r) => ({
      id: r.id,
      self: r.id === relayId,
      nodes: joined.get(r.id) ?? 0,
      lastHeard: r.at,
    })),
    redis,
  };
}
