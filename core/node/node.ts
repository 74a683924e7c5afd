/**
 * One Brume node as the page, the cloud node and tests see it: its runtime, its link to the relay,
 * how it serves others, where its own calls go, and its context store, wired together. Built by
 * `createNode()` (core/node/create.ts); this class only routes frames between the parts.
 */
import type { NodeContext } from '../context/client';
import { toWire } from '../errors';
import type { Identity } from '../identity';
import type { InvokeAnswer, ScheduleAnswer } from '../page-api';
import type { Capabilities, Role, ToNode } from '../protocol';
import type { CallOptions, RemoteCall, Runtime } from '../runtime';
import type { Qos } from '../scheduler';
import { type SessionHandle, type SessionOptions, Sessions } from '../session/client';
import { passOn } from './fog';
import type { PeerLinks, SocketLike } from './links';
import {
  type Heartbeat,
  type LinkStatus,
  type RelayConnection,
  RelayLink,
  type Welcome,
} from './relay-link';
import { Router } from './router';
import { type ServeRequest, type ServeResult, Serving } from './serving';

export interface NodeParts {
  runtime: Runtime;
  identity: Identity;
  role: Role;
  /** The relay's WebSocket endpoint, e.g. ws://127.0.0.1:8787/ws */
  url: string;
  socket: (url: string) => SocketLike;
  capabilities: () => Promise<Capabilities>;
  context?: NodeContext | undefined;
  links?: PeerLinks | undefined;
  maxConcurrency?: number | undefined;
  maxQueued?: number | undefined;
  requestTimeoutMs?: number | undefined;
  backoff?: { initialMs: number; maxMs: number } | undefined;
  log?: ((line: string) => void) | undefined;
}

export class BrumeNode {
  nodeId: string;
  trusted = false;
  readonly role: Role;
  /** The trusted fog the relay gave this dew as parent, while it is there. */
  parent: string | undefined;
  readonly runtime: Runtime;
  readonly context: NodeContext | undefined;
  private readonly link: RelayLink;
  private readonly serving: Serving;
  private readonly router: Router;
  /** Apps and runnable variants, as last put in a heartbeat. */
  private reported = '';
  /** The sessions this node opened as caller (§5.9). */
  private readonly sessions: Sessions<InvokeAnswer>;
  /** Why this node is leaving its sessions (hidden, paused, unloading…); empty: it is not. */
  private readonly leaving = new Set<string>();

  constructor(private readonly parts: NodeParts) {
    this.nodeId = parts.identity.id;
    this.role = parts.role;
    this.runtime = parts.runtime;
    this.context = parts.context;
    this.link = new RelayLink({
      url: parts.url,
      socket: parts.socket,
      identity: parts.identity,
      role: parts.role,
      capabilities: parts.capabilities,
      heartbeat: () => this.heartbeat(),
      onWelcome: (msg) => this.welcome(msg),
      onJoined: () => {
        void this.context?.online((frame) => this.link.send(frame));
        // A relay that did not hear it (a new connection) hears that this node is leaving.
        if (this.leaving.size > 0) this.sendLeave();
        // The relay closed this node's sessions with its last socket: each is placed again.
        void this.sessions.rejoined();
        // Versions made current while this node was away reach it now (§5.7).
        this.runtime.sync().then(
          (apps) => apps.length && this.link.beatNow(),
          (e: unknown) => parts.log?.(`apps: ${(e as Error).message}`),
        );
      },
      onLost: () => {
        this.context?.offline();
        this.sessions.offline();
      },
      onFrame: (msg, conn) => this.onFrame(msg, conn),
      ...(parts.requestTimeoutMs !== undefined && { requestTimeoutMs: parts.requestTimeoutMs }),
      ...(parts.backoff && { backoff: parts.backoff }),
      ...(parts.log && { log: parts.log }),
    });
    // The relay places by a node's first backend: tell it as soon as a measurement changes them,
    // not at the next join.
    parts.runtime.onBackendsChanged(() => this.link.beatNow(true));
    // A pool grew or shrank: the relay's view of its workers follows at once.
    parts.runtime.scaleLog.listen(() => this.link.beatNow());
    this.serving = new Serving({
      runtime: parts.runtime,
      isMe: (p) => this.isMe(p),
      changed: () => this.link.beatNow(),
      ...(parts.maxConcurrency !== undefined && { maxConcurrency: parts.maxConcurrency }),
      ...(parts.maxQueued !== undefined && { maxQueued: parts.maxQueued }),
    });
    this.router = new Router({
      runtime: parts.runtime,
      link: this.link,
      links: parts.links,
      me: () => this.nodeId,
      parent: () => this.parent,
      isMe: (p) => this.isMe(p),
      beforeAsk: () => {
        if (this.reported !== this.capacityKey()) this.link.beatNow();
      },
      log: parts.log,
    });
    this.sessions = new Sessions({
      open: async (frame) => {
        const answer = await this.link.request({ ...frame, id: 0 });
        if (answer.t !== 'session')
          throw new Error(`the relay answered "${answer.t}" to a session`);
        return answer.session;
      },
      send: (frame) => this.link.send(frame),
      call: (app, service, input, node, rpc) =>
        this.router.call(app, service, input, { privacy: node }, rpc ? { rpc } : {}),
    });
  }

