/**
 * The hub's sockets: the upgrade (origin, admission per address and in all), the time to join,
 * the frame rate, sending (a frame that cannot be encoded is answered to whoever waits on it),
 * liveness (ping for RTT, evict the silent, close a node that stops reading) and closing. What a
 * frame means is not its business: each decoded frame goes to `onFrame`.
 * @example const sockets = createConnections({ … onFrame: (conn, msg) => handle(conn, msg) });
 *          server.on('upgrade', sockets.upgrade);
 */
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { type WebSocket, WebSocketServer } from 'ws';
import type { NodeRecord } from '../../core/api';
import { BrumeError, ProtocolError, toWire } from '../../core/errors';
import { decodeFrame, type ToNode, type ToRelay } from '../../core/protocol';
import { Admission, type HubLimits, tokenBucket } from '../limits';
import type { HubEnd } from '../local-link';
import { closeReason, encodeOutgoing } from '../outgoing';
import { originError, refuseUpgrade } from '../upgrade';
import type { Logs } from './logs';

export interface Conn {
  /** A node's socket, or the hub's end of a link within this process (relay/local-link.ts). */
  ws: WebSocket | HubEnd;
  node?: NodeRecord;
  nonce?: Uint8Array;
  hello?: Extract<ToRelay, { t: 'hello' }>;
  /** Frames this socket may still send now (`frameRate`, bursts of twice that). */
  frames: { take(): boolean };
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

export const closeCodes = { protocol: 1008, tooBig: 1009, policy: 1008, going: 1001 };

export interface ConnectionOptions {
  limits: HubLimits;
  maxFrameBytes: number;
  heartbeatMs: number;
  evictAfterMs: number;
  frameRate: number;
  origins(origin: string): boolean;
  event: Logs['event'];
  /** Bytes read from (in) or written to (out) node sockets (relay/metrics.ts). */
  bytes(direction: 'in' | 'out', n: number): void;
  /** The joined nodes and their sockets, for the liveness sweep. */
  joined(): Iterable<{ record: NodeRecord; link: Conn }>;
  /** A new socket: send it the challenge. */
  greet(conn: Conn): void;
  onFrame(conn: Conn, msg: ToRelay): Promise<void>;
  /** Whether a frame answers work the relay gave this node (not counted against its rate). */
  answersRelay(conn: Conn, msg: ToRelay): boolean;
  /** A call frame that could not be sent: fail it for its caller; false when there is none. */
  failCall(id: number, error: BrumeError): boolean;
  /** The socket is gone (closed, evicted, replaced). */
  onDrop(conn: Conn): void;
}

export function createConnections(o: ConnectionOptions) {
  const { limits, frameRate } = o;
  const admission = new Admission(limits);
  const wss = new WebSocketServer({ noServer: true, maxPayload: o.maxFrameBytes });
  const conns = new Set<Conn>();

  /** Sends a frame; one the relay cannot encode is answered to whoever waits on it instead. */
  function send(conn: Conn, frame: ToNode): void {
    if (conn.ws.readyState !== conn.ws.OPEN) return;
    // In process: the frame as it is. What MessagePack could not carry is still no socket's
    // business — the node is this process's own code, reading the same objects.
    if ('deliver' in conn.ws) {
      conn.ws.deliver(frame);
      return;
    }
    let bytes: Uint8Array;
    try {
      bytes = encodeOutgoing(frame);
    } catch (e) {
      unsendable(conn, frame, e as BrumeError);
      return;
    }
    conn.ws.send(bytes);
    o.bytes('out', bytes.byteLength);
  }

  /**
   * Sends one frame to many sockets, encoded once: the same bytes go to each (a context change
   * fanned out to a thousand nodes costs one encode, not a thousand).
   */
  function sendMany(to: Iterable<Conn>, frame: ToNode): void {
    let bytes: Uint8Array | undefined;
    let error: BrumeError | undefined;
    for (const conn of to) {
      // The in-process link takes the frame itself: nothing to encode for it.
      if ('deliver' in conn.ws) {
        send(conn, frame);
        continue;
      }
      if (conn.ws.readyState !== conn.ws.OPEN) continue;
      if (!bytes && !error) {
        try {
          bytes = encodeOutgoing(frame);
        } catch (e) {
          error = e as BrumeError;
        }
      }
      if (!bytes) {
        unsendable(conn, frame, error!);
        continue;
      }
      conn.ws.send(bytes);
      o.bytes('out', bytes.byteLength);
    }
  }

  /**
   * A frame that cannot be sent (a value MessagePack cannot carry, or over the frame limit):
   * a call's caller gets the error, a reply becomes an error to the same id, and a frame no one
   * answers closes the connection with the reason, so nothing waits on silence.
   */
  function unsendable(conn: Conn, frame: ToNode, error: BrumeError): void {
    o.event('refused', `a "${frame.t}" frame to this node: ${error.message}`, conn.node?.id);
    const id = (frame as { id?: unknown }).id;
    if (frame.t === 'call' && o.failCall(frame.id, error)) return;
    if (typeof id === 'number' && frame.t !== 'error' && frame.t !== 'call') {
      send(conn, { t: 'error', id, error: toWire(error) });
    } else close(conn, closeCodes.tooBig, error.message);
  }

  const close = (conn: Conn, code: number, reason: string) => {
    conn.ws.close(code, closeReason(reason));
  };

  /** Closes now, and cuts off one that does not answer the close handshake either. */
  function closeHard(conn: Conn, code: number, reason: string): void {
    close(conn, code, reason);
    setTimeout(() => conn.ws.terminate(), 1000).unref();
  }

  function drop(conn: Conn): void {
    if (!conns.delete(conn)) return;
    clearTimeout(conn.joinTimer);
    conn.release?.();
    o.onDrop(conn);
  }

  // Liveness: ping for RTT; evict the silent.
  const sweep = setInterval(() => {
    const now = Date.now();
    for (const { record, link: conn } of [...o.joined()]) {
      if (now - record.lastSeen > o.evictAfterMs) {
        o.event('evicted', `no heartbeat for ${now - record.lastSeen} ms`, record.id);
        conn.ws.terminate();
        drop(conn);
      } else if (!slowReader(conn, now)) {
        conn.pingAt = performance.now();
        send(conn, { t: 'ping', ts: conn.pingAt });
      }
    }
  }, o.heartbeatMs);
  sweep.unref();

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
    o.event('closed', reason, conn.node?.id);
    // The close frame waits behind what it does not read: its buffer is let go, not flushed.
    closeHard(conn, closeCodes.policy, reason);
    drop(conn);
    return true;
  }

