/**
 * A node's link to the fabric: joins the relay by challenge–response, reports load by heartbeat,
 * serves calls the relay forwards, and routes its own calls local-first: it runs a request itself
 * when its own statistics say it meets the QoS, asks the relay otherwise (a QoS miss, not only an
 * error), and serves itself with the best variant it can run when it is cut off.
 * @example const fabric = connectFabric({ url: 'ws://127.0.0.1:8787/ws', socket: (u) => new WebSocket(u),
 *            identity, role: 'dew', runtime, capabilities });
 *          const r = await fabric.call('digits', 'classify', input, { accuracy: 0.96 });
 */
import type { NodeContext } from './context/client';
import {
  type BrumeError,
  ClosedError,
  DisconnectedError,
  fromWire,
  ProtocolError,
  QosError,
  TimeoutError,
  UnavailableError,
  toWire as wireError,
} from './errors';
import { type Identity, signJoin } from './identity';
import {
  type Capabilities,
  decodeFrame,
  encodeFrame,
  type PeerFrame,
  PROTOCOL_VERSION,
  parseQos,
  type Role,
  type ToNode,
  type ToRelay,
} from './protocol';
import type { CallOptions, CallResult, Runtime, TraceEntry } from './runtime';
import type { Qos } from './scheduler';

/** The part of WebSocket (browser or `ws`) the fabric uses. */
export interface SocketLike {
  binaryType: string;
  readonly readyState: number;
  send(data: Uint8Array): void;
  close(code?: number, reason?: string): void;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
}

type PeerCall = Extract<PeerFrame, { t: 'call' }>;
type PeerResult = Extract<PeerFrame, { t: 'result' }>;
type PeerContext = Extract<PeerFrame, { t: 'ctx-op' }>;

/**
 * Direct node-to-node channels (WebRTC data channels in a tab). `call` rejects with E_NO_LINK when
 * no channel can be opened (the caller then goes through the relay) and with E_DISCONNECTED when
 * the channel drops before the answer (the caller places the request again elsewhere).
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

export type FabricStatus = 'connecting' | 'joined' | 'offline' | 'closed';

export interface FabricOptions {
  /** The relay's WebSocket endpoint, e.g. ws://127.0.0.1:8787/ws */
  url: string;
  socket: (url: string) => SocketLike;
  identity: Identity;
  role: Role;
  runtime: Runtime;
  capabilities: () => Promise<Capabilities>;
  /** This node's context store, kept in sync through the relay. */
  context?: NodeContext;
  /** Direct channels to other nodes; without them every remote call goes through the relay. */
  links?: PeerLinks;
  /** Requests this node runs at once for others. */
  maxConcurrency?: number;
  /** Requests from others that wait for a free slot; past this they are refused. Default 16. */
  maxQueued?: number;
  /** Time a request to the relay may take. */
  requestTimeoutMs?: number;
  backoff?: { initialMs: number; maxMs: number };
  log?: (line: string) => void;
}

export interface FabricCallResult extends CallResult {
  /** The node that ran it, and how the request got there. */
  node: string;
  via: 'local' | 'peer' | 'relay';
  reason: string;
}

interface Pending {
  resolve(frame: ToNode): void;
  reject(e: BrumeError): void;
  timer: ReturnType<typeof setTimeout>;
}

const noLinkRetryMs = 30_000;
/** A peer call that failed this way is placed again without that node. */
const placeAgainAfter = new Set(['E_DISCONNECTED', 'E_UNAVAILABLE', 'E_TIMEOUT']);

export function connectFabric(options: FabricOptions): Fabric {
  return new Fabric(options);
}

