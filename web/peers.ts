/**
 * Direct tab-to-tab calls over WebRTC data channels (PeerJS, signalled by the relay's PeerJS
 * server). Frames are the protocol's peer frames; one larger than a chunk is split, and sending
 * waits while the channel's buffer is full. The relay admits a PeerJS id only with the token it
 * gave that node at join, so an id on this server is a node the relay verified.
 * @example fabric options: { links: peerLinks(new URL(location.origin)) }
 */
import Peer, { type DataConnection } from 'peerjs';
import {
  DisconnectedError,
  fromWire,
  NoLinkError,
  ProtocolError,
  TimeoutError,
  toWire,
  UnavailableError,
} from '../core/errors';
import type { PeerCall, PeerContext, PeerLinks, PeerResult } from '../core/node/links';
import { Pending } from '../core/pending';
import {
  chunk,
  chunkBytes,
  decodeFrame,
  encodeFrame,
  type PeerFrame,
  Reassembler,
  type ReassemblerLimits,
} from '../core/protocol';

type Serve = (call: PeerCall) => Promise<PeerResult>;

interface Link {
  conn: DataConnection;
  /** This tab's calls on the channel, waiting for their answers. */
  calls: Pending<PeerResult>;
  reassembler: Reassembler;
}

export interface PeerLinkOptions {
  /** Time to open a channel before the call goes through the relay instead. */
  openTimeoutMs?: number;
  /**
   * Time a call over an open channel may take: a peer that keeps its channel open but never
   * answers fails the call with E_TIMEOUT, and the caller places it elsewhere. Default 30 000.
   */
  callTimeoutMs?: number;
  /** Buffered bytes above which sending waits. */
  highWaterBytes?: number;
  /** What one channel may make this tab hold for messages partly received (core/protocol.ts). */
  partials?: Pick<ReassemblerLimits, 'maxPartials' | 'maxPartialBytes' | 'staleMs'>;
  log?: (line: string) => void;
}

