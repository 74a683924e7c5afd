/**
 * PeerJS signalling (PROTOCOL.md §5.4) on the relay's port: the `peer` package brokers offers,
 * answers and candidates between nodes, behind checks of the relay's own. Only a node the hub
 * admitted may register, under its own id; and the peer server never sees a socket or a message
 * directly: each socket reaches it through a small adapter that passes on only well-formed
 * signalling messages to joined nodes and keeps socket errors to itself. (The package re-emits a
 * socket error or an unparseable message as an `error` event on its express app, which ends the
 * process when nobody listens.)
 *
 * In a cluster (`relays`), a message for a node whose signalling socket another relay holds is
 * handed to that relay as a `signal` frame (PROTOCOL.md §5.10), which delivers it on that socket;
 * nobody holding it, the sender is answered as for any unknown peer.
 * @example const peers = mountPeerSignalling(app.server, { authorized, known, origins, log });
 *          routeUpgrades(app.server, { '/peerjs/peerjs': peers.upgrade }, log);
 */
import { EventEmitter } from 'node:events';
import type { IncomingMessage, Server } from 'node:http';
import type { Duplex } from 'node:stream';
import { ExpressPeerServer } from 'peer';
import { type RawData, type WebSocket, WebSocketServer } from 'ws';
import { AuthError } from '../core/errors';
import type { PeerDirectory } from './cluster/signal';
import type { SignalFrame } from './hub/cluster';
import { tokenBucket } from './limits';
import { originError, refuseUpgrade, type UpgradeHandler } from './upgrade';

export interface PeerSignallingOptions {
  /** Is `token` what the hub gave node `id` in its welcome? */
  authorized(id: string, token: string): boolean;
  /** Is `id` a node joined to this relay (a destination a message may go to)? */
  known(id: string): boolean;
  /** Page origins allowed to open sockets; requests with no Origin are allowed. */
  origins(origin: string): boolean;
  /** Largest signalling message, in bytes; default 64 KiB (a larger one closes with 1009). */
  maxMessageBytes?: number;
  /** The cluster's other relays: where sockets are, and the frames between them. */
  relays?: SignalRelays;
  log: { warn(m: string): void };
}

/** Signalling across relays: the socket directory and the hub's `signal` frames. */
export interface SignalRelays extends Omit<PeerDirectory, 'close'> {
  /** Sends `frame` to relay `to`; rejects (a typed error) when it cannot be sent. */
  send(to: string, frame: SignalFrame): Promise<void>;
  /** `fn` takes the signalling frames other relays send here. */
  listen(fn: (frame: SignalFrame) => void): void;
}

/** Messages one socket may hand other relays: a burst of this many... */
const FORWARD_BURST = 200;
/** ...refilled at this many a second (an offer and its candidates are a few dozen). */
const FORWARDS_PER_S = 20;
/** Messages of one socket waiting for the directory at most; more are dropped. */
const MAX_WAITING = 256;
/** How long a socket for a node not (yet) known here waits for its record from another relay, ms. */
const ADMIT_WAIT_MS = 5_000;
/** How often it looks again, ms. */
const ADMIT_POLL_MS = 50;
/** Sockets waiting so at most: more are refused at once. */
const MAX_ADMITTING = 256;
/** Warnings of dropped messages logged at most once this often, ms. */
const WARN_EVERY_MS = 10_000;

/** What a node may send: PeerJS's client messages. (EXPIRE and the rest come from the server.) */
const CLIENT_TYPES = new Set(['HEARTBEAT', 'OFFER', 'ANSWER', 'CANDIDATE', 'LEAVE']);
/** A parsed client message: its type, destination and payload. */
interface Message {
  type: string;
  dst?: string;
  payload?: unknown;
}
const NODE_ID = /^[0-9a-f]{32}$/;

