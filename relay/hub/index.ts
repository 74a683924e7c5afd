/**
 * The relay's WebSocket hub: nodes join by challenge–response, report load and statistics by
 * heartbeat, ask for scheduling decisions, and reach each other through it when no data channel
 * can be opened. A node that stops answering is evicted and its forwarded calls run elsewhere.
 * @example const hub = createHub({ relayId, manifests, trust, log });
 *          server.on('upgrade', (req, socket, head) => hub.upgrade(req, socket, head));
 */
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { type WebSocket, WebSocketServer } from 'ws';
import type { CallRecord, ContextFanout, DecisionRecord, HubEvent, NodeRecord } from '../core/api';
import { type ContextOp, catchUpFor, viewFor } from '../core/context/replica';
import {
  BrumeError,
  fromWire,
  InputError,
  InternalError,
  NotFoundError,
  ProtocolError,
  TimeoutError,
  UnavailableError,
  toWire as wireError,
} from '../core/errors';
import { NonceBook, nodeIdOf, verifyAgreement, verifyJoin } from '../core/identity';
import type { Manifest } from '../core/manifest';
import { place } from '../core/placement';
import {
  decodeFrame,
  PROTOCOL_VERSION,
  type Role,
  type ToNode,
  type ToRelay,
} from '../core/protocol';
import type { Qos } from '../core/scheduler';
import type { RelayContext } from './context';
import {
  Admission,
  askRefusal,
  CallTable,
  callRefusal,
  defaultLimits,
  type HubLimits,
  sizeOf,
} from './limits';
import { type CallShape, createMeter, shapeOf } from './measure';
import { closeReason, encodeOutgoing } from './outgoing';
import { originError, refuseUpgrade } from './upgrade';
import { createQuarantine, createVerifier } from './verify';

export interface HubOptions {
  relayId: string;
  /** The current manifest of an app, for variants and their figures. */
  manifest(app: string): Promise<Manifest | undefined>;
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
  log: { info(m: string): void; warn(m: string): void };
}

/** Where a request goes: the node, the rpc to call there and the model variants it must use. */
export interface Route {
  node: string;
  rpc: string;
  pin?: Record<string, string>;
  /** The model variant that decided accuracy ('' when no model is involved). */
  variant: string;
  estimateMs: number;
  reason: string;
}

export interface CallAnswer {
  value: unknown;
  rpc: string;
  ms: number;
  node: string;
  trace?: Extract<ToNode, { t: 'result' }>['trace'];
}

interface Conn {
  ws: WebSocket;
  node?: NodeRecord;
  nonce?: Uint8Array;
  hello?: Extract<ToRelay, { t: 'hello' }>;
  tokens: number;
  refill: number;
  /** The context log position last sent to this node. */
  ctxSent?: number;
  /** The apps whose context this node keeps: null all, undefined none (no ctx-sync yet). */
  ctxApps?: Set<string> | null;
  /** Recent ping round trips, newest last. */
  rtts?: number[];
  pingAt?: number;
  /** Closes a socket that has not joined in time. */
  joinTimer?: ReturnType<typeof setTimeout>;
  /** Since when (ms) its send buffer has been over the cap, at the sweeps that saw it. */
  overSince?: number;
  /** Counts this socket out of its address's share. */
  release?: () => void;
}

interface Forward {
  /** Who asked: a connection and its call id, or an HTTP caller's promise. */
  reply(answer: ({ ok: true } & CallAnswer) | { ok: false; error: BrumeError }): void;
  app: string;
  service: string;
  rpc: string;
  pin?: Record<string, string>;
  input: unknown;
  qos: Qos;
  caller: string;
  target: string;
  tried: string[];
  timer: ReturnType<typeof setTimeout>;
  /** About what its input takes in memory, held until it is answered (relay/limits.ts). */
  bytes: number;
  /** One run of a checked call (relay/verify.ts): never checked again itself. */
  leg?: boolean;
  /** When it was sent, and what it is, for the relay's own timing (relay/measure.ts). */
  sentAt: number;
  shape?: CallShape;
}

const closeCodes = { protocol: 1008, tooBig: 1009, policy: 1008, going: 1001 };