export function peerLinks(relay: URL, options: PeerLinkOptions = {}): PeerLinks {
  const openTimeoutMs = options.openTimeoutMs ?? 4000;
  const callTimeoutMs = options.callTimeoutMs ?? 30_000;
  const highWater = options.highWaterBytes ?? 1024 * 1024;
  let peer: Peer | undefined;
  let ready: Promise<void> = Promise.reject(new NoLinkError('not registered yet'));
  ready.catch(() => {});
  let serve: Serve | undefined;
  let onContext: ((from: string, frame: PeerContext) => void) | undefined;
  const links = new Map<string, Promise<Link>>();
  /** Open channels by node (the page shows them; one-way frames go only on these). */
  const openLinks = new Map<string, Link>();
  /** Ids of one-way frames count down, so their chunks never mix with a call's (ids from 1 up). */
  let oneWayId = Number.MAX_SAFE_INTEGER;

  function start(
    nodeId: string,
    token: string,
    handler: Serve,
    contextHandler?: (from: string, frame: PeerContext) => void,
  ): void {
    serve = handler;
    onContext = contextHandler;
    close();
    if (typeof RTCPeerConnection === 'undefined') {
      ready = Promise.reject(new NoLinkError('this browser has no WebRTC'));
      ready.catch(() => {});
      return;
    }
    const p = new Peer(nodeId, {
      host: relay.hostname,
      port: Number(relay.port || (relay.protocol === 'https:' ? 443 : 80)),
      path: '/peerjs',
      key: 'brume',
      token,
      secure: relay.protocol === 'https:',
      // Loopback and LAN need no STUN; nothing is fetched from outside the fabric.
      config: { iceServers: [] },
      debug: 0,
    });
    peer = p;
    ready = new Promise<void>((resolve, reject) => {
      p.on('open', () => resolve());
      p.on('error', (e) => {
        reject(new NoLinkError(`signalling: ${e.message}`));
        options.log?.(`peer: ${e.type}: ${e.message}`);
      });
    });
    ready.catch(() => {});
    p.on('connection', (conn) => {
      // The remote id was admitted by the relay; a call is served like one through the relay.
      const link = attach(conn);
      conn.on('open', () => links.set(conn.peer, Promise.resolve(link)));
    });
  }

  function attach(conn: DataConnection): Link {
    const link: Link = {
      conn,
      calls: new Pending({
        timeoutMs: callTimeoutMs,
        timeout: () =>
          new TimeoutError(
            `${conn.peer.slice(0, 8)} did not answer within ${callTimeoutMs} ms over its data channel`,
          ),
      }),
      reassembler: new Reassembler(options.partials ?? {}),
    };
    conn.on('data', (data) => {
      try {
        onBytes(link, new Uint8Array(data as ArrayBuffer));
      } catch (e) {
        options.log?.(`peer ${conn.peer.slice(0, 8)} sent a bad frame: ${(e as Error).message}`);
        conn.close();
      }
    });
    conn.on('open', () => openLinks.set(conn.peer, link));
    const lost = () => {
      if (openLinks.get(conn.peer) === link) openLinks.delete(conn.peer);
      fail(link, `the channel to ${conn.peer.slice(0, 8)} closed`);
    };
    conn.on('close', lost);
    conn.on('error', lost);
    return link;
  }

  /** Fails what is in flight on `link`: the caller places those requests again. */
  function fail(link: Link, why: string): void {
    const peerId = link.conn.peer;
    void links.get(peerId)?.then((l) => {
      if (l === link) links.delete(peerId);
    });
    link.reassembler.clear();
    link.calls.failAll(new DisconnectedError(why));
  }

  function onBytes(link: Link, bytes: Uint8Array): void {
    let frame = decodeFrame(bytes, 'peer');
    if (frame.t === 'chunk') {
      const whole = link.reassembler.add(frame);
      if (!whole) return;
      frame = decodeFrame(whole, 'peer');
      if (frame.t === 'chunk') throw new ProtocolError('a chunk inside a chunk');
    }
    if (frame.t === 'ctx-op') {
      onContext?.(link.conn.peer, frame);
      return;
    }
    if (frame.t === 'call') {
      const call = frame;
      const run = serve ?? (() => Promise.reject(new UnavailableError('not serving')));
      run(call).then(
        (r) => sendFrame(link, { ...r, id: call.id }),
        (e: unknown) => sendFrame(link, { t: 'error', id: call.id, error: toWire(e) }),
      );
      return;
    }
    // An answer nobody waits for any more (timed out, failed) finds nothing and is dropped.
    if (frame.t === 'result') link.calls.settle(frame.id, frame);
    else link.calls.fail(frame.id, fromWire(frame.error));
  }

  async function sendFrame(link: Link, frame: PeerFrame): Promise<void> {
    const bytes = encodeFrame(frame);
    const parts =
      bytes.byteLength <= chunkBytes ? [bytes] : [...chunk(frame.id, bytes)].map(encodeFrame);
    const dc = link.conn.dataChannel;
    for (const part of parts) {
      if (dc.bufferedAmount > highWater) await drained(dc, highWater / 2);
      if (dc.readyState !== 'open') {
        throw new DisconnectedError(`the channel to ${link.conn.peer.slice(0, 8)} closed`);
      }
      dc.send(part as Uint8Array<ArrayBuffer>);
    }
  }

  function open(node: string): Promise<Link> {
    let p = links.get(node);
    if (!p) {
      p = (async () => {
        await ready;
        const conn = peer!.connect(node, { reliable: true, serialization: 'raw' });
        const link = attach(conn);
        await new Promise<void>((resolve, reject) => {
          const timer = setTimeout(() => {
            conn.close();
            reject(new TimeoutError(`no channel within ${openTimeoutMs} ms`));
          }, openTimeoutMs);
          conn.on('open', () => {
            clearTimeout(timer);
            resolve();
          });
        });
        return link;
      })();
      links.set(node, p);
      p.catch(() => links.delete(node));
    }
    return p;
  }

  async function call(node: string, frame: PeerCall): Promise<PeerResult> {
    let link: Link;
    try {
      link = await open(node);
    } catch (e) {
      throw new NoLinkError((e as Error).message);
    }
    const { id, answer } = link.calls.open(undefined);
    sendFrame(link, { ...frame, id }).catch((e: unknown) => link.calls.fail(id, fromWire(e)));
    return answer;
  }

  /** One-way frames on an open channel; each gets its own id so chunks never mix. */
  function send(node: string, frame: PeerContext): boolean {
    const link = openLinks.get(node);
    if (link?.conn.dataChannel?.readyState !== 'open') return false;
    sendFrame(link, { ...frame, id: oneWayId-- }).catch((e: unknown) =>
      options.log?.(`peer ${node.slice(0, 8)}: ${(e as Error).message}`),
    );
    return true;
  }

  function connect(node: string): void {
    open(node).catch((e: unknown) =>
      options.log?.(`no channel to ${node.slice(0, 8)}: ${(e as Error).message}`),
    );
  }

  function drop(node: string): void {
    const p = links.get(node);
    links.delete(node);
    p?.then(
      (l) => {
        fail(l, `${node.slice(0, 8)} left the fabric`);
        l.conn.close();
      },
      () => {},
    );
  }

  function close(): void {
    for (const p of links.values())
      p.then(
        (l) => l.conn.close(),
        () => {},
      );
    links.clear();
    peer?.destroy();
    peer = undefined;
  }

  return { start, call, send, connect, drop, close, connected: () => [...openLinks.keys()] };
}

function drained(dc: RTCDataChannel, low: number): Promise<void> {
  return new Promise((resolve) => {
    dc.bufferedAmountLowThreshold = low;
    dc.addEventListener('bufferedamountlow', () => resolve(), { once: true });
    dc.addEventListener('close', () => resolve(), { once: true });
  });
}
