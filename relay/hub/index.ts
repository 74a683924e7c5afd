/**
 * The relay's WebSocket hub: nodes join by challenge–response, report load and statistics by
 * heartbeat, ask for scheduling decisions, and reach each other through it when no data channel
 * can be opened. A node that stops answering is evicted and its forwarded calls run elsewhere.
 * This file wires the parts and maps each frame type to its handler: sockets (connections.ts),
 * joining (join.ts), the nodes (registry.ts), placement (decide.ts), forwarded calls
 * (forwarding.ts), decision leases (leases.ts), context sync (core/context/hub.ts) and the logs
 * (logs.ts).
 * @example const hub = createHub({ relayId, manifests, trust, log });
 *          server.on('upgrade', (req, socket, head) => hub.upgrade(req, socket, head));
 */
import { createContextHub } from '../../core/context/hub';
import {
  type BrumeError,
  InputError,
  ProtocolError,
  toWire,
  UnavailableError,
} from '../../core/errors';
import type { Manifest } from '../../core/manifest';
import { MAX_LEASE_MS, type ToNode, type ToRelay } from '../../core/protocol';
import type { Qos } from '../../core/scheduler';
import type { RelayContext } from '../context';
import { defaultLimits, type HubLimits } from '../limits';
import { createMetrics, type RelayMetrics } from '../metrics';
import type { Outcome } from '../verify';
import { type HubCluster, peerKeyOf, singleRelay } from './cluster';
import { type Conn, closeCodes, createConnections } from './connections';
import { type DecideArgs, decide as place } from './decide';
import { createExitTally } from './exits';
import { type Call, type CallAnswer, createForwarding, type Reply } from './forwarding';
import { createHonesty } from './honesty';
import { createJoin } from './join';
import { createLeases } from './leases';
import type { LogStore } from './log-store';
import { createLogs, type HubLog } from './logs';
import { createPipelines } from './pipelines';
import { createRegistry } from './registry';
import { createRelays, listRelays } from './relays';
import { createSessions } from './sessions';

export type { Route } from './decide';
export type { Call, CallAnswer, Reply } from './forwarding';

export interface HubOptions {
  relayId: string;
  /**
   * The manifest of an app a call runs, for variants and their figures: the current one, or the
   * version `range` (a call's `qos.version`) picks (relay/apps.ts `resolve`).
   */
  manifest(app: string, range?: string): Promise<Manifest | undefined>;
  /** Is this public key (base64url SPKI) on the trust list? */
  trusted(publicKey: string): boolean;
  /** Origins allowed to open a socket; requests with no Origin (non-browser nodes) are allowed. */
  origins: (origin: string) => boolean;
  maxFrameBytes?: number;
  heartbeatMs?: number;
  /** Silence after which a node is evicted; default 3 heartbeats. */
  evictAfterMs?: number;
  /** Frames per second a connection may send, with a burst of twice that. */
  frameRate?: number;
  /** How long a forwarded call may take before the caller is told. */
  callTimeoutMs?: number;
  /** The context store nodes sync with. */
  context?: RelayContext;
  /** Bounds on calls, bytes, sockets and join time (relay/limits.ts has the defaults). */
  limits?: Partial<HubLimits>;
  /** Fraction (0–1) of calls on untrusted nodes also run on a second node and compared. */
  verifyFraction?: number;
  /** Nodes kept in quarantine at most (the oldest is released when full). Default 1000. */
  maxQuarantined?: number;
  /**
   * How long a decision lease lasts (PROTOCOL.md §5.3.2): 0 grants none; default and most, the
   * heartbeat period, so every lease is decided again at least once per heartbeat.
   */
  leaseMs?: number;
  /** Leases one node holds at most (default 256) and leases in all (default 65,536). */
  maxLeases?: { perNode?: number; total?: number };
  log: HubLog;
  /** Where the hub counts what it does (relay/metrics.ts); default a registry of its own. */
  metrics?: RelayMetrics;
  /**
   * The other relays sharing this one's Redis (relay/cluster/nodes.ts `redisCluster`): their
   * nodes are placed on and reached through them. Default: this relay alone.
   */
  cluster?: HubCluster;
  /**
   * Where decisions, calls and events are kept (relay/cluster/logs.ts `redisLogs` in a cluster:
   * every relay shows the cluster's). Default: this relay's memory (log-store.ts `memoryLogs`).
   */
  logs?: LogStore;
}