export function createHub(options: HubOptions) {
  const heartbeatMs = options.heartbeatMs ?? 2000;
  const evictAfterMs = options.evictAfterMs ?? 3 * heartbeatMs;
  const frameRate = options.frameRate ?? 500;
  const callTimeoutMs = options.callTimeoutMs ?? 30_000;
  const limits: HubLimits = { ...defaultLimits, ...options.limits };
  const admission = new Admission(limits);
  const verifyFraction = options.verifyFraction ?? 0;
  if (!(verifyFraction >= 0 && verifyFraction <= 1))
    throw new InputError(`verifyFraction must be from 0 to 1, got ${verifyFraction}`);
  const maxQuarantined = options.maxQuarantined ?? 1000;
  if (!(Number.isInteger(maxQuarantined) && maxQuarantined >= 1))
    throw new InputError(
      `maxQuarantined must be a whole number of at least 1, got ${maxQuarantined}`,
    );
  const nonces = new NonceBook();
  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: options.maxFrameBytes ?? 16 * 1024 * 1024,
  });
  const conns = new Set<Conn>();
  const nodes = new Map<string, { record: NodeRecord; conn: Conn; peerToken: string }>();
  // Counts calls per node and their bytes as they come and go (relay/limits.ts).
  const forwards = new CallTable<Forward>();
  const decisions: DecisionRecord[] = [];
  const calls: CallRecord[] = [];
  const events: HubEvent[] = [];
  let nextId = 1;
  // Honest placement: the relay's own timings, and answers checked by redundant execution.
  const meter = createMeter();
  const quarantine = createQuarantine({
    max: maxQuarantined,
    onEvict(id) {
      const n = nodes.get(id);
      if (n) n.record.quarantined = false;
    },
  });
  const verifier = createVerifier({
    fraction: verifyFraction,
    book: quarantine,
    trusted: (id) => nodes.get(id)?.record.trusted === true,
    onQuarantine(e) {
      const n = nodes.get(e.node);
      if (n) n.record.quarantined = true;
      const by = e.by === 'trusted' ? 'trusted node' : 'majority of three';
      event(
        'quarantined',
        `${e.app}/${e.service} answered ${e.where}; ${by} ${e.other.slice(0, 8)} disagreed`,
        e.node,
      );
    },
    onUnresolved: (detail) => event('disagreed', detail),
  });

  // Bounded logs: the newest `max` entries, dropped a tenth at a time (not one shift per entry).
  const remember = <T>(list: T[], item: T, max = 1000) => {
    list.push(item);
    if (list.length > max + max / 10) list.splice(0, list.length - max);
  };
  const event = (kind: HubEvent['kind'], detail: string, node?: string) => {
    remember(events, { at: Date.now(), kind, detail, ...(node ? { node } : {}) });
    (kind === 'refused' || kind === 'evicted' || kind === 'quarantined'
      ? options.log.warn
      : options.log.info)(`${kind}${node ? ` ${node.slice(0, 8)}` : ''}: ${detail}`);
  };
  /** Sends a frame; one the relay cannot encode is answered to whoever waits on it instead. */
  function send(conn: Conn, frame: ToNode): void {
    if (conn.ws.readyState !== conn.ws.OPEN) return;
    let bytes: Uint8Array;
    try {
      bytes = encodeOutgoing(frame);
    } catch (e) {
      unsendable(conn, frame, e as BrumeError);
      return;
    }
    conn.ws.send(bytes);
  }
  /**
   * A frame that cannot be sent (a value MessagePack cannot carry, or over the frame limit):
   * a call's caller gets the error, a reply becomes an error to the same id, and a frame no one
   * answers closes the connection with the reason, so nothing waits on silence.
   */
  function unsendable(conn: Conn, frame: ToNode, error: BrumeError): void {
    event('refused', `a "${frame.t}" frame to this node: ${error.message}`, conn.node?.id);
    const id = (frame as { id?: unknown }).id;
    const f = frame.t === 'call' ? forwards.get(frame.id) : undefined;
    if (f) {
      forwards.delete(id as number);
      clearTimeout(f.timer);
      f.reply({ ok: false, error });
    } else if (typeof id === 'number' && frame.t !== 'error' && frame.t !== 'call') {
      send(conn, { t: 'error', id, error: wireError(error) });
    } else {
      close(conn, closeCodes.tooBig, error.message);
    }
  }
  const close = (conn: Conn, code: number, reason: string) => {
    conn.ws.close(code, closeReason(reason));
  };

  // Liveness: ping for RTT; evict the silent.
  const sweep = setInterval(() => {
    const now = Date.now();
    for (const { record, conn } of nodes.values()) {
      if (now - record.lastSeen > evictAfterMs) {
        event('evicted', `no heartbeat for ${now - record.lastSeen} ms`, record.id);
        conn.ws.terminate();
        drop(conn);
      } else if (!slowReader(conn, now)) {
        conn.pingAt = performance.now();
        send(conn, { t: 'ping', ts: conn.pingAt });
      }
    }
  }, heartbeatMs);

  /**
   * Closes a node whose send buffer was over the cap at two sweeps in a row: it stopped reading,
   * and what the relay queues for it would grow without end. Its calls run elsewhere.
   */
  function slowReader(conn: Conn, now: number): boolean {
    const buffered = conn.ws.bufferedAmount;
    if (buffered <= limits.nodeBufferedBytes) {
      conn.overSince = undefined;
      return false;
    }
    if (conn.overSince === undefined) {
      conn.overSince = now;
      return false;
    }
    const reason = `${buffered} bytes unread for ${now - conn.overSince} ms (limit ${limits.nodeBufferedBytes})`;
    event('closed', reason, conn.node?.id);
    close(conn, closeCodes.policy, reason);
    // The close frame waits behind what it does not read: its buffer is let go, not flushed.
    setTimeout(() => conn.ws.terminate(), 1000).unref();
    drop(conn);
    return true;
  }
  sweep.unref();

  function upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const origin = req.headers.origin;
    if (origin !== undefined && !options.origins(origin)) {
      const error = originError(origin);
      event('refused', error.message);
      refuseUpgrade(socket, error);
      return;
    }
    const refused = admission.refusal(req);
    if (refused) {
      event('refused', refused.message);
      refuseUpgrade(socket, refused);
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => accept(ws, admission.admit(req)));
  }

  function accept(ws: WebSocket, release?: () => void): void {
    const conn: Conn = { ws, tokens: 2 * frameRate, refill: performance.now(), release };
    conns.add(conn);
    conn.joinTimer = setTimeout(() => {
      const reason = `no join within ${limits.joinTimeoutMs} ms`;
      event('closed', reason);
      close(conn, closeCodes.policy, reason);
      // One that does not answer the close handshake either is cut off.
      setTimeout(() => ws.terminate(), 1000).unref();
    }, limits.joinTimeoutMs);
    conn.joinTimer.unref();
    conn.nonce = nonces.issue();
    send(conn, {
      t: 'challenge',
      v: PROTOCOL_VERSION,
      nonce: conn.nonce,
      relayId: options.relayId,
    });
    ws.on('message', (data, isBinary) => {
      void onFrame(conn, data as Buffer, isBinary).catch((e: unknown) => {
        const reason =
          e instanceof BrumeError ? e.message : `internal error: ${(e as Error).message}`;
        event('closed', reason, conn.node?.id);
        close(conn, closeCodes.protocol, reason);
      });
    });
    ws.on('error', (e) => {
      // ws reports oversized frames here and closes with 1009.
      event('closed', e.message, conn.node?.id);
    });
    ws.on('close', () => drop(conn));
  }

  function rateLimited(conn: Conn): boolean {
    const now = performance.now();
    conn.tokens = Math.min(2 * frameRate, conn.tokens + ((now - conn.refill) / 1000) * frameRate);
    conn.refill = now;
    if (conn.tokens < 1) return true;
    conn.tokens--;
    return false;
  }

  /**
   * Whether a frame answers work this relay gave the node: a result or error for a call it was
   * sent, a pong to the last ping. Those are not counted against its frame rate: a busy node
   * answers as fast as it is asked, and the relay must not close it for doing so.
   */
  function answersRelay(conn: Conn, msg: ToRelay): boolean {
    if (msg.t === 'pong') return conn.pingAt !== undefined && msg.ts === conn.pingAt;
    if (msg.t !== 'result' && msg.t !== 'error') return false;
    const f = msg.id === undefined ? undefined : forwards.get(msg.id);
    return f !== undefined && conn.node !== undefined && f.target === conn.node.id;
  }

  async function onFrame(conn: Conn, data: Buffer, isBinary: boolean): Promise<void> {
    if (!isBinary)
      throw new ProtocolError('text frames are not part of the protocol: send MessagePack');
    const msg = decodeFrame(
      new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
      'toRelay',
    );
    if (!answersRelay(conn, msg) && rateLimited(conn))
      throw new ProtocolError(`more than ${frameRate} frames per second`);
    if (conn.node) conn.node.lastSeen = Date.now();
    if (!conn.node) return joining(conn, msg);
    const node = conn.node;
    switch (msg.t) {
      case 'heartbeat':
        node.queue = msg.load.queue;
        node.maxConcurrency = msg.load.maxConcurrency;
        node.apps = msg.apps;
        node.models = msg.models;
        node.stats = msg.stats;
        node.paused = msg.paused;
        if (msg.context) node.context = msg.context;
        if (node.role === 'fog') node.links = msg.links ?? [];
        if (msg.caps) {
          node.caps = msg.caps;
          node.backends = msg.caps.backends.map((b) => b.name);
        }
        return;
      case 'pong':
        if (conn.pingAt !== undefined && msg.ts === conn.pingAt) {
          // The least of the last few pings: a busy moment in the tab is not network distance.
          conn.rtts = [...(conn.rtts ?? []), performance.now() - msg.ts].slice(-5);
          node.rttMs = Math.min(...conn.rtts);
        }
        return;
      case 'schedule': {
        try {
          const r = await decide(msg.app, msg.service, msg.qos, node.id, msg.exclude, msg.rpc);
          if (r.node !== node.id) watch(r.node, node.id);
          send(conn, { t: 'decision', id: msg.id, ...r });
        } catch (e) {
          send(conn, { t: 'error', id: msg.id, error: wireError(e) });
        }
        return;
      }
      case 'call': {
        forward(
          {
            app: msg.app,
            service: msg.service,
            rpc: msg.rpc,
            ...(msg.pin ? { pin: msg.pin } : {}),
            input: msg.input,
            qos: msg.qos,
            caller: node.id,
            target: msg.to,
          },
          logged(msg.app, msg.service, (r) => {
            if (!r.ok) return send(conn, { t: 'error', id: msg.id, error: wireError(r.error) });
            const { ok: _, ...answer } = r;
            send(conn, { t: 'result', id: msg.id, ...answer });
          }),
        );
        return;
      }
      case 'ctx-op': {
        const ctx = options.context;
        if (!ctx) throw new ProtocolError('this relay keeps no context store');
        try {
          const seq = await ctx.accept(msg.op, node.id);
          send(conn, { t: 'ctx-ack', opId: msg.op.opId });
          if (seq) publish(msg.op, seq);
        } catch (e) {
          send(conn, { t: 'ctx-nack', opId: msg.op.opId, error: wireError(e) });
        }
        return;
      }
      case 'ctx-sync': {
        const ctx = options.context;
        if (!ctx) throw new ProtocolError('this relay keeps no context store');
        conn.ctxApps = msg.apps ? new Set(msg.apps) : null;
        // In parts under the frame budget, sent back to back: no change comes between them.
        const parts = catchUpFor(ctx.replica, msg, (op) => view(op, conn), ctx.catchUpBytes);
        conn.ctxSent = parts[0]!.cursor;
        for (const part of parts) send(conn, { t: 'ctx-catchup', ...part });
        return;
      }
      case 'ctx-unsent': {
        // A fog could not pass a change on: the relay sends it to those of its children itself.
        const op = options.context?.replica.at(msg.seq);
        for (const t of msg.to) {
          const child = nodes.get(t.node);
          if (!child || child.record.parent !== node.id) continue;
          fanout.unsent++;
          // Gone from the log: the child's next change shows a gap and it catches up.
          const v = op && view(op, child.conn);
          if (v) send(child.conn, { t: 'ctx-op', prev: t.prev, seq: msg.seq, op: v });
        }
        return;
      }
      case 'ctx-keys': {
        const ctx = options.context;
        if (!ctx) throw new ProtocolError('this relay keeps no context store');
        send(conn, { t: 'ctx-keys', id: msg.id, found: ctx.agreements(msg.keys) });
        return;
      }
      case 'result':
      case 'error': {
        const f = forwards.get(msg.id);
        // A late answer from an attempt already moved elsewhere, or from a node not asked: dropped.
        if (!f || f.target !== node.id) return;
        forwards.delete(msg.id);
        clearTimeout(f.timer);
        if (msg.t === 'result') {
          if (f.shape) {
            meter.answered(node, f.shape, performance.now() - f.sentAt - node.rttMs);
            node.measured = meter.of(node.id);
          }
          const { t: _, id: __, ...answer } = msg;
          f.reply({ ok: true, ...answer, node: node.id });
        } else if (msg.error.code === 'E_UNAVAILABLE') {
          refused(f, node.id, fromWire(msg.error));
        } else f.reply({ ok: false, error: fromWire(msg.error) }); // keeps constraint, best
        return;
      }
      default:
        throw new ProtocolError(`"${msg.t}" after joining`);
    }
  }

  async function joining(conn: Conn, msg: ToRelay): Promise<void> {
    if (msg.t === 'hello' && !conn.hello) {
      if (msg.v !== PROTOCOL_VERSION) {
        throw new ProtocolError(
          `protocol version ${msg.v} is not supported (this relay speaks ${PROTOCOL_VERSION})`,
        );
      }
      conn.hello = msg;
      return;
    }
    if (msg.t !== 'join' || !conn.hello || !conn.nonce)
      throw new ProtocolError('join first: send hello, then join');
    const { hello } = conn;
    const nonce = conn.nonce;
    conn.nonce = undefined; // one attempt per connection
    const sameNonce =
      nonce.length === msg.nonce.length && nonce.every((b, i) => b === msg.nonce[i]);
    const id = await nodeIdOf(hello.publicKey).catch(() => '');
    const valid =
      sameNonce &&
      nonces.consume(msg.nonce) &&
      id !== '' &&
      (await verifyJoin(
        hello.publicKey,
        msg.nonce,
        options.relayId,
        id,
        hello.role,
        msg.signature,
      ));
    if (!valid) {
      event(
        'refused',
        sameNonce
          ? 'join signature does not verify'
          : 'join answered a nonce this connection was not given',
      );
      throw new ProtocolError(
        'join refused: the signature does not prove this key answered this challenge',
      );
    }
    if (hello.agreement && options.context) {
      const a = hello.agreement;
      if (!(await verifyAgreement(hello.publicKey, a.agreementKey, a.signature))) {
        event('refused', 'agreement key not signed by the node key', id);
        throw new ProtocolError('join refused: the agreement key is not signed by this node key');
      }
      options.context.bind({ publicKey: hello.publicKey, ...a });
    }
    const vouched = options.trusted(hello.publicKey);
    if (hello.role === 'cloud' && !vouched) {
      event('refused', 'the cloud role needs a key on the trust list', id);
      throw new ProtocolError('join refused: the cloud role is for keys on the relay trust list');
    }
    const previous = nodes.get(id);
    if (previous) {
      // The same key again (a reload): the newer connection wins.
      close(previous.conn, closeCodes.policy, 'replaced by a newer connection of this node');
      drop(previous.conn);
    }
    const record: NodeRecord = {
      id,
      role: hello.role as Role,
      publicKey: hello.publicKey,
      // A dew's key may be listed, but trust means something for fog and cloud only.
      trusted: hello.role !== 'dew' && vouched,
      online: true,
      rttMs: 1,
      backends: hello.caps.backends.map((b) => b.name),
      queue: 0,
      maxConcurrency: 1,
      apps: [],
      models: {},
      stats: {},
      measured: meter.of(id),
      ...(quarantine.has(id) && { quarantined: true }),
      paused: false,
      caps: hello.caps,
      joinedAt: Date.now(),
      lastSeen: Date.now(),
    };
    conn.node = record;
    clearTimeout(conn.joinTimer);
    const peerToken = crypto.randomUUID();
    nodes.set(id, { record, conn, peerToken });
    recordList = undefined;
    const parent = record.role === 'dew' ? parentFor() : undefined;
    if (parent) {
      record.parent = parent;
      watch(parent, id);
    }
    if (record.role === 'fog' && record.trusted) adoptOrphans();
    send(conn, {
      t: 'welcome',
      nodeId: id,
      role: record.role,
      trusted: record.trusted,
      heartbeatMs,
      peerToken,
      ...(parent ? { parent } : {}),
    });
    event('joined', `${record.role}${record.trusted ? ' (trusted)' : ''}`, id);
  }

  /** The nodes as the scheduler sees them, rebuilt only when one joins or leaves. */
  let recordList: NodeRecord[] | undefined;
  function records(): NodeRecord[] {
    recordList ??= [...nodes.values()].map((n) => n.record);
    return recordList;
  }

  /** Nodes to tell when a node leaves: those sent to it. Bounded per node. */
  const watchers = new Map<string, Set<string>>();
  function watch(target: string, by: string): void {
    const set = watchers.get(target) ?? new Set<string>();
    watchers.set(target, set);
    if (set.size < 10_000) set.add(by);
  }

  /** What of a context change this connection's node gets: only apps it keeps (core's viewFor). */
  function view(op: ContextOp, conn: Conn): ContextOp | undefined {
    if (!conn.node || conn.ctxApps === undefined) return undefined;
    if (conn.ctxApps && !conn.ctxApps.has(op.app)) return undefined;
    return viewFor(op, conn.node);
  }

  /** How context changes left the relay: straight to a node, or through its parent fog. */
  const fanout: ContextFanout = { direct: 0, viaFog: 0, unsent: 0 };

  /**
   * Sends a context change to every node that keeps its app, numbered per node so gaps show.
   * A dew whose parent fog keeps the app and has a channel open to it gets a change the fog
   * may see (not private, not node-scoped) through the fog: one frame to the fog for all its
   * children.
   */
  function publish(op: ContextOp, seq: number): void {
    const fogs = new Map<Conn, { node: string; prev: number }[]>();
    const shareable = !op.privacy && op.scope === 'app';
    for (const { record, conn } of nodes.values()) {
      const v = view(op, conn);
      if (!v) continue;
      const prev = conn.ctxSent ?? 0;
      conn.ctxSent = seq;
      const fog = record.parent ? nodes.get(record.parent) : undefined;
      if (shareable && fog?.record.links?.includes(record.id) && view(op, fog.conn)) {
        const children = fogs.get(fog.conn) ?? [];
        children.push({ node: record.id, prev });
        fogs.set(fog.conn, children);
        fanout.viaFog++;
      } else {
        send(conn, { t: 'ctx-op', prev, seq, op: v });
        fanout.direct++;
      }
    }
    for (const [conn, to] of fogs) send(conn, { t: 'ctx-fan', seq, op, to });
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
    for (const { record, conn } of nodes.values()) {
      if (record.role !== 'dew' || record.parent !== fog) continue;
      const next = parentFor();
      if (next === fog) continue;
      if (next) {
        record.parent = next;
        watch(next, record.id);
      } else delete record.parent;
      send(conn, { t: 'parent', ...(next ? { node: next } : {}) });
    }
  }
  /** A trusted fog arrived: parentless dews get one. */
  const adoptOrphans = () => reparent(undefined);

  /** The trust list changed: a revoked cloud node is closed, a revoked fog's dews move. */
  function retrust(): void {
    for (const { record, conn } of [...nodes.values()]) {
      if (record.role === 'dew') continue;
      const was = record.trusted;
      record.trusted = options.trusted(record.publicKey);
      if (was === record.trusted) continue;
      event(
        record.trusted ? 'joined' : 'refused',
        record.trusted ? 'trusted now' : 'trust revoked',
        record.id,
      );
      if (record.role === 'cloud') {
        close(
          conn,
          closeCodes.policy,
          'trust revoked: the cloud role is for keys on the trust list',
        );
        drop(conn);
      } else if (record.trusted) adoptOrphans();
      else reparent(record.id);
    }
  }

  function drop(conn: Conn): void {
    if (!conns.delete(conn)) return;
    clearTimeout(conn.joinTimer);
    conn.release?.();
    const node = conn.node;
    if (!node || nodes.get(node.id)?.conn !== conn) return;
    nodes.delete(node.id);
    recordList = undefined;
    event('left', 'connection closed', node.id);
    // Told only to nodes that were sent to it (decisions, parenthood): a thousand nodes leaving
    // at once must not cost a million frames.
    for (const id of watchers.get(node.id) ?? []) {
      const other = nodes.get(id);
      if (other) send(other.conn, { t: 'gone', node: node.id });
    }
    watchers.delete(node.id);
    if (node.role === 'fog') reparent(node.id);
    // Work forwarded to it runs elsewhere; its late answers are dropped (forwards no longer match).
    for (const [fid, f] of forwards) {
      if (f.target !== node.id) continue;
      forwards.delete(fid);
      clearTimeout(f.timer);
      forward({ ...f, tried: [...f.tried, node.id] }, f.reply, true);
    }
  }

  /**
   * A node refused a call as busy or paused: it is placed again without that node, or the
   * refusal is the answer when no other node is there to take it.
   */
  function refused(f: Forward, by: string, e: BrumeError): void {
    const tried = [...f.tried, by];
    const others = records().some((n) => !tried.includes(n.id) && n.id !== f.caller);
    if (tried.length < 3 && others) forward({ ...f, tried }, f.reply, true);
    else f.reply({ ok: false, error: e });
  }

  /** Places a request: the node, the rpc to call there and the variants it must use. */
  async function decide(
    app: string,
    service: string,
    qos: Qos,
    caller: string,
    exclude: string[] = [],
    rpc = '',
    only: { variant?: string; trustedOnly?: boolean } = {},
  ): Promise<Route> {
    const record: DecisionRecord = {
      at: Date.now(),
      app,
      service,
      qos,
      caller,
      reason: '',
      ok: false,
    };
    try {
      const manifest = await options.manifest(app);
      const svc = manifest?.services[service];
      if (!manifest || !svc)
        throw new NotFoundError(`no service "${service}" in app "${app}" on this relay`);
      // A Logic is judged by the model service it calls, as a node judges itself (Runtime.plan).
      const modelService =
        svc.kind === 'model'
          ? service
          : Object.entries(manifest.services).find(([, s]) => s.kind === 'model')?.[0];
      const model = modelService ? manifest.services[modelService] : undefined;
      const variants =
        model?.kind === 'model'
          ? Object.entries(model.variants).map(([id, v]) => ({
              rpc: id,
              accuracy: v.accuracy,
              latencyMs: v.latencyMs,
            }))
          : [{ rpc: '', accuracy: 1, latencyMs: 1 }];
      // A check runs the variant the first run did, or the answers could not be compared.
      const allowed =
        only.variant === undefined ? variants : variants.filter((v) => v.rpc === only.variant);
      const logicRpc = svc.kind === 'logic' ? rpc || svc.rpcs[0]! : '';
      const p = place(records(), {
        app,
        service,
        ...(svc.kind === 'logic'
          ? { logic: { rpc: logicRpc, ...(modelService ? { modelService } : {}) } }
          : {}),
        variants: allowed,
        qos,
        caller,
        exclude,
        ...(only.trustedOnly && { trustedOnly: true }),
      });
      const route: Route = {
        node: p.node,
        rpc: svc.kind === 'model' ? p.rpc : logicRpc,
        ...(svc.kind === 'logic' && modelService && p.rpc
          ? { pin: { [modelService]: p.rpc } }
          : {}),
        variant: p.rpc,
        estimateMs: p.estimateMs,
        reason: p.reason,
      };
      Object.assign(record, {
        node: p.node,
        rpc: p.rpc,
        estimateMs: p.estimateMs,
        reason: p.reason,
        ok: true,
      });
      return route;
    } catch (e) {
      record.reason = (e as Error).message;
      throw e;
    } finally {
      remember(decisions, record);
    }
  }

  /** `reply`, recording the call's outcome and latency in the bounded call log. */
  function logged(app: string, service: string, reply: Forward['reply']): Forward['reply'] {
    const t0 = performance.now();
    return (answer) => {
      const model = answer.ok ? answer.trace?.find((t) => t.kind === 'model') : undefined;
      remember(calls, {
        at: Date.now(),
        app,
        service,
        variant: model?.rpc ?? (answer.ok ? answer.rpc : ''),
        node: answer.ok ? answer.node : '',
        ms: performance.now() - t0,
        ok: answer.ok,
      });
      reply(answer);
    };
  }

  /** Runs a call on `target` (or a placed node when it is ''), moving it if the node is lost. */
  function forward(
    call: Omit<Forward, 'reply' | 'timer' | 'tried' | 'bytes' | 'sentAt' | 'shape'> & {
      tried?: string[];
      bytes?: number;
    },
    reply: Forward['reply'],
    replace = false,
  ): void {
    const tried = call.tried ?? [];
    void (async () => {
      let routed = call;
      const asked = nodes.get(call.target);
      if (replace || !asked || asked.record.quarantined) {
        if (tried.length >= 3)
          throw new UnavailableError(`gave up after ${tried.length} nodes were lost`);
        // A node that sent its call elsewhere did not want to run it: not back to it either.
        const exclude = call.caller ? [...tried, call.caller] : tried;
        const r = await decide(call.app, call.service, call.qos, call.caller, exclude, call.rpc);
        routed = { ...call, target: r.node, rpc: r.rpc, ...(r.pin ? { pin: r.pin } : {}) };
      }
      const { target } = routed;
      const n = nodes.get(target)!;
      const shape = shapeOf(await options.manifest(call.app), routed, n.record.backends[0]);
      // It may have left while the manifest was read: place the call again without it.
      if (nodes.get(target) !== n)
        return forward({ ...call, tried: [...tried, target] }, reply, true);
      if (!routed.leg && verifier.wants(n.record, call.qos)) {
        return verifier.check(checked(routed, shape?.variant), reply);
      }
      // Both caps are read here, where the call is entered in `forwards` with no await between:
      // a check before the manifest read above would let a burst of calls all pass it.
      const bytes = call.bytes ?? sizeOf(call.input);
      const asker = call.caller && !replace && !routed.leg ? call.caller : '';
      const refused =
        (asker ? askRefusal(limits, forwards, asker) : undefined) ??
        callRefusal(limits, forwards, { id: target, buffered: n.conn.ws.bufferedAmount }, bytes);
      if (refused) throw refused;
      const id = nextId++;
      const timer = setTimeout(() => {
        forwards.delete(id);
        if (shape) {
          meter.timedOut(n.record, shape, callTimeoutMs);
          n.record.measured = meter.of(target);
        }
        reply({
          ok: false,
          error: new TimeoutError(
            `${target.slice(0, 8)} did not answer within ${callTimeoutMs} ms`,
          ),
        });
      }, callTimeoutMs);
      forwards.set(id, {
        ...routed,
        tried,
        reply,
        timer,
        bytes,
        sentAt: performance.now(),
        ...(shape && { shape }),
      });
      send(n.conn, {
        t: 'call',
        id,
        from: call.caller,
        app: call.app,
        service: call.service,
        rpc: routed.rpc,
        ...(routed.pin ? { pin: routed.pin } : {}),
        input: call.input,
        qos: call.qos,
      });
    })().catch((e: unknown) =>
      reply({
        ok: false,
        error: e instanceof BrumeError ? e : new InternalError(String(e)),
      }),
    );
  }

  /** A routed call as relay/verify.ts runs it: on any node, with the same rpc and variant. */
  function checked(
    routed: Omit<Forward, 'reply' | 'timer' | 'tried' | 'bytes' | 'sentAt' | 'shape'>,
    variant?: string,
  ) {
    const { latencyMs: _, verify: __, ...qos } = routed.qos;
    return {
      app: routed.app,
      service: routed.service,
      rpc: routed.rpc,
      primary: routed.target,
      caller: routed.caller,
      qos: routed.qos,
      run: (node: string) =>
        new Promise<Parameters<Forward['reply']>[0]>((resolve) =>
          forward({ ...routed, target: node, leg: true }, resolve),
        ),
      // The check need not be fast, only kept where privacy allows and on the same variant.
      pick: (exclude: string[], trustedOnly: boolean) =>
        decide(routed.app, routed.service, qos, routed.caller, exclude, routed.rpc, {
          ...(variant !== undefined && { variant }),
          trustedOnly,
        }).then(
          (r) => r.node,
          () => undefined,
        ),
    };
  }

  return {
    upgrade,
    /** Nodes as the scheduler sees them. */
    nodes: () => [...records()],
    decisions: () => decisions.slice(-1000),
    calls: () => calls.slice(-1000),
    events: () => events.slice(-1000),
    decide,
    /** Quarantined nodes with their evidence, newest first. */
    quarantined: () => quarantine.list(),
    /** Lets a quarantined node be placed again; false when it was not quarantined. */
    release(node: string): boolean {
      const had = quarantine.release(node);
      const n = nodes.get(node);
      if (had && n) n.record.quarantined = false;
      if (had) event('released', 'released from quarantine by the admin', node);
      return had;
    },
    /** A call from an HTTP client: placed here, run on a node, answered once. */
    call(app: string, service: string, input: unknown, qos: Qos, rpc = '') {
      return new Promise<CallAnswer>((resolve, reject) => {
        forward(
          { app, service, rpc, input, qos, caller: '', target: '' },
          logged(app, service, (r) => {
            if (!r.ok) return reject(r.error);
            const { ok: _, ...answer } = r;
            resolve(answer);
          }),
        );
      });
    },
    publish,
    /** What the relay holds now, against its limits: calls in flight, their bytes, node sockets. */
    load: () => ({ calls: forwards.size, callBytes: forwards.bytes, sockets: admission.total }),
    /** Context changes sent straight to nodes, through fogs, and sent again for a fog. */
    fanout: () => ({ ...fanout }),
    /** Whether `token` is what this relay gave node `id` for the PeerJS server. */
    peerTokenOk(id: string, token: string): boolean {
      const n = nodes.get(id);
      return n !== undefined && token.length === n.peerToken.length && token === n.peerToken;
    },
    /**
     * Re-reads trust for every connected node (after the trust list changed): a revoked cloud
     * node is disconnected, a revoked fog's dews are given another parent (or none), and a fog
     * trusted now adopts the dews that have none.
     */
    retrust,
    close(): void {
      clearInterval(sweep);
      for (const conn of conns) {
        clearTimeout(conn.joinTimer);
        close(conn, closeCodes.going, 'relay shutting down');
        // A node that does not answer the close handshake must not hold the relay open.
        setTimeout(() => conn.ws.terminate(), 1000).unref();
      }
      for (const f of forwards.values()) clearTimeout(f.timer);
      wss.close();
    },
  };
}

export type Hub = ReturnType<typeof createHub>;