export class Fabric {
  status: FabricStatus = 'connecting';
  nodeId: string;
  trusted = false;
  /** Why this node serves only itself now ('user', 'battery'...); empty: it contributes. */
  private readonly pausedBy = new Set<string>();
  /** Requests it runs at once for others (lowered while the tab is hidden). */
  concurrency: number;
  /** Milliseconds of compute spent on requests from other nodes. */
  contributedMs = 0;
  /** Requests served for other nodes. */
  served = 0;
  readonly role: Role;
  /** The trusted fog the relay gave this dew as parent, while it is there. */
  parent: string | undefined;
  private socket: SocketLike | undefined;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private running = 0;
  /** Calls from others waiting for a slot, oldest first. */
  private readonly queued: (() => void)[] = [];
  private heartbeat: ReturnType<typeof setTimeout> | undefined;
  private retry: ReturnType<typeof setTimeout> | undefined;
  private attempt = 0;
  private readonly listeners = new Set<(s: FabricStatus) => void>();
  /** Nodes no data channel opened to, until when calls to them go through the relay. */
  private readonly noLink = new Map<string, number>();

  constructor(private readonly options: FabricOptions) {
    this.nodeId = options.identity.id;
    this.role = options.role;
    this.concurrency = options.maxConcurrency ?? 1;
    // A Logic's calls are scheduled like any other request: a request can hop across nodes.
    options.runtime.remote = (app, service, rpc, input, qos) =>
      this.call(app, service, input, qos, rpc ? { rpc } : {});
    const context = options.context;
    if (context) options.runtime.context = (app, request) => context.serve(app, request);
    this.connect();
  }

  get paused(): boolean {
    return this.pausedBy.size > 0;
  }

  /** Stops (or resumes) serving others for `reason`; the relay hears of it at once. */
  pause(reason: string, on = true): void {
    const was = this.paused;
    if (on) this.pausedBy.add(reason);
    else this.pausedBy.delete(reason);
    if (was !== this.paused) this.beatNow();
  }

  /** Why it is paused, for the page. */
  pauseReasons(): string[] {
    return [...this.pausedBy];
  }

  setConcurrency(n: number): void {
    if (n === this.concurrency) return;
    this.concurrency = n;
    while (this.running < this.concurrency && this.queued.length) {
      this.running++;
      this.queued.shift()!();
    }
    this.beatNow();
  }

  private beatNow(): void {
    if (this.socket && this.status === 'joined') this.sendBeat(this.socket, false);
  }

  /** Nodes this one has a direct channel to now. */
  peers(): string[] {
    return this.options.links?.connected() ?? [];
  }

  get publicKey(): string {
    return this.options.identity.publicKey;
  }

  /** Requests this node is running for others right now. */
  get busy(): number {
    return this.running;
  }

  /** Requests from others waiting for a slot right now. */
  get waiting(): number {
    return this.queued.length;
  }

  /**
   * A slot to serve a call in: at once, after the calls waiting before it, or refused when the
   * queue is full (the caller places it elsewhere). Synchronous up to the wait, so the order and
   * the refusal do not depend on timing.
   */
  private slot(): Promise<void> | undefined {
    if (this.running < this.concurrency) {
      this.running++;
      return undefined;
    }
    const max = this.options.maxQueued ?? 16;
    if (this.queued.length >= max) {
      throw new UnavailableError(
        `this node is serving ${this.running} calls with ${this.queued.length} waiting (limit ${this.concurrency} at once, ${max} waiting)`,
      );
    }
    return new Promise<void>((resolve) => this.queued.push(resolve));
  }

  /** Hands the slot to the oldest waiting call, unless concurrency was lowered meanwhile. */
  private freeSlot(): void {
    const next = this.running <= this.concurrency ? this.queued.shift() : undefined;
    if (next) next();
    else this.running--;
  }