  function upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const origin = req.headers.origin;
    if (origin !== undefined && !o.origins(origin)) {
      const error = originError(origin);
      o.event('refused', error.message);
      refuseUpgrade(socket, error);
      return;
    }
    const refused = admission.refusal(req);
    if (refused) {
      o.event('refused', refused.message);
      refuseUpgrade(socket, refused);
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => accept(ws, admission.admit(req)));
  }

  /** A new connection: it must join in time; the challenge goes out at once. */
  function open(ws: Conn['ws'], release?: () => void): Conn {
    const conn: Conn = { ws, frames: tokenBucket(2 * frameRate, frameRate), release };
    conns.add(conn);
    conn.joinTimer = setTimeout(() => {
      const reason = `no join within ${limits.joinTimeoutMs} ms`;
      o.event('closed', reason);
      closeHard(conn, closeCodes.policy, reason);
    }, limits.joinTimeoutMs);
    conn.joinTimer.unref();
    o.greet(conn);
    return conn;
  }

  /** A frame's handling failed: the reason is logged and the connection closed with it. */
  function closeOn(conn: Conn, e: unknown): void {
    const reason = e instanceof BrumeError ? e.message : `internal error: ${(e as Error).message}`;
    o.event('closed', reason, conn.node?.id);
    close(conn, closeCodes.protocol, reason);
  }

  /**
   * A node in this process (the relay's cloud node) on a local link: no address to admit, and
   * frames as objects; joining, the frame rate, liveness and everything after are a socket's.
   */
  function attach(end: HubEnd): void {
    const conn = open(end);
    end.onFrame = (msg) => void take(conn, msg).catch((e: unknown) => closeOn(conn, e));
    end.onClose = () => drop(conn);
  }

  function accept(ws: WebSocket, release?: () => void): void {
    const conn = open(ws, release);
    ws.on('message', (data, isBinary) => {
      void receive(conn, data as Buffer, isBinary).catch((e: unknown) => closeOn(conn, e));
    });
    ws.on('error', (e) => {
      // ws reports oversized frames here and closes with 1009.
      o.event('closed', e.message, conn.node?.id);
    });
    ws.on('close', () => drop(conn));
  }

  async function receive(conn: Conn, data: Buffer, isBinary: boolean): Promise<void> {
    o.bytes('in', data.byteLength);
    if (!isBinary)
      throw new ProtocolError('text frames are not part of the protocol: send MessagePack');
    const msg = decodeFrame(
      new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
      'toRelay',
    );
    return take(conn, msg);
  }

  /** A decoded frame: counted against the node's rate unless it answers the relay, then handled. */
  async function take(conn: Conn, msg: ToRelay): Promise<void> {
    if (!o.answersRelay(conn, msg) && !conn.frames.take())
      throw new ProtocolError(`more than ${frameRate} frames per second`);
    if (conn.node) conn.node.lastSeen = Date.now();
    return o.onFrame(conn, msg);
  }

  return {
    upgrade,
    attach,
    send,
    sendMany,
    close,
    drop,
    /** Node sockets open now. */
    sockets: () => admission.total,
    /** Closes every socket (a node that does not answer the close handshake is cut off). */
    shutdown(): void {
      clearInterval(sweep);
      for (const conn of conns) {
        clearTimeout(conn.joinTimer);
        closeHard(conn, closeCodes.going, 'relay shutting down');
      }
      wss.close();
    },
  };
}

export type Connections = ReturnType<typeof createConnections>;
