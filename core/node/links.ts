/**
 * The two transports a node speaks over, as interfaces: its socket to the relay and its direct
 * channels to other nodes. Implementations: the browser's WebSocket and `ws` (SocketLike);
 * WebRTC data channels (web/peers.ts) and an in-memory fabric for simulations
 * (core/node/memory-links.ts) (PeerLinks).
 */
import type { PeerFrame, ToRelay } from '../protocol';

/**
 * A handler property both the browser's WebSocket and `ws`'s accept: declared as a method so its
 * parameter is compared both ways (the browser's handler takes a MessageEvent, `ws`'s its own).
 */
type Handler<E> = { bivariant(ev: E): void }['bivariant'];

/** The part of a WebSocket (browser or `ws`) a node uses: both satisfy it as they are. */
export interface SocketLike {
  binaryType: string;
  readonly readyState: number;
  send(data: Uint8Array): void;
  close(code?: number, reason?: string): void;
  onopen: Handler<unknown> | null;
  onmessage: Handler<{ data: unknown }> | null;
  onclose: Handler<{ code: number; reason: string }> | null;
  onerror: Handler<unknown> | null;
  /**
   * A socket within one process (relay/local-link.ts) carries frames as objects: with this, the
   * node sends frames through it unencoded and its messages' `data` are frames, not bytes.
   */
  sendFrame?(frame: ToRelay): void;
}

export type PeerCall = Extract<PeerFrame, { t: 'call' }>;
export type PeerResult = Extract<PeerFrame, { t: 'result' }>;
export type PeerContext = Extract<PeerFrame, { t: 'ctx-op' }>;

/**
 * Direct node-to-node channels. `call` rejects with E_NO_LINK when no channel can be opened (the
 * caller then goes through the relay), with E_DISCONNECTED when the channel drops before the
 * answer and E_TIMEOUT when the answer does not come in time (the caller places the request
 * again elsewhere); it answers each call exactly once.
 */
export interface PeerLinks {
  /**
   * Registers this node with the signalling server after each join; `serve` answers calls,
   * `onContext` takes context changes a fog passes on.
   */
  start(
    nodeId: string,
    peerToken: string,
    serve: (call: PeerCall) => Promise<PeerResult>,
    onContext?: (from: string, frame: PeerContext) => void,
  ): void;
  call(node: string, call: PeerCall): Promise<PeerResult>;
  /** Opens a channel to `node` ahead of use (a dew to its parent fog); errors are dropped. */
  connect(node: string): void;
  /** Sends a one-way frame on an open channel; false when there is none open now. */
  send(node: string, frame: PeerContext): boolean;
  /** `node` is gone (the relay says so): fail its calls in flight with E_DISCONNECTED. */
  drop(node: string): void;
  /** Nodes with an open channel now. */
  connected(): string[];
  close(): void;
}