  /** Calls `listener` on every status change; answers a function that unsubscribes. */
  onStatus(listener: (s: FabricStatus) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
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

  /** Runs `service` of `app` wherever the QoS is best met. */
  async call(
    app: string,
    service: string,
    input: unknown,
    qos: Qos = {},
    opts: CallOptions = {},
  ): Promise<FabricCallResult> {
    qos = parseQos(qos); // from page code or a host page: checked here, named by field
    if (this.isMe(qos.privacy)) {
      return this.local(app, service, input, qos, opts, 'privacy keeps it on this node');
    }
    // After a local QoS miss this node knows it cannot serve it, whatever its last report said.
    let missed = false;
    if (qos.privacy === undefined) {
      try {
        await this.options.runtime.ensure(app);
        const d = await this.options.runtime.plan(app, service, qos, opts.rpc);
        return await this.local(app, service, input, qos, opts, `served locally: ${d.reason}`);
      } catch (e) {
        if (!(e instanceof QosError)) throw e;
        missed = true;
        if (this.status !== 'joined') {
          // Cut off: the best this node can do beats no answer.
          const why = `offline, best local variant (wanted: ${e.message})`;
          return this.local(app, service, input, {}, opts, why);
        }
      }
    } else if (this.status !== 'joined') {
      throw new QosError(
        'privacy',
        undefined,
        `privacy ${qos.privacy} needs the fabric, and this node is offline`,
      );
    }
    if (missed && this.parent) {
      const r = await this.viaParent(app, service, input, qos, opts.rpc ?? '');
      if (r) return r;
    }
    return this.remote(app, service, input, qos, opts.rpc ?? '', missed ? [this.nodeId] : []);
  }

  private async local(
    app: string,
    service: string,
    input: unknown,
    qos: Qos,
    opts: CallOptions,
    reason: string,
  ): Promise<FabricCallResult> {
    const r = await this.options.runtime.call(app, service, input, qos, opts);
    return { ...r, node: this.nodeId, via: 'local', reason };
  }

  /** Whether a privacy constraint names this node: the device itself, its id or its key. */
  private isMe(privacy: string | undefined): boolean {
    return (
      privacy === 'device' || privacy === this.nodeId || privacy === this.options.identity.publicKey
    );
  }

  /** Where a request would run, and why: this node if it meets the QoS, else the relay's choice. */
  async schedule(
    app: string,
    service: string,
    qos: Qos = {},
    rpc = '',
  ): Promise<{ node: string; rpc: string; estimateMs: number; reason: string }> {
    qos = parseQos(qos);
    const local = async () => {
      const d = await this.options.runtime.plan(app, service, qos, rpc);
      return { node: this.nodeId, rpc: d.rpc, estimateMs: d.estimateMs, reason: d.reason };
    };
    const p = qos.privacy;
    if (this.isMe(p)) return local();
    let exclude: string[] = [];
    if (p === undefined) {
      await this.options.runtime.ensure(app);
      try {
        return await local();
      } catch (e) {
        if (!(e instanceof QosError) || this.status !== 'joined') throw e;
        exclude = [this.nodeId];
      }
    }
    const d = await this.request({ t: 'schedule', id: 0, app, service, qos, rpc, exclude });
    if (d.t !== 'decision') throw new ProtocolError(`expected a decision, got ${d.t}`);
    return { node: d.node, rpc: d.variant || d.rpc, estimateMs: d.estimateMs, reason: d.reason };
  }

  /** Offers a request to this dew's parent fog; undefined when it cannot take it. */
  private async viaParent(
    app: string,
    service: string,
    input: unknown,
    qos: Qos,
    rpc: string,
  ): Promise<FabricCallResult | undefined> {
    const parent = this.parent!;
    const t0 = performance.now();
    try {
      const frame = { t: 'call' as const, id: 0, app, service, rpc, input, qos, probe: true };
      const r = await this.options.links!.call(parent, frame);
      return this.answer(r, parent, 'peer', `parent fog ${parent.slice(0, 8)} met the QoS`, t0);
    } catch (e) {
      const err = fromWire(e);
      if (
        !(err instanceof QosError) &&
        !['E_NO_LINK', 'E_DISCONNECTED', 'E_UNAVAILABLE', 'E_TIMEOUT'].includes(err.code)
      ) {
        throw err;
      }
      this.options.log?.(
        `parent ${parent.slice(0, 8)} did not take it (${err.message}); asking the relay`,
      );
      return undefined;
    }
  }

  /** Asks the relay where to run, then goes there: a data channel if one opens, the relay if not. */
  private async remote(
    app: string,
    service: string,
    input: unknown,
    qos: Qos,
    rpc: string,
    exclude: string[],
  ): Promise<FabricCallResult> {
    // The relay places by what this node last reported: report first if that changed since.
    if (this.socket && this.reported !== this.capacityKey()) this.sendBeat(this.socket, false);
    const d = await this.request({ t: 'schedule', id: 0, app, service, qos, rpc, exclude });
    if (d.t !== 'decision') throw new ProtocolError(`expected a decision, got ${d.t}`);
    const pin = d.pin;
    const opts: CallOptions = { ...(d.rpc ? { rpc: d.rpc } : {}), ...(pin ? { pin } : {}) };
    if (d.node === this.nodeId) return this.local(app, service, input, qos, opts, d.reason);
    const frame = { app, service, rpc: d.rpc, input, qos, ...(pin ? { pin } : {}) };
    const t0 = performance.now();
    const links = this.options.links;
    const noLinkUntil = this.noLink.get(d.node) ?? 0;
    if (links && noLinkUntil <= performance.now()) {
      try {
        const r = await links.call(d.node, { t: 'call', id: 0, ...frame });
        return this.answer(r, d.node, 'peer', d.reason, t0);
      } catch (e) {
        const err = fromWire(e);
        if (placeAgainAfter.has(err.code) && exclude.filter((n) => n !== this.nodeId).length < 3) {
          // The node went away, is full, or stopped answering: place it again without that
          // node. Whatever it might still send for this attempt has nowhere to go.
          this.options.log?.(`${d.node.slice(0, 8)}: ${err.message}; placing again`);
          return this.remote(app, service, input, qos, rpc, [...exclude, d.node]).catch(
            (again: unknown) => {
              // No other node may take it (a QoS pinned to that node...): why the try failed
              // says more than why there is no second one.
              throw again instanceof QosError ? err : again;
            },
          );
        }
        if (err.code !== 'E_NO_LINK') throw err;
        // Not again for a while (a node that serves no channels, like the relay's cloud node,
        // or a network that blocks them): each try costs the whole open timeout.
        this.noLink.set(d.node, performance.now() + noLinkRetryMs);
        this.options.log?.(
          `no data channel to ${d.node.slice(0, 8)} (${err.message}); via the relay for ${noLinkRetryMs / 1000} s`,
        );
      }
    }
    const reply = await this.request({ t: 'call', id: 0, to: d.node, ...frame });
    if (reply.t !== 'result') throw new ProtocolError(`expected a result, got ${reply.t}`);
    return this.answer(reply, reply.node, 'relay', d.reason, t0);
  }

  private answer(
    r: { value: unknown; rpc: string; trace?: TraceEntry[] | undefined },
    node: string,
    via: 'peer' | 'relay',
    reason: string,
    t0: number,
  ): FabricCallResult {
    const ms = performance.now() - t0;
    return { value: r.value, rpc: r.rpc, ms, trace: r.trace ?? [], node, via, reason };
  }

  /** Runs a call another node sent (through the relay or a data channel) and answers it. */
  async serveCall(msg: {
    app: string;
    service: string;
    rpc: string;
    input: unknown;
    qos: Qos;
    pin?: Record<string, string> | undefined;
    probe?: boolean | undefined;
  }): Promise<{ value: unknown; rpc: string; ms: number; trace: TraceEntry[] }> {
    if (this.paused) throw new UnavailableError('this node is paused');
    const p = msg.qos.privacy;
    // The relay placed it here, but privacy is checked where the data lands too.
    if (p !== undefined && (p === 'device' || !this.isMe(p))) {
      throw new QosError('privacy', undefined, `privacy ${p} does not allow this node`);
    }
    const wait = this.slot();
    try {
      if (wait) await wait;
      await this.options.runtime.ensure(msg.app);
      // A child's offer: taken only if this node meets the QoS (it throws the QosError if not).
      if (msg.probe) await this.options.runtime.plan(msg.app, msg.service, msg.qos, msg.rpc);
      const opts: CallOptions = {
        ...(msg.rpc ? { rpc: msg.rpc } : {}),
        ...(msg.pin ? { pin: msg.pin } : {}),
      };
      const r = await this.options.runtime.call(msg.app, msg.service, msg.input, msg.qos, opts);
      this.served++;
      this.contributedMs += r.ms;
      const trace = r.trace.map(({ service, rpc, kind, ms, backend }) => ({
        service,
        rpc,
        kind,
        ms,
        ...(backend ? { backend } : {}),
      }));
      return { value: r.value, rpc: r.rpc, ms: r.ms, trace };
    } finally {
      this.freeSlot();
    }
  }

  close(): void {
    this.setStatus('closed');
    clearTimeout(this.retry);
    clearTimeout(this.heartbeat);
    this.socket?.close(1000, 'node closing');
    this.options.links?.close();
    this.failPending(new ClosedError('the fabric link was closed'));
  }

  private setStatus(s: FabricStatus): void {
    if (this.status === s || this.status === 'closed') return;
    this.status = s;
    for (const l of this.listeners) l(s);
  }

  private connect(): void {
    if (this.status === 'closed') return;
    this.setStatus(this.attempt === 0 ? 'connecting' : 'offline');
    const ws = this.options.socket(this.options.url);
    this.socket = ws;
    ws.binaryType = 'arraybuffer';
    ws.onmessage = (ev) => {
      let msg: ToNode;
      try {
        msg = decodeFrame(new Uint8Array(ev.data as ArrayBuffer), 'toNode');
      } catch (e) {
        this.options.log?.(`relay sent a bad frame: ${(e as Error).message}`);
        ws.close(1008, 'bad frame');
        return;
      }
      void this.onFrame(ws, msg).catch((e: unknown) =>
        this.options.log?.(`fabric: ${(e as Error).message}`),
      );
    };
    ws.onclose = (ev) => {
      if (this.socket !== ws) return;
      clearTimeout(this.heartbeat);
      this.options.context?.offline();
      this.failPending(
        new DisconnectedError(`lost the relay (${ev.code}${ev.reason ? `: ${ev.reason}` : ''})`),
      );
      if (this.status === 'closed') return;
      this.setStatus('offline');
      const { initialMs, maxMs } = this.options.backoff ?? { initialMs: 250, maxMs: 10_000 };
      const delay = Math.min(maxMs, initialMs * 2 ** this.attempt++) * (0.75 + Math.random() / 2);
      this.retry = setTimeout(() => this.connect(), delay);
    };
    ws.onerror = () => {};
  }

  private send(ws: SocketLike, frame: ToRelay): void {
    if (ws.readyState === 1) ws.send(encodeFrame(frame));
  }

  private async onFrame(ws: SocketLike, msg: ToNode): Promise<void> {
    switch (msg.t) {
      case 'challenge': {
        const { identity, role } = this.options;
        const caps = await this.options.capabilities();
        this.send(ws, {
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
        this.send(ws, { t: 'join', nonce: msg.nonce, signature });
        return;
      }
      case 'welcome':
        this.nodeId = msg.nodeId;
        this.trusted = msg.trusted;
        this.parent = msg.parent;
        this.attempt = 0;
        this.options.links?.start(
          msg.nodeId,
          msg.peerToken,
          async (call) => ({ ...(await this.serveCall(call)), t: 'result', id: call.id }),
          (from, f) => {
            // Context changes come by channel only from this dew's parent fog, numbered by the
            // relay like those it sends itself.
            if (from !== this.parent) return;
            void this.options.context
              ?.receive({ t: 'ctx-op', prev: f.prev, seq: f.seq, op: f.op })
              .catch((e: unknown) => this.options.log?.(`context: ${(e as Error).message}`));
          },
        );
        // A dew keeps a channel to its parent: context changes arrive there.
        if (msg.parent) this.options.links?.connect(msg.parent);
        this.setStatus('joined');
        this.beat(ws, msg.heartbeatMs, true);
        void this.options.context?.online((frame) => this.send(ws, frame));
        return;
      case 'ping':
        this.send(ws, { t: 'pong', ts: msg.ts });
        return;
      case 'ctx-nack':
        this.options.log?.(`context write refused: ${msg.error.message}`);
        return this.options.context?.receive(msg);
      case 'ctx-ack':
      case 'ctx-op':
      case 'ctx-catchup':
      case 'ctx-keys':
        return this.options.context?.receive(msg);
      case 'ctx-fan': {
        // A fog passes the change on to its dew children; those it has no channel to now, the
        // relay serves itself.
        const unsent = msg.to.filter(
          (t) =>
            !this.options.links?.send(t.node, {
              t: 'ctx-op',
              id: 0,
              prev: t.prev,
              seq: msg.seq,
              op: msg.op,
            }),
        );
        if (unsent.length) this.send(ws, { t: 'ctx-unsent', seq: msg.seq, to: unsent });
        return;
      }
      case 'parent':
        // Context changes come by channel only from the parent: from now on, this one.
        this.parent = msg.node;
        if (msg.node) this.options.links?.connect(msg.node);
        return;
      case 'gone':
        if (msg.node === this.parent) this.parent = undefined;
        this.noLink.delete(msg.node);
        this.options.links?.drop(msg.node);
        return;
      case 'call':
        return this.serve(ws, msg);
      default: {
        const id = msg.id;
        const p = id === undefined ? undefined : this.pending.get(id);
        if (!p) {
          if (msg.t === 'error') this.options.log?.(`relay: ${msg.error.message}`);
          return;
        }
        this.pending.delete(id!);
        clearTimeout(p.timer);
        if (msg.t === 'error') {
          p.reject(fromWire(msg.error));
        } else p.resolve(msg);
      }
    }
  }

  private async serve(ws: SocketLike, msg: Extract<ToNode, { t: 'call' }>): Promise<void> {
    try {
      const r = await this.serveCall(msg);
      this.send(ws, { t: 'result', id: msg.id, ...r });
    } catch (e) {
      this.send(ws, { t: 'error', id: msg.id, error: wireError(e) });
    }
  }

  /** Apps and runnable variants, as last put in a heartbeat. */
  private reported = '';
  private capacityKey(): string {
    const rt = this.options.runtime;
    return JSON.stringify([rt.apps().map((m) => m.name), rt.runnable()]);
  }

  private beat(ws: SocketLike, everyMs: number, withCaps = false): void {
    this.sendBeat(ws, withCaps);
    this.heartbeat = setTimeout(() => this.beat(ws, everyMs), everyMs);
  }

  private sendBeat(ws: SocketLike, withCaps: boolean): void {
    const rt = this.options.runtime;
    const stats: Record<string, { count: number; p50: number }> = {};
    for (const [k, v] of Object.entries(rt.stats.all())) stats[k] = { count: v.count, p50: v.p50 };
    this.reported = this.capacityKey();
    const frame: ToRelay = {
      t: 'heartbeat',
      load: { queue: this.running + this.queued.length, maxConcurrency: this.concurrency },
      apps: rt.apps().map((m) => m.name),
      models: rt.runnable(),
      stats,
      paused: this.paused,
      ...(this.role === 'fog' && this.options.links && { links: this.options.links.connected() }),
      ...(this.options.context && { context: this.options.context.usage() }),
    };
    if (withCaps)
      void this.options.capabilities().then((caps) => this.send(ws, { ...frame, caps }));
    else this.send(ws, frame);
  }

  /** One request to the relay: an id, a timeout, and a rejection if the link drops. */
  private request(frame: Extract<ToRelay, { t: 'schedule' | 'call' }>): Promise<ToNode> {
    const ws = this.socket;
    if (!ws || this.status !== 'joined') {
      return Promise.reject(new DisconnectedError('not connected to the relay'));
    }
    const id = this.nextId++;
    const timeoutMs = this.options.requestTimeoutMs ?? 60_000;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new TimeoutError(`the relay did not answer "${frame.t}" within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, { resolve, reject, timer });
      this.send(ws, { ...frame, id });
    });
  }

  private failPending(e: BrumeError): void {
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.reject(e);
    }
    this.pending.clear();
  }
}