  /** Opens the link to the relay (createNode does). */
  connect(): void {
    this.link.connect();
  }

  get status(): LinkStatus {
    return this.link.status;
  }

  get publicKey(): string {
    return this.parts.identity.publicKey;
  }

  onStatus(listener: (s: LinkStatus) => void): () => void {
    return this.link.onStatus(listener);
  }

  whenJoined(timeoutMs?: number): Promise<void> {
    return this.link.whenJoined(timeoutMs);
  }

  /** Runs `service` of `app` wherever the QoS is best met. */
  call(
    app: string,
    service: string,
    input: unknown,
    qos?: Qos,
    opts?: CallOptions,
  ): Promise<InvokeAnswer> {
    return this.router.call(app, service, input, qos, opts);
  }

  /**
   * Opens a session (PROTOCOL.md §5.9): placed once by the relay, its calls go to that node until
   * the relay moves it.
   */
  session(
    app: string,
    service: string,
    options: SessionOptions,
  ): Promise<SessionHandle<InvokeAnswer>> {
    return this.sessions.session(app, service, options);
  }

  /**
   * This node leaves the sessions it serves for `reason` (`on`), or no longer for it: while any
   * reason holds, the relay hands them to other nodes and places none here (§5.9). Pausing for
   * any reason is one.
   */
  leave(reason: string, on = true): void {
    const was = this.leaving.size > 0;
    if (on) this.leaving.add(reason);
    else this.leaving.delete(reason);
    if (was !== this.leaving.size > 0) this.sendLeave();
  }

  private sendLeave(): void {
    const reason = [...this.leaving].join(',').slice(0, 64);
    this.link.send({ t: 'session-leave', on: this.leaving.size > 0, reason });
  }

  /** Where a request would run, and why. */
  schedule(app: string, service: string, qos?: Qos, rpc?: string): Promise<ScheduleAnswer> {
    return this.router.schedule(app, service, qos, rpc);
  }

  /**
   * Runs a call another node sent (through the relay or a data channel) and answers it; one still
   * waiting for a slot when `gone` aborts (its relay socket closed) never runs (E_DISCONNECTED).
   */
  serveCall(msg: ServeRequest, gone?: AbortSignal): Promise<ServeResult> {
    return this.serving.serveCall(msg, gone);
  }

  /** A Logic's call to another service: the runtime's `remote`. */
  readonly logicCall: RemoteCall = (...args) => this.router.logicCall(...args);

  get paused(): boolean {
    return this.serving.paused;
  }
  /** Stops (or resumes) serving others for `reason`; the relay hears of it at once. */
  pause(reason: string, on = true): void {
    // The relay hands its sessions over first: the next frames go to their new nodes.
    this.leave(`paused:${reason}`, on);
    this.serving.pause(reason, on);
  }
  pauseReasons(): string[] {
    return this.serving.pauseReasons();
  }
  /** Requests it runs at once for others (lowered while the tab is hidden). */
  get concurrency(): number {
    return this.serving.concurrency;
  }
  setConcurrency(n: number): void {
    this.serving.setConcurrency(n);
  }
  /** Requests this node is running for others, and waiting for a slot, right now. */
  get busy(): number {
    return this.serving.busy;
  }
  get waiting(): number {
    return this.serving.waiting;
  }
  /** Requests served for other nodes, and the milliseconds of compute they took. */
  get served(): number {
    return this.serving.served;
  }
  get contributedMs(): number {
    return this.serving.contributedMs;
  }

  /** Nodes this one has a direct channel to now. */
  peers(): string[] {
    return this.parts.links?.connected() ?? [];
  }

  close(): void {
    this.link.close();
    this.sessions.close();
    this.parts.links?.close();
  }

  /** Whether a privacy constraint names this node: the device itself, its id or its key. */
  private isMe(privacy: string | undefined): boolean {
    return privacy === 'device' || privacy === this.nodeId || privacy === this.publicKey;
  }