export function createHub(options: HubOptions) {
  const heartbeatMs = options.heartbeatMs ?? 2000;
  const limits: HubLimits = { ...defaultLimits, ...options.limits };
  const metrics = options.metrics ?? createMetrics();
  const logs = createLogs(options.log, metrics, options.logs);
  const { event } = logs;
  const leaseMs = options.leaseMs ?? Math.min(heartbeatMs, MAX_LEASE_MS);
  if (leaseMs > heartbeatMs)
    throw new InputError(
      `leaseMs must be at most the heartbeat period (${heartbeatMs} ms), got ${leaseMs}`,
    );
  /** Sends to a joined node by id; nothing when it is not (it left). */
  const sendTo = (node: string, frame: ToNode) => {
    const conn = registry.get(node)?.link;
    if (conn) sockets.send(conn, frame);
  };
  const cluster = options.cluster ?? singleRelay;
  /** Set by `drain`: new schedules and calls are refused, those in flight finish. */
  let draining: { ms: number; idle?: () => void } | undefined;
  /** Calls accepted and not answered yet (from nodes and HTTP), each with a way to fail it. */
  const inFlight = new Set<(error: BrumeError) => void>();
  const drainRefusal = () =>
    new UnavailableError('the relay is shutting down (draining): retry once it is back');
  /** `reply`, answered once, counted in flight until then: a drain waits for it. */
  function tracked<A extends { value: unknown; node: string }>(
    reply: (answer: Outcome<A>) => void,
  ): (answer: Outcome<A>) => void {
    let done = false;
    const settle = (answer: Outcome<A>) => {
      if (done) return;
      done = true;
      inFlight.delete(fail);
      reply(answer);
      if (inFlight.size === 0) draining?.idle?.();
    };
    const fail = (error: BrumeError) => settle({ ok: false, error });
    inFlight.add(fail);
    return settle;
  }
  /** Closes and forgets a node's socket: its calls run elsewhere. */
  const remove = (conn: Conn, reason: string) => {
    sockets.close(conn, closeCodes.policy, reason);
    sockets.drop(conn);
  };

  const exits = createExitTally({ manifest: (app) => options.manifest(app) });
  const registry = createRegistry<Conn>({
    send: sendTo,
    trusted: options.trusted,
    event,
    revoke: (node, reason) => {
      const conn = registry.get(node)?.link;
      if (conn) remove(conn, reason);
    },
  });
  // Every manifest read for a call names its app's label values (relay/metrics.ts).
  const manifest = (app: string, range?: string) =>
    options.manifest(app, range).then(metrics.deployed);
  const decide = (...args: DecideArgs) =>
    metrics.decision(
      place({ manifest, nodes: registry.placement, logged: logs.decision }, ...args),
    );

  // Honest placement: the relay's own timings, and answers checked by redundant execution.
  const honesty = createHonesty({
    ...(options.verifyFraction !== undefined && { verifyFraction: options.verifyFraction }),
    ...(options.maxQuarantined !== undefined && { maxQuarantined: options.maxQuarantined }),
    node: (id) => registry.get(id)?.record,
    event(kind, detail, node) {
      event(kind, detail, node);
      // A quarantined node is placed no more: neither by a lease.
      if (kind === 'quarantined' && node) leases.revoke(node, 'the node was quarantined');
    },
  });
  const { meter, quarantine, verifier } = honesty;

  const leases = createLeases({
    ms: leaseMs,
    ...options.maxLeases,
    send: sendTo,
  });

  const forwarding = createForwarding({
    limits,
    callTimeoutMs: options.callTimeoutMs ?? 30_000,
    manifest,
    node: registry.record,
    nodes: registry.records,
    buffered: (id) => registry.get(id)?.link.ws.bufferedAmount ?? 0,
    send: (node, frame) => relays.sendCall(node, frame),
    decide,
    meter,
    verifier,
    metrics,
  });

  const pipelines = createPipelines({
    manifest,
    nodes: registry.records,
    forward: forwarding.forward,
    maxPerCaller: limits.callsPerNode,
    log: (line) => options.log.info(line),
  });
  /** A call to a pipeline runs the executor here; any other is forwarded to a node. */
  const route = pipelines.route;

  const context = createContextHub({
    store: options.context,
    send: sendTo,
    sendMany: (nodes, frame) =>
      sockets.sendMany(
        nodes.flatMap((id) => registry.get(id)?.link ?? []),
        frame,
      ),
    peer: registry.get,
    peers: registry.entries,
    published: metrics.fanout,
  });

  const join = createJoin({
    relayId: options.relayId,
    heartbeatMs,
    trusted: options.trusted,
    ...(options.context && { context: options.context }),
    event,
    send: (conn, frame) => sockets.send(conn, frame),
    replace(id) {
      const previous = registry.get(id);
      if (previous) remove(previous.link, 'replaced by a newer connection of this node');
      relays.joining(id);
    },
    measured: (id) => meter.of(id),
    quarantined: (id) => quarantine.has(id),
    enter(record, conn) {
      if (options.cluster) record.relay = options.relayId;
      const { entry, parent } = registry.add(record, conn);
      if (options.cluster) record.peerKey = peerKeyOf(entry.peerToken);
      cluster.joined(record);
      return { peerToken: entry.peerToken, ...(parent && { parent }) };
    },
  });

  const sockets = createConnections({
    limits,
    maxFrameBytes: options.maxFrameBytes ?? 16 * 1024 * 1024,
    heartbeatMs,
    evictAfterMs: options.evictAfterMs ?? 3 * heartbeatMs,
    frameRate: options.frameRate ?? 500,
    origins: options.origins,
    event,
    bytes: metrics.bytes,
    joined: registry.entries,
    greet: join.greet,
    onFrame: (conn, msg) => (conn.node ? joined(conn, msg) : join.joining(conn, msg)),
    // A busy node answers as fast as it is asked: its answers and pongs are not rate limited.
    answersRelay(conn, msg) {
      if (msg.t === 'pong') return conn.pingAt !== undefined && msg.ts === conn.pingAt;
      if (msg.t !== 'result' && msg.t !== 'error') return false;
      return conn.node !== undefined && forwarding.waitsOn(msg.id, conn.node.id);
    },
    failCall: forwarding.fail,
    onDrop(conn) {
      if (!conn.node || !registry.remove(conn.node.id, conn)) return;
      cluster.left(conn.node.id);
      leases.left(conn.node.id);
      forwarding.moveFrom(conn.node.id);
      sessions.lost(conn.node.id);
    },
  });

  // Sessions and the gauges keep to this relay's nodes: sessions are not run across relays.
  const sessions = createSessions({
    limits,
    periodMs: heartbeatMs,
    nodes: registry.local,
    node: (id) => registry.get(id)?.record,
    manifest,
    send: sendTo,
    stateBytes: (app, key) => {
      const read = options.context?.replica.get(app, key, {}, Date.now());
      return read?.value?.byteLength ?? read?.sealed?.byteLength;
    },
    warn: (fields, message) => options.log.warn(fields, message),
  });

  metrics.watch({
    nodes: registry.local,
    quarantined: () => quarantine.list().length,
    leases: leases.stats,
    contextLogBytes: () => options.context?.files().log ?? 0,
  });

  const relays = createRelays({
    relayId: options.relayId,
    cluster,
    heartbeatMs,
    registry,
    forwarding: () => forwarding,
    sendTo,
    tracked,
    metrics,
    warn: (fields, message) => options.log.warn(fields, message),
  });

  /** A frame from a joined node, by type. */
  async function joined(conn: Conn, msg: ToRelay): Promise<void> {
    const node = conn.node!;
    switch (msg.t) {
      case 'heartbeat':
        exits.report(node, msg.exits);
        registry.heartbeat(node, msg);
        sessions.review(node.id);
        return leases.heartbeat(node);
      case 'pong':
        if (conn.pingAt !== undefined && msg.ts === conn.pingAt) {
          // The least of the last few pings: a busy moment in the tab is not network distance.
          conn.rtts = [...(conn.rtts ?? []), performance.now() - msg.ts].slice(-5);
          node.rttMs = Math.min(...conn.rtts);
        }
        return;
      case 'schedule':
        if (draining)
          return sockets.send(conn, { t: 'error', id: msg.id, error: toWire(drainRefusal()) });
        try {
          const { app, service, qos, exclude = [], rpc = '' } = msg;
          const r = await decide(app, service, qos, node.id, exclude, rpc);
          if (msg.traceId) {
            const fields = { trace: msg.traceId, app, service, caller: node.id, node: r.node };
            options.log.info(fields, 'call placed');
          }
          if (r.node !== node.id) registry.watch(r.node, node.id);
          // The node chosen may have left while the manifest was read: no lease on it then.
          const chosen = registry.get(r.node)?.record;
          const lease =
            msg.lease && chosen && registry.get(node.id)?.link === conn
              ? leases.grant(node.id, { app, service, rpc, qos, exclude }, chosen)
              : undefined;
          sockets.send(conn, { t: 'decision', id: msg.id, ...r, ...(lease && { lease }) });
        } catch (e) {
          sockets.send(conn, { t: 'error', id: msg.id, error: toWire(e) });
        }
        return;
      case 'call': {
        const { id, to, t: _, ...fields } = msg;
        if (draining) return sockets.send(conn, { t: 'error', id, error: toWire(drainRefusal()) });
        const call = { ...fields, caller: node.id, target: to };
        return route(
          call,
          tracked(
            logs.logged(
              call,
              (r) => {
                if (!r.ok) return sockets.send(conn, { t: 'error', id, error: toWire(r.error) });
                const { ok: __, ...answer } = r;
                sockets.send(conn, { t: 'result', id, ...answer });
              },
              { call: id, caller: node.id },
            ),
          ),
        );
      }
      case 'ctx-op':
      case 'ctx-sync':
      case 'ctx-unsent':
      case 'ctx-keys':
      case 'ctx-check': {
        // Context is answered by node id: a connection a newer one replaced has no say.
        const peer = registry.get(node.id);
        return peer?.link === conn ? context.receive(peer, msg) : undefined;
      }
      case 'result':
      case 'error':
        return forwarding.answer(node, msg);
      case 'session-open':
        try {
          if (draining) throw drainRefusal();
          sockets.send(conn, { t: 'session', id: msg.id, session: await sessions.open(node, msg) });
        } catch (e) {
          sockets.send(conn, { t: 'error', id: msg.id, error: toWire(e) });
        }
        return;
      case 'session-close':
        return sessions.close(node.id, msg.session);
      case 'session-leave':
        return sessions.leave(node.id, msg.on, msg.reason);
      default:
        throw new ProtocolError(`"${msg.t}" after joining`);
    }
  }

  return {
    upgrade: sockets.upgrade,
    /** Joins a node in this process over a local link (relay/local-link.ts), as a socket would. */
    attach: sockets.attach,
    /**
     * Joined the cluster (at once for a lone relay); rejects when it may not (the most relays
     * are there already).
     */
    started: relays.started,
    /** Nodes as the scheduler sees them: the whole cluster's, each with its `relay` in one. */
    nodes: () => [...registry.records()],
    /** The cluster's relays with their nodes, and Redis from here (GET /api/relays). */
    relays: () => listRelays(options.relayId, cluster, registry.records()),
    /** Whether node `id`'s socket is on this relay (not another of the cluster). */
    joinedHere: (id: string) => registry.get(id) !== undefined,
    /**
     * An app's current version changed (a deploy, a rollback): every joined node is told, and
     * runs calls that start from then on on that version (PROTOCOL.md §5.7).
     */
    announce(name: string, version: string): void {
      const links = [...registry.entries()].map((e) => e.link);
      sockets.sendMany(links, { t: 'app', name, version });
      if (links.length > 0)
        options.log.info(`${name}@${version} is current: told ${links.length} nodes`);
    },
    decisions: logs.decisions,
    /** Sessions open now and the last migrations (PROTOCOL.md §5.9). */
    sessions: { list: sessions.list, migrations: sessions.migrations, leaving: sessions.leaving },
    calls: logs.calls,
    events: logs.events,
    /** What GET /api/decisions, /api/calls, /api/events show: the cluster's in a cluster. */
    logs: logs.list,
    decide,
    /** Decision leases held now, and granted, revoked and refused (the table full) since start. */
    leases: leases.stats,
    /** Quarantined nodes with their evidence, newest first. */
    quarantined: () => quarantine.list(),
    /** Lets a quarantined node be placed again; false when it was not quarantined. */
    release: honesty.release,
    /**
     * A call from an HTTP client: placed here, run on a node, answered once. `ref` names it in
     * the log (the request's `reqId`).
     */
    call(
      app: string,
      service: string,
      input: unknown,
      qos: Qos,
      rpc = '',
      traceId?: string,
      ref: Record<string, unknown> = {},
    ) {
      const call = { app, service, rpc, input, qos, caller: '', target: '', traceId };
      return new Promise<CallAnswer>((resolve, reject) => {
        if (draining) return reject(drainRefusal());
        route(
          call,
          tracked(
            logs.logged(
              call,
              (r) => {
                if (!r.ok) return reject(r.error);
                const { ok: _, ...answer } = r;
                resolve(answer);
              },
              ref,
            ),
          ),
        );
      });
    },
    /**
     * A job's run (relay/jobs/): `call` on its `target` only (`stay`), answered once by `reply`;
     * a node lost mid-run answers E_DISCONNECTED, and the job decides where it runs next.
     */
    runOn(call: Call, reply: Reply, ref: Record<string, unknown> = {}): void {
      if (draining) reply({ ok: false, error: drainRefusal() });
      else forwarding.forward({ ...call, stay: true }, logs.logged(call, reply, ref));
    },
    /** Calls the relay forwarded to node `id` and waits on (HTTP calls, node calls, jobs). */
    forwardedTo: (id: string) => forwarding.running(id),
    /** Whether a drain began: HTTP calls are refused (503, Retry-After) as node calls are. */
    draining: () => draining !== undefined,
    /**
     * Graceful shutdown (PROTOCOL.md §5.6): refuses new schedules and calls, tells every node,
     * waits for the calls in flight up to `ms`, then fails those still running with
     * E_UNAVAILABLE (their callers may retry). Answers how many were in flight and failed.
     */
    async drain(ms: number): Promise<{ inFlight: number; failed: number }> {
      draining = { ms };
      for (const n of registry.records()) sendTo(n.id, { t: 'drain', ms });
      const inFlightAtStart = inFlight.size;
      if (inFlight.size > 0) {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, ms);
          draining!.idle = () => {
            clearTimeout(timer);
            resolve();
          };
        });
      }
      const late = [...inFlight];
      const why = `the relay shut down before this call was answered (drain deadline ${ms} ms): retry it once the relay is back`;
      for (const fail of late) fail(new UnavailableError(why));
      return { inFlight: inFlightAtStart, failed: late.length };
    },
    publish: context.publish,
    /** Exits per tier: runs of model services with an exit head, by the role that ran them. */
    exits: exits.list,
    /** What the relay holds now, against its limits: calls in flight, their bytes, node sockets. */
    load: () => ({ ...forwarding.load(), sockets: sockets.sockets() }),
    /** Context changes sent straight to nodes, through fogs, and sent again for a fog. */
    fanout: context.fanout,
    /**
     * Whether `token` is what this relay gave node `id` for the PeerJS server, or (a node of
     * another relay of the cluster) what its relay did.
     */
    peerTokenOk: (id: string, token: string): boolean =>
      registry.peerTokenOk(id, token) ||
      (registry.isRemote(id) && registry.record(id)?.peerKey === peerKeyOf(token)),
    /** PeerJS messages to and from the other relays of the cluster (relay/peer-signal.ts). */
    signals: relays.signals,
    /**
     * Re-reads trust for every connected node (after the trust list changed): a revoked cloud
     * node is disconnected, a revoked fog's dews are given another parent (or none), and a fog
     * trusted now adopts the dews that have none.
     */
    retrust(): void {
      const trusted = registry.records().filter((n) => n.trusted);
      registry.retrust();
      // A lease must not outlive the trust a privacy key pin was placed on.
      for (const n of trusted) if (!n.trusted) leases.revoke(n.id, 'trust revoked');
    },
    /** Closes every socket and leaves the cluster (the other relays drop its nodes at once). */
    async close(): Promise<void> {
      sockets.shutdown();
      forwarding.close();
      await cluster.close();
    },
  };
}

export type Hub = ReturnType<typeof createHub>;
