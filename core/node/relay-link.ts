/**
 * A node's socket to the relay: joins by challenge–response, reconnects with capped exponential
 * backoff, sends heartbeats on the relay's beat, and carries requests to the relay (each with an
 * id and a timeout, failed when the socket drops). The relay's lease revocations go to
 * `onRevoke` listeners (the router's lease cache); every other frame goes to `onFrame`, with the
 * connection it came over: what answers it goes back on that socket only, never on a later one.
 * @example const link = new RelayLink({ url, socket: (u) => new WebSocket(u), identity, role, … });
 *          await link.whenJoined(); const decision = await link.request({ t: 'schedule', id: 0, … });
 */
import { ClosedError, DisconnectedError, fromWire, TimeoutError } from '../errors';
import { type Identity, signJoin } from '../identity';
import { Pending } from '../pending';
import {
  type Capabilities,
  decodeFrame,
  encodeFrame,
  PROTOCOL_VERSION,
  type Role,
  type ToNode,
  type ToRelay,
} from '../protocol';
import type { SocketLike } from './links';

export type LinkStatus = 'connecting' | 'joined' | 'offline' | 'closed';
export type Welcome = Extract<ToNode, { t: 'welcome' }>;
export type Heartbeat = Extract<ToRelay, { t: 'heartbeat' }>;
export type LeaseRevoke = Extract<ToNode, { t: 'lease-revoke' }>;
/** What a request to the relay is: a placement, a call it carries to a node, a session (§5.9). */
export type RelayRequest = Extract<ToRelay, { t: 'schedule' | 'call' | 'session-open' }>;

/**
 * One socket to the relay, as a frame that came over it sees it. A call the relay sent is the
 * relay's on that socket: once it closes, the relay has placed the call again elsewhere, and its
 * ids mean nothing on the next socket (which may reach another relay).
 */
export interface RelayConnection {
  /** Aborted (with an E_DISCONNECTED) when this socket closes. */
  readonly closed: AbortSignal;
  /** Sends on this socket while it is open; dropped once it is closed (never on a later one). */
  send(frame: ToRelay): void;
}

export interface RelayLinkOptions {
  /** The relay's WebSocket endpoint, e.g. ws://127.0.0.1:8787/ws */
  url: string;
  socket: (url: string) => SocketLike;
  identity: Identity;
  role: Role;
  capabilities: () => Promise<Capabilities>;
  /** This node's heartbeat now (load, apps, figures). */
  heartbeat(): Heartbeat;
  /** Joined: the relay's welcome (before the status turns 'joined'). */
  onWelcome(msg: Welcome): void;
  /** Joined, status told and first heartbeat sent. */
  onJoined?(): void;
  /** The socket closed; requests in flight have failed. */
  onLost?(): void;
  /** Any frame but the handshake, pings and answers to requests, with the socket it came over. */
  onFrame(msg: ToNode, conn: RelayConnection): Promise<void> | void;
  /** Time a request to the relay may take; default 60 000 ms. */
  requestTimeoutMs?: number;
  backoff?: { initialMs: number; maxMs: number };
  log?: (line: string) => void;
}

export class RelayLink {
  status: LinkStatus = 'connecting';
  private socket: SocketLike | undefined;
  private readonly requests: Pending<ToNode, RelayRequest['t']>;
  private heartbeat: ReturnType<typeof setTimeout> | undefined;
  private retry: ReturnType<typeof setTimeout> | undefined;
  private attempt = 0;
  private readonly listeners = new Set<(s: LinkStatus) => void>();
  private readonly revokeListeners = new Set<(msg: LeaseRevoke) => void>();

  constructor(private readonly options: RelayLinkOptions) {
    const timeoutMs = options.requestTimeoutMs ?? 60_000;
    this.requests = new Pending({
      timeoutMs,
      timeout: (t) => new TimeoutError(`the relay did not answer "${t}" within ${timeoutMs} ms`),
    });
  }

  /** Opens the socket (and reopens it after each loss until closed). */
  connect(): void {
    if (this.status === 'closed') return;
    this.setStatus(this.attempt === 0 ? 'connecting' : 'offline');
    const ws = this.options.socket(this.options.url);
    this.socket = ws;
    const closed = new AbortController();
    const conn: RelayConnection = {
      closed: closed.signal,
      send: (frame) => {
        if (!closed.signal.aborted) this.sendOn(ws, frame);
      },
    };
    ws.binaryType = 'arraybuffer';
    ws.onmessage = (ev) => {
      let msg: ToNode;
      try {
        msg = ws.sendFrame
          ? (ev.data as ToNode)
          : decodeFrame(new Uint8Array(ev.data as ArrayBuffer), 'toNode');
      } catch (e) {
        this.options.log?.(`relay sent a bad frame: ${(e as Error).message}`);
        ws.close(1008, 'bad frame');
        return;
      }
      void this.onFrame(ws, conn, msg).catch((e: unknown) =>
        this.options.log?.(`fabric: ${(e as Error).message}`),
      );
    };
    ws.onclose = (ev) => {
      const why = `lost the relay (${ev.code}${ev.reason ? `: ${ev.reason}` : ''})`;
      // What came over this socket has no one to answer to now, whichever socket is current.
      closed.abort(new DisconnectedError(why));
      if (this.socket !== ws) return;
      clearTimeout(this.heartbeat);
      // The reason says what to do when the relay refused the join (e.g. a key not trusted).
      if (ev.reason) this.options.log?.(why);
      this.requests.failAll(new DisconnectedError(why));
      this.options.onLost?.();
      if (this.status === 'closed') return;
      this.setStatus('offline');
      const { initialMs, maxMs } = this.options.backoff ?? { initialMs: 250, maxMs: 10_000 };
      const delay = Math.min(maxMs, initialMs * 2 ** this.attempt++) * (0.75 + Math.random() / 2);
      this.retry = setTimeout(() => this.connect(), delay);
    };
    ws.onerror = () => {};
  }