  private welcome(msg: Welcome): void {
    this.nodeId = msg.nodeId;
    this.trusted = msg.trusted;
    this.parent = msg.parent;
    const links = this.parts.links;
    links?.start(
      msg.nodeId,
      msg.peerToken,
      // Late-bound: what serves a call is this node's serveCall, as it is at the time.
      async (call) => ({ ...(await this.serveCall(call)), t: 'result', id: call.id }),
      (from, f) => {
        // Context changes come by channel only from this dew's parent fog, numbered by the
        // relay like those it sends itself.
        if (from !== this.parent) return;
        void this.context
          ?.receive({ t: 'ctx-op', prev: f.prev, seq: f.seq, op: f.op })
          .catch((e: unknown) => this.parts.log?.(`context: ${(e as Error).message}`));
      },
    );
    // A dew keeps a channel to its parent: context changes arrive there.
    if (msg.parent) links?.connect(msg.parent);
  }

  private async onFrame(msg: ToNode, conn: RelayConnection): Promise<void> {
    const links = this.parts.links;
    switch (msg.t) {
      case 'ctx-nack':
        this.parts.log?.(`context write refused: ${msg.error.message}`);
        return this.context?.receive(msg);
      case 'ctx-ack':
      case 'ctx-op':
      case 'ctx-catchup':
      case 'ctx-keys':
      case 'ctx-at':
        return this.context?.receive(msg);
      case 'ctx-fan': {
        // Those it has no channel to now, the relay serves itself.
        const unsent = passOn(msg, (node, f) => links?.send(node, f) ?? false);
        if (unsent) this.link.send(unsent);
        return;
      }
      case 'parent':
        // Context changes come by channel only from the parent: from now on, this one.
        this.parent = msg.node;
        if (msg.node) links?.connect(msg.node);
        return;
      case 'drain':
        // Its link closes once the relay's calls in flight are done; the backoff reconnects.
        this.parts.log?.(`the relay is shutting down (within ${msg.ms} ms); reconnecting after`);
        return;
      case 'app':
        // A deploy or a rollback: new calls wait for the manifest and run it (§5.7); the relay
        // hears of the version held at once.
        return this.runtime.announce(msg.name, msg.version).then(
          () => this.link.beatNow(),
          (e: unknown) =>
            this.parts.log?.(`app ${msg.name}@${msg.version}: ${(e as Error).message}`),
        );
      case 'session-moved':
        return this.sessions.moved(msg);
      case 'session-warm':
        // A session may come here next: its app's files, models and workers, ready before it.
        return this.runtime
          .ensure(msg.app)
          .then(() => this.runtime.warm(msg.app))
          .catch((e: unknown) => this.parts.log?.(`warming ${msg.app}: ${(e as Error).message}`));
      case 'gone':
        if (msg.node === this.parent) this.parent = undefined;
        this.router.forget(msg.node);
        links?.drop(msg.node);
        return;
      case 'call':
        // The relay's call on this socket: dropped unstarted if the socket closes (the relay has
        // placed it again), and answered on this socket only — its id means nothing on the next.
        try {
          const r = await this.serveCall(msg, conn.closed);
          conn.send({ t: 'result', id: msg.id, ...r });
        } catch (e) {
          conn.send({ t: 'error', id: msg.id, error: toWire(e) });
        }
        return;
    }
  }

  /** What this node can run: the apps, their runnable variants and the versions it holds. */
  private capacity() {
    const rt = this.runtime;
    return { apps: rt.apps().map((m) => m.name), models: rt.runnable(), versions: rt.versions() };
  }

  private capacityKey(c = this.capacity()): string {
    return JSON.stringify([c.apps, c.models, c.versions]);
  }

  private heartbeat(): Heartbeat {
    const rt = this.runtime;
    const stats: Record<string, { count: number; p50: number }> = {};
    for (const [k, v] of Object.entries(rt.stats.all())) stats[k] = { count: v.count, p50: v.p50 };
    const capacity = this.capacity();
    this.reported = this.capacityKey(capacity);
    const links = this.parts.links;
    const exits = rt.exits();
    const workersMax = rt.workersMax();
    return {
      t: 'heartbeat',
      load: { queue: this.busy + this.waiting, maxConcurrency: this.concurrency },
      ...capacity,
      stats,
      paused: this.paused,
      // The runtime fetches any deployed version a call asks for (§5.7).
      fetch: true,
      ...(this.role === 'fog' && links && { links: links.connected() }),
      ...(this.context && { context: this.context.usage() }),
      workers: Object.fromEntries(
        Object.entries(rt.workers()).map(([k, w]) => [k, w.workers + w.starting]),
      ),
      scaled: { grows: rt.scaleLog.grows, shrinks: rt.scaleLog.shrinks },
      ...(Object.keys(workersMax).length > 0 && { workersMax }),
      ...(Object.keys(exits).length > 0 && { exits }),
    };
  }
}
