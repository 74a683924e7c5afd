// A node speaking the wire protocol by hand over `ws`: for hostile-input tests (it can send what a
// real node never would) and for the benchmark's thousand simulated nodes.
import { WebSocket } from 'ws';
import { type Identity, loadOrCreateIdentity, memoryKeyStore, signJoin } from '../core/identity';
import {
  decodeFrame,
  encodeFrame,
  PROTOCOL_VERSION,
  type Role,
  type ToNode,
  type ToRelay,
} from '../core/protocol';

export interface RawNode {
  ws: WebSocket;
  identity: Identity;
  /** Frames received, in order. */
  frames: ToNode[];
  /** The next frame matching `t` (already received or still to come). */
  next<T extends ToNode['t']>(t: T, timeoutMs?: number): Promise<Extract<ToNode, { t: T }>>;
  send(frame: ToRelay): void;
  /** Resolves with the close code and reason. */
  closed: Promise<{ code: number; reason: string }>;
}

export const caps = { backends: [{ name: 'wasm' as const, detail: 'simulated' }], cores: 1 };

export interface RawOptions {
  identity?: Identity;
  /** The page origin to claim (browsers send one; other clients none). */
  origin?: string;
  /** Do not answer pings: a node that hangs without closing its socket. */
  silent?: boolean;
  /** Frames to keep in `frames` (default all but pings); others are dropped on arrival. */
  keep?: (frame: ToNode) => boolean;
  /**
   * Handles every call from the socket's first frame on, as a real node does (one handler for
   * all frames, core/node/relay-link.ts). A relay may place a call on a node the moment it joins,
   * right behind `welcome`: `onCalls` attached after `joinRaw` resolves misses it, and the relay
   * waits its whole call timeout for an answer that never comes.
   */
  onCall?: (call: CallFrame, node: Pick<RawNode, 'ws'>) => void;
}

export async function openRaw(wsUrl: string, options: RawOptions = {}): Promise<RawNode> {
  const { identity, origin } = options;
  const me = identity ?? (await loadOrCreateIdentity(memoryKeyStore(), 'n'));
  const ws = new WebSocket(wsUrl, origin ? { origin } : {});
  const frames: ToNode[] = [];
  const waiters: (() => void)[] = [];
  ws.on('message', (data) => {
    const frame = decodeFrame(new Uint8Array(data as Buffer), 'toNode');
    // Answering pings keeps it alive (and measured) like a real node.
    if (frame.t === 'ping' && !options.silent) {
      return ws.send(encodeFrame({ t: 'pong', ts: frame.ts }));
    }
    if (frame.t === 'call') options.onCall?.(frame, { ws });
    if (options.keep && !options.keep(frame)) return;
    frames.push(frame);
    for (const w of waiters.splice(0)) w();
  });
  const closed = new Promise<{ code: number; reason: string }>((resolve) =>
    ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() })),
  );
  ws.on('error', () => {});
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('unexpected-response', (_req, res) =>
      reject(new Error(`upgrade refused: ${res.statusCode}`)),
    );
    ws.once('error', reject);
  });
  let seen = 0;
  return {
    ws,
    identity: me,
    frames,
    closed,
    send: (frame) => ws.send(encodeFrame(frame)),
    async next(t, timeoutMs = 5000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const i = frames.findIndex((f, k) => k >= seen && f.t === t);
        if (i >= 0) {
          seen = i + 1;
          return frames[i] as never;
        }
        if (Date.now() > deadline) throw new Error(`no "${t}" frame within ${timeoutMs} ms`);
        await new Promise<void>((r) => {
          waiters.push(r);
          setTimeout(r, 50);
        });
      }
    },
  };
}

/** Opens a socket and joins properly; answers the node and its welcome. */
export async function joinRaw(wsUrl: string, role: Role = 'dew', options: RawOptions = {}) {
  const node = await openRaw(wsUrl, options);
  const challenge = await node.next('challenge');
  node.send({ t: 'hello', v: PROTOCOL_VERSION, role, publicKey: node.identity.publicKey, caps });
  const signature = await signJoin(node.identity, challenge.nonce, challenge.relayId, role);
  node.send({ t: 'join', nonce: challenge.nonce, signature });
  const welcome = await node.next('welcome');
  return { node, welcome, challenge };
}

export type CallFrame = Extract<ToNode, { t: 'call' }>;

/**
 * Calls `handle` with every call the relay forwards to this node from now on (one that came
 * before is only in `frames`: to miss none, give joinRaw `onCall`).
 */
export function onCalls(node: RawNode, handle: (call: CallFrame) => void): void {
  node.ws.on('message', (data) => {
    const f = decodeFrame(new Uint8Array(data as Buffer), 'toNode');
    if (f.t === 'call') handle(f);
  });
}

/** Answers `call` with `value`, claiming `ms` of execution, unless the socket has closed since. */
export function answerCall(
  node: Pick<RawNode, 'ws'>,
  call: CallFrame,
  value: unknown,
  ms = 0,
): void {
  if (node.ws.readyState !== node.ws.OPEN) return;
  node.ws.send(encodeFrame({ t: 'result', id: call.id, value, rpc: call.rpc, ms }));
}
