/**
 * A link between the hub and a node in the same process (the relay's own cloud node): frames
 * pass as the objects they are — no WebSocket, no MessagePack, no schema check of frames this
 * process built itself — each delivered in a microtask of its own, in order, as a socket would
 * (never inside the sender's call). Either end closing closes both, with its code and reason;
 * the node then reconnects as over any socket. The hub holds it like a socket
 * (relay/hub/connections.ts attach): the same join, rate, liveness and call limits apply.
 * @example const { hub: hubEnd, node: nodeEnd } = localLink();
 *          hub.attach(hubEnd);            // greets: the challenge goes to nodeEnd
 *          createNode({ …, socket: () => nodeEnd });
 */
import type { SocketLike } from '../core/node/links';
import { decodeFrame, type ToNode, type ToRelay } from '../core/protocol';

const OPEN = 1;
const CLOSED = 3;

/** What the hub holds: the subset of `ws`'s WebSocket it uses, and frames out as objects. */
export interface HubEnd {
  readonly OPEN: number;
  readonly readyState: number;
  /** Nothing waits unsent: a frame is in the node's hands a microtask later. */
  readonly bufferedAmount: number;
  deliver(frame: ToNode): void;
  close(code?: number, reason?: string): void;
  terminate(): void;
  /** Set by the hub: frames from the node, and the link closing. */
  onFrame: ((msg: ToRelay) => void) | null;
  onClose: (() => void) | null;
}

/** What the node holds: a socket (core/node/links.ts) that carries frames as objects. */
export interface NodeEnd extends SocketLike {
  sendFrame(frame: ToRelay): void;
}

export function localLink(): { hub: HubEnd; node: NodeEnd } {
  let state = OPEN;
  const shut = (code: number, reason: string) => {
    if (state === CLOSED) return;
    state = CLOSED;
    queueMicrotask(() => {
      hub.onClose?.();
      node.onclose?.({ code, reason });
    });
  };
  const hub: HubEnd = {
    OPEN,
    get readyState() {
      return state;
    },
    bufferedAmount: 0,
    deliver(frame) {
      if (state !== OPEN) return;
      queueMicrotask(() => {
        if (state === OPEN) node.onmessage?.({ data: frame });
      });
    },
    close: (code = 1000, reason = '') => shut(code, reason),
    terminate: () => shut(1006, ''),
    onFrame: null,
    onClose: null,
  };
  const node: NodeEnd = {
    binaryType: 'arraybuffer',
    get readyState() {
      return state;
    },
    sendFrame(frame) {
      if (state !== OPEN) return;
      queueMicrotask(() => {
        if (state === OPEN) hub.onFrame?.(frame);
      });
    },
    // A node that encodes anyway: decoded (and checked) here, then passed on like any frame.
    send(data) {
      this.sendFrame(decodeFrame(data, 'toRelay'));
    },
    close: (code = 1000, reason = '') => shut(code, reason),
    onopen: null,
    onmessage: null,
    onclose: null,
    onerror: null,
  };
  return { hub, node };
}