  /** Calls `listener` on every status change; answers a function that unsubscribes. */
  onStatus(listener: (s: LinkStatus) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Calls `listener` on every lease revocation (§5.3.2); answers a function that unsubscribes. */
  onRevoke(listener: (msg: LeaseRevoke) => void): () => void {
    this.revokeListeners.add(listener);
    return () => this.revokeListeners.delete(listener);
  }

  /** Resolves when joined (or rejects after `timeoutMs`). */
  whenJoined(timeoutMs = 10_000): Promise<void> {
    if (this.status === 'joined') return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        off();
        reject(new TimeoutError(`not joined to ${this.options.url} within ${timeoutMs} ms`));
      }, timeoutMs);
      const off = this.onStatus((s) => {
        if (s !== 'joined') return;
        clearTimeout(timer);
        off();
        resolve();
      });
    });
  }

  /** Sends a frame when the socket is open; dropped otherwise (the relay resends what matters). */
  send(frame: ToRelay): void {
    if (this.socket) this.sendOn(this.socket, frame);
  }

  /** One request to the relay: an id, a timeout, and a rejection if the link drops. */
  request(frame: RelayRequest): Promise<ToNode> {
    if (!this.socket || this.status !== 'joined') {
      return Promise.reject(new DisconnectedError('not connected to the relay'));
    }
    const { id, answer } = this.requests.open(frame.t);
    this.send({ ...frame, id });
    return answer;
  }

  /** Sends a heartbeat now (the node's load or figures changed), when joined. */
  beatNow(withCaps = false): void {
    if (this.status !== 'joined') return;
    const frame = this.options.heartbeat();
    if (withCaps) void this.options.capabilities().then((caps) => this.send({ ...frame, caps }));
    else this.send(frame);
  }

  close(): void {
    this.setStatus('closed');
    clearTimeout(this.retry);
    clearTimeout(this.heartbeat);
    this.socket?.close(1000, 'node closing');
    this.requests.failAll(new ClosedError('the fabric link was closed'));
  }

  private sendOn(ws: SocketLike, frame: ToRelay): void {
    if (ws.readyState !== 1) return;
    if (ws.sendFrame) ws.sendFrame(frame);
    else ws.send(encodeFrame(frame));
  }

  private setStatus(s: LinkStatus): void {
    if (this.status === s || this.status === 'closed') return;
    this.status = s;
    for (const l of this.listeners) l(s);
  }

  private beat(everyMs: number, withCaps = false): void {
    this.beatNow(withCaps);
    this.heartbeat = setTimeout(() => this.beat(everyMs), everyMs);
  }

  private async onFrame(ws: SocketLike, conn: RelayConnection, msg: ToNode): Promise<void> {
    switch (msg.t) {
      case 'challenge': {
        const { identity, role } = this.options;
        const caps = await this.options.capabilities();
        this.send({
          t: 'hello',
          v: PROTOCOL_VERSION,
          role,
          publicKey: identity.publicKey,
          caps,
          agreement: {
            agreementKey: identity.agreement.publicKey,
            signature: identity.agreement.signature,
          },
        });
        const signature = await signJoin(identity, msg.nonce, msg.relayId, role);
        this.send({ t: 'join', nonce: msg.nonce, signature });
        return;
      }
      case 'welcome':
        if (this.socket !== ws) return;
        this.attempt = 0;
        this.options.onWelcome(msg);
        this.setStatus('joined');
        this.beat(msg.heartbeatMs, true);
        this.options.onJoined?.();
        return;
      case 'ping':
        this.send({ t: 'pong', ts: msg.ts });
        return;
      case 'lease-revoke':
        for (const l of this.revokeListeners) l(msg);
        return;
      case 'decision':
      case 'session':
      case 'result':
      case 'error': {
        const id = msg.id;
        const answered =
          id !== undefined &&
          (msg.t === 'error'
            ? this.requests.fail(id, fromWire(msg.error))
            : this.requests.settle(id, msg));
        if (!answered && msg.t === 'error') this.options.log?.(`relay: ${msg.error.message}`);
        return;
      }
      default:
        return this.options.onFrame(msg, conn);
    }
  }
}