export function mountPeerSignalling(server: Server, o: PeerSignallingOptions) {
  const maxPayload = o.maxMessageBytes ?? 64 * 1024;
  const sockets = new WebSocketServer({ noServer: true, maxPayload });
  // The peer package's socket server: it only listens for `connection`, which we emit.
  const broker = new EventEmitter();
  const peerApp = ExpressPeerServer(server, {
    key: 'brume',
    allow_discovery: false,
    createWebSocketServer: () => broker as unknown as WebSocketServer,
  });
  // Nothing reaches it unchecked; should the package still emit an error, it is logged, not fatal.
  peerApp.on('error', (e: Error) => o.log.warn(`peer signalling: ${e.message}`));
  // The package starts its server when its express app is mounted; nodes never use its HTTP
  // routes (they register under their own id), so it is mounted on a bare stand-in parent.
  peerApp.emit('mount', { settings: {}, request: {}, response: {}, engines: {} });

  const upgrade: UpgradeHandler = (req, socket, head, url) => {
    const origin = req.headers.origin;
    const id = url.searchParams.get('id') ?? '';
    const token = url.searchParams.get('token') ?? '';
    if (origin !== undefined && !o.origins(origin)) {
      return refuseUpgrade(socket, originError(origin));
    }
    // Only a node the hub admitted may register its own id: no one can take another's id.
    if (o.authorized(id, token)) return accept(req, socket, head, id);
    // In a cluster the node may have joined another relay a moment ago: its record (with its
    // token's digest) is on the way. Waited for a while, a bounded number of sockets at once.
    if (!o.relays || admitting >= MAX_ADMITTING) return refuse(socket, id);
    admitting += 1;
    const started = Date.now();
    const timer = setInterval(() => {
      const ok = o.authorized(id, token);
      if (!ok && !socket.destroyed && Date.now() - started < ADMIT_WAIT_MS) return;
      clearInterval(timer);
      admitting -= 1;
      if (socket.destroyed) return;
      if (ok) accept(req, socket, head, id);
      else refuse(socket, id);
    }, ADMIT_POLL_MS);
  };
  let admitting = 0;
  const accept = (req: IncomingMessage, socket: Duplex, head: Buffer, id: string) =>
    sockets.handleUpgrade(req, socket, head, (ws) => broker.emit('connection', adapt(ws, id), req));
  const refuse = (socket: Duplex, id: string) => {
    o.log.warn(`peer signalling refused for "${id.slice(0, 32)}"`);
    const message = 'peer signalling: send a joined node id and the peerToken of its welcome';
    refuseUpgrade(socket, new AuthError(message));
  };

  /** The sockets joined here, by node id (the latest of each). */
  const held = new Map<string, WebSocket>();
  const { relays } = o;
  relays?.listen(deliver);

  /** The socket as the peer package sees it: validated messages in, its own sends out. */
  function adapt(ws: WebSocket, self: string): EventEmitter {
    const face = Object.assign(new EventEmitter(), {
      send: (data: string) => ws.send(data),
      close: () => ws.close(),
    });
    held.set(self, ws);
    relays?.hold(self);
    /** Forwards left to this socket (a token bucket), and its messages waiting on the directory. */
    const forwards = tokenBucket(FORWARD_BURST, FORWARDS_PER_S);
    let waiting = 0;
    let chain = Promise.resolve();
    const here = (m: Message, data: RawData): void => {
      if (m.dst === undefined || o.known(m.dst)) {
        face.emit('message', data);
        return;
      }
      // A peer that is not (or no longer) joined: told at once, as the server would after a while.
      if (m.type !== 'LEAVE') expire(ws, m.dst, self);
    };
    /** Hands `m` to the relay holding its destination's socket, if another does. */
    const route = async (m: Message & { dst: string }, data: RawData) => {
      const relay = await relays!.holder(m.dst);
      if (relay === undefined || relay === relays!.relayId || held.has(m.dst)) return here(m, data);
      if (!forwards.take()) {
        warnOnce(
          `peer signalling: node ${self.slice(0, 8)} sends more than ${FORWARDS_PER_S} messages a second to other relays; dropped`,
        );
        return;
      }
      const frame: SignalFrame = {
        t: 'signal',
        from: relays!.relayId,
        type: m.type as SignalFrame['type'],
        src: self,
        dst: m.dst,
      };
      if (m.payload !== undefined) frame.payload = JSON.stringify(m.payload);
      await relays!.send(relay, frame).catch(() => {
        // That relay is gone, the socket with it: as for a peer that is not joined.
        if (m.type !== 'LEAVE') expire(ws, m.dst, self);
      });
    };
    ws.on('message', (data, isBinary) => {
      const m = parse(data, isBinary);
      if (typeof m === 'string') return ws.close(1008, m);
      const dst = m.dst;
      // Alone, or to a socket here: as ever. Else in order, once the directory answered.
      if (
        !relays ||
        (dst === undefined && waiting === 0) ||
        (dst !== undefined && held.has(dst) && waiting === 0)
      )
        return here(m, data);
      if (waiting >= MAX_WAITING)
        return warnOnce(
          `peer signalling: node ${self.slice(0, 8)} has ${MAX_WAITING} messages waiting; dropped`,
        );
      waiting += 1;
      chain = chain
        .then(() => (dst === undefined ? here(m, data) : route({ ...m, dst }, data)))
        .catch((e: Error) => o.log.warn(`peer signalling: ${e.message}`))
        .finally(() => {
          waiting -= 1;
        });
    });
    // ws closes an oversized message with 1009 and reports it here; other errors end the socket.
    ws.on('error', (e) => {
      o.log.warn(`peer signalling socket: ${e.message}`);
      ws.terminate();
    });
    ws.on('close', () => {
      if (held.get(self) === ws) {
        held.delete(self);
        relays?.release(self);
      }
      face.emit('close');
    });
    return face;
  }

  /** Tells `to` on `ws` that peer `peer` is gone (PeerJS's EXPIRE). */
  function expire(ws: WebSocket, peer: string, to: string): void {
    ws.send(JSON.stringify({ type: 'EXPIRE', src: peer, dst: to }));
  }

  /**
   * A message another relay handed this one (checked by relay/hub/cluster.ts's schema): sent on
   * its destination's socket as the peer server would send it; that socket not here (any more),
   * the sender's relay is told it expired.
   */
  function deliver(f: SignalFrame): void {
    const ws = held.get(f.dst);
    let payload: unknown;
    try {
      payload = f.payload === undefined ? undefined : JSON.parse(f.payload);
    } catch {
      warnOnce(`peer signalling: relay ${f.from} sent a payload that is not JSON; dropped`);
      return;
    }
    if (ws && ws.readyState === ws.OPEN) {
      ws.send(JSON.stringify({ type: f.type, src: f.src, dst: f.dst, payload }));
      return;
    }
    if (f.type === 'LEAVE' || f.type === 'EXPIRE') return;
    const back: SignalFrame = {
      t: 'signal',
      from: relays!.relayId,
      type: 'EXPIRE',
      src: f.dst,
      dst: f.src,
    };
    relays!.send(f.from, back).catch(() => {});
  }

  let warnedAt = 0;
  /** Logs at most one such warning every 10 s: a hostile socket must not flood the log. */
  function warnOnce(message: string): void {
    if (Date.now() - warnedAt < WARN_EVERY_MS) return;
    warnedAt = Date.now();
    o.log.warn(message);
  }

  /** The message's type and destination, or why it is refused (a close reason, ≤ 123 bytes). */
  function parse(data: RawData, isBinary: boolean): Message | string {
    if (isBinary) return 'signalling messages are JSON text';
    let m: unknown;
    try {
      m = JSON.parse(String(data));
    } catch {
      return 'a signalling message is not JSON';
    }
    if (typeof m !== 'object' || m === null || Array.isArray(m)) return 'not a JSON object';
    const { type, dst, payload } = m as { type?: unknown; dst?: unknown; payload?: unknown };
    if (typeof type !== 'string' || !CLIENT_TYPES.has(type)) {
      return `type must be one of ${[...CLIENT_TYPES].join(', ')}`;
    }
    if (type === 'HEARTBEAT' || (type === 'LEAVE' && dst === undefined)) return { type };
    // The server queues messages for absent ids: only joined nodes' ids, so queues stay bounded.
    if (typeof dst !== 'string' || !NODE_ID.test(dst)) return 'dst must be a node id';
    return { type, dst, payload };
  }

  return {
    upgrade,
    /** Upgraded sockets count as open connections: the HTTP server cannot close while they live. */
    close(): void {
      for (const ws of sockets.clients) ws.terminate();
      sockets.close();
    },
  };
}
