/**
 * PeerJS signalling (PROTOCOL.md §5.4) on the relay's port: the `peer` package brokers offers,
 * answers and candidates between nodes, behind checks of the relay's own. Only a node the hub
 * admitted may register, under its own id; and the peer server never sees a socket or a message
 * directly: each socket reaches it through a small adapter that passes on only well-formed
 * signalling messages to joined nodes and keeps socket errors to itself. (The package re-emits a
 * socket error or an unparseable message as an `error` event on its express app, which ends the
 * process when nobody listens.)
 * @example const peers = mountPeerSignalling(app.server, { authorized, known, origins, log });
 *          routeUpgrades(app.server, { '/peerjs/peerjs': peers.upgrade }, log);
 */
import { EventEmitter } from 'node:events';
import type { Server } from 'node:http';
import { ExpressPeerServer } from 'peer';
import { type RawData, type WebSocket, WebSocketServer } from 'ws';
import { AuthError } from '../core/errors';
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
  log: { warn(m: string): void };
}

/** What a node may send: PeerJS's client messages. (EXPIRE and the rest come from the server.) */
const CLIENT_TYPES = new Set(['HEARTBEAT', 'OFFER', 'ANSWER', 'CANDIDATE', 'LEAVE']);
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
    if (!o.authorized(id, token)) {
      o.log.warn(`peer signalling refused for "${id.slice(0, 32)}"`);
      const message = 'peer signalling: send a joined node id and the peerToken of its welcome';
      return refuseUpgrade(socket, new AuthError(message));
    }
    sockets.handleUpgrade(req, socket, head, (ws) => broker.emit('connection', adapt(ws, id), req));
  };

  /** The socket as the peer package sees it: validated messages in, its own sends out. */
  function adapt(ws: WebSocket, self: string): EventEmitter {
    const face = Object.assign(new EventEmitter(), {
      send: (data: string) => ws.send(data),
      close: () => ws.close(),
    });
    ws.on('message', (data, isBinary) => {
      const m = parse(data, isBinary);
      if (typeof m === 'string') return ws.close(1008, m);
      if (m.dst === undefined || o.known(m.dst)) return face.emit('message', data);
      // A peer that is not (or no longer) joined: told at once, as the server would after a while.
      if (m.type !== 'LEAVE') ws.send(JSON.stringify({ type: 'EXPIRE', src: m.dst, dst: self }));
    });
    // ws closes an oversized message with 1009 and reports it here; other errors end the socket.
    ws.on('error', (e) => {
      o.log.warn(`peer signalling socket: ${e.message}`);
      ws.terminate();
    });
    ws.on('close', () => face.emit('close'));
    return face;
  }

  /** The message's type and destination, or why it is refused (a close reason, ≤ 123 bytes). */
  function parse(data: RawData, isBinary: boolean): { type: string; dst?: string } | string {
    if (isBinary) return 'signalling messages are JSON text';
    let m: unknown;
    try {
      m = JSON.parse(String(data));
    } catch {
      return 'a signalling message is not JSON';
    }
    if (typeof m !== 'object' || m === null || Array.isArray(m)) return 'not a JSON object';
    const { type, dst } = m as { type?: unknown; dst?: unknown };
    if (typeof type !== 'string' || !CLIENT_TYPES.has(type)) {
      return `type must be one of ${[...CLIENT_TYPES].join(', ')}`;
    }
    if (type === 'HEARTBEAT' || (type === 'LEAVE' && dst === undefined)) return { type };
    // The server queues messages for absent ids: only joined nodes' ids, so queues stay bounded.
    if (typeof dst !== 'string' || !NODE_ID.test(dst)) return 'dst must be a node id';
    return { type, dst };
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
