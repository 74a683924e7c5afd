/**
 * Where a node's own calls run, local-first: on this node when its own figures meet the QoS, else
 * offered to its parent fog, else where the relay places them — over a data channel when one
 * opens, through the relay otherwise. A call whose node is lost, full or silent is placed again
 * without it; a node cut off from the relay serves itself with the best variant it has. A decision
 * the relay leases is reused for calls like it until it expires or is revoked (core/node/leases.ts,
 * PROTOCOL.md §5.3.2), saving the round trip that asks; a call on a lease that fails is placed
 * again by asking the relay, as any other. A Logic's
 * calls to other services come through here too (`logicCall`), so a request can hop across nodes.
 * @example const r = await router.call('digits', 'classify', input, { accuracy: 0.96 });
 */
import { fromWire, ProtocolError, QosError } from '../errors';
import type { InvokeAnswer, ScheduleAnswer } from '../page-api';
import { type Lease, parseQos } from '../protocol';
import type { CallOptions, RemoteCall, Runtime, TraceEntry } from '../runtime';
import type { Qos } from '../scheduler';
import { newTraceId, parseTraceId } from '../trace';
import { type Decision, LeaseCache } from './leases';
import type { PeerLinks } from './links';
import type { RelayLink } from './relay-link';

export interface RouterOptions {
  runtime: Runtime;
  link: RelayLink;
  links?: PeerLinks | undefined;
  /** This node's id, and its parent fog while it has one (both change at each join). */
  me(): string;
  parent(): string | undefined;
  /** Whether a privacy constraint names this node: the device itself, its id or its key. */
  isMe(privacy: string | undefined): boolean;
  /** Before asking the relay to place: report this node's apps and variants if they changed. */
  beforeAsk(): void;
  log?: ((line: string) => void) | undefined;
}

const noLinkRetryMs = 30_000;
/** A peer call that failed this way is placed again without that node. */
const placeAgainAfter = new Set(['E_DISCONNECTED', 'E_UNAVAILABLE', 'E_TIMEOUT']);
/** Other nodes a call is placed on at most after the first one failed. */
const maxPlaceAgain = 3;
/** What a parent fog's refusal may be: the dew then asks the relay. */
const parentDeclines = new Set([...placeAgainAfter, 'E_NO_LINK']);

export class Router {
  /** Nodes no data channel opened to, until when calls to them go through the relay. */
  private readonly noLink = new Map<string, number>();
  /** The parent fog no data channel opened to, while it is this node's parent. */
  private parentNoLink: string | undefined;
  /** Decisions the relay leased to this node. */
  readonly leases = new LeaseCache();

  constructor(private readonly options: RouterOptions) {
    options.link.onRevoke((msg) => this.leases.revoke(msg.ids));
    // The relay forgets a connection's leases when it closes; so does this node.
    options.link.onStatus((s) => {
      if (s !== 'joined') this.leases.clear();
    });
  }

  /** Runs `service` of `app` wherever the QoS is best met. */
  async call(
    app: string,
    service: string,
    input: unknown,
    qos: Qos = {},
    opts: CallOptions = {},
  ): Promise<InvokeAnswer> {
    qos = parseQos(qos); // from page code or a host page: checked here, named by field
    // The request's entry into the fabric, unless it came with its trace (a Logic's call).
    const traceId =
      opts.traceId === undefined ? newTraceId() : parseTraceId(opts.traceId, 'opts.traceId');
    opts = { ...opts, traceId };
    const { runtime, link } = this.options;
    if (await this.isPipeline(app, service)) return this.pipeline(app, service, input, qos, opts);
    if (this.options.isMe(qos.privacy)) {
      // Like any call served here: an app deployed since this node listed them is fetched first.
      await runtime.ensure(app);
      return this.local(app, service, input, qos, opts, 'privacy keeps it on this node');
    }
    // After a local QoS miss this node knows it cannot serve it, whatever its last report said.
    let missed = false;
    if (qos.privacy === undefined) {
      try {
        await runtime.ensure(app);
        const d = await runtime.plan(app, service, qos, opts.rpc);
        return await this.local(app, service, input, qos, opts, `served locally: ${d.reason}`);
      } catch (e) {
        if (!(e instanceof QosError)) throw e;
        missed = true;
        if (link.status !== 'joined') {
          // Cut off: the best this node can do beats no answer.
          const why = `offline, best local variant (wanted: ${e.message})`;
          return this.local(app, service, input, {}, opts, why);
        }
      }
    } else if (link.status !== 'joined') {
      throw new QosError(
        'privacy',
        undefined,
        `privacy ${qos.privacy} needs the fabric, and this node is offline`,
      );
    }
    // A parent no channel opened to (a server node has no WebRTC) is not offered the call again,
    // nor is any by a node without direct channels: the relay places it, on that parent when it
    // is the best node (PROTOCOL.md §5.1).
    const parent = this.options.links ? this.options.parent() : undefined;
    if (missed && parent && parent !== this.parentNoLink) {
      const r = await this.viaParent(app, service, input, qos, opts.rpc ?? '', traceId);
      if (r) return r;
    }
    const exclude = missed ? [this.options.me()] : [];
    return this.remote(app, service, input, qos, opts.rpc ?? '', exclude, traceId);
  }

  /** Whether `service` names a pipeline of `app` (the app fetched first if it is new here). */
  private async isPipeline(app: string, service: string): Promise<boolean> {
    const { runtime } = this.options;
    if (!runtime.apps().some((m) => m.name === app)) {
      await runtime.ensure(app).catch(() => {}); // an unknown app fails as any call does, below
    }
    const m = runtime.apps().find((x) => x.name === app);
    return m?.pipelines !== undefined && Object.hasOwn(m.pipelines, service);
  }

  /**
   * A pipeline (PROTOCOL.md §5.8): on this node alone when privacy keeps it here or the node is
   * cut off; else the relay places each stage over the fabric, this node being the source.
   */
  private async pipeline(
    app: string,
    service: string,
    input: unknown,
    qos: Qos,
    opts: CallOptions,
  ): Promise<InvokeAnswer> {
    const { link } = this.options;
    if (this.options.isMe(qos.privacy) || link.status !== 'joined') {
      const why = link.status === 'joined' ? 'privacy keeps every stage here' : 'offline';
      return this.local(app, service, input, qos, opts, `pipeline on this node: ${why}`);
    }
    const t0 = performance.now();
    const traceId = opts.traceId!;
    const frame = { t: 'call' as const, id: 0, to: '' as const, app, service, rpc: '', input, qos };
    const reply = await link.request({ ...frame, traceId });
    if (reply.t !== 'result') throw new ProtocolError(`expected a result, got ${reply.t}`);
    const why = 'the relay placed each stage (see the trace)';
    const a = answer(reply, reply.node, 'relay', why, t0, traceId);
    return reply.quality === undefined ? a : { ...a, quality: reply.quality };
  }

  /** A Logic's call to another service: scheduled like any other request, in its trace. */
  logicCall: RemoteCall = (app, service, rpc, input, qos, traceId) =>
    this.call(app, service, input, qos, { ...(rpc ? { rpc } : {}), traceId });

  /** Where a request would run, and why: this node if it meets the QoS, else the relay's choice. */
  async schedule(app: string, service: string, qos: Qos = {}, rpc = ''): Promise<ScheduleAnswer> {
    qos = parseQos(qos);
    const { runtime, link } = this.options;
    const local = async () => {
      const { pin: _, ...d } = await runtime.plan(app, service, qos, rpc);
      return { node: this.options.me(), ...d };
    };
    const p = qos.privacy;
    if (this.options.isMe(p)) {
      await runtime.ensure(app);
      return local();
    }
    let exclude: string[] = [];
    if (p === undefined) {
      await runtime.ensure(app);
      try {
        return await local();
      } catch (e) {
        if (!(e instanceof QosError) || link.status !== 'joined') throw e;
        exclude = [this.options.me()];
      }
    }
    const { d } = await this.decide(app, service, qos, rpc, exclude);
    const { node, variant, estimateMs, reason } = d;
    return { node, rpc: d.rpc, variant, estimateMs, reason };
  }

  /** `node` left the fabric: a channel may open to a node of that id again. */
  forget(node: string): void {
    this.noLink.delete(node);
    this.leases.forget(node);
  }

  /**
   * Where the relay places a request: its leased decision while this node holds a live one for
   * the same key, else the relay's answer to `schedule` (which may carry a lease). Only a first
   * placement is leased: one that excludes nodes besides this one is a retry, always asked.
   */
  private async decide(
    app: string,
    service: string,
    qos: Qos,
    rpc: string,
    exclude: string[],
    traceId?: string,
  ): Promise<{ d: Decision; key: string | undefined }> {
    const self = exclude.length === 1 && exclude[0] === this.options.me();
    const key =
      exclude.length === 0 || self ? LeaseCache.key(app, service, rpc, qos, self) : undefined;
    const leased = key === undefined ? undefined : this.leases.get(key);
    if (leased) return { d: leased, key };
    // The relay places by what this node last reported: report first if that changed since.
    this.options.beforeAsk();
    const askedAt = performance.now();
    const frame = {
      t: 'schedule' as const,
      id: 0,
      app,
      service,
      qos,
      rpc,
      exclude,
      ...(traceId && { traceId }),
    };
    const d = await this.options.link.request(key ? { ...frame, lease: true } : frame);
    if (d.t !== 'decision') throw new ProtocolError(`expected a decision, got ${d.t}`);
    if (key !== undefined) {
      this.leases.asked++;
      const covers = (l: Lease) =>
        l.app === app &&
        l.service === service &&
        l.rpc === rpc &&
        l.qos.latencyMs === qos.latencyMs &&
        l.qos.accuracy === qos.accuracy &&
        l.qos.privacy === qos.privacy &&
        l.qos.version === qos.version;
      this.leases.put(key, d, askedAt, covers);
    }
    return { d, key };
  }

  private async local(
    app: string,
    service: string,
    input: unknown,
    qos: Qos,
    opts: CallOptions,
    reason: string,
  ): Promise<InvokeAnswer> {
    const r = await this.options.runtime.call(app, service, input, qos, opts);
    return { ...r, node: this.options.me(), via: 'local', reason };
  }

  /** Offers a request to this dew's parent fog; undefined when it cannot take it. */
  private async viaParent(
    app: string,
    service: string,
    input: unknown,
    qos: Qos,
    rpc: string,
    traceId: string,
  ): Promise<InvokeAnswer | undefined> {
    const parent = this.options.parent()!;
    const t0 = performance.now();
    try {
      const frame = { t: 'call' as const, id: 0, app, service, rpc, input, qos, traceId };
      const r = await this.options.links!.call(parent, { ...frame, probe: true });
      const why = `parent fog ${parent.slice(0, 8)} met the QoS`;
      return answer(r, parent, 'peer', why, t0, traceId);
    } catch (e) {
      const err = fromWire(e);
      if (!(err instanceof QosError) && !parentDeclines.has(err.code)) throw err;
      if (err.code === 'E_NO_LINK') {
        this.parentNoLink = parent;
        this.noLink.set(parent, performance.now() + noLinkRetryMs);
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
    traceId: string,
  ): Promise<InvokeAnswer> {
    const { link, links } = this.options;
    const { d, key } = await this.decide(app, service, qos, rpc, exclude, traceId);
    const pin = d.pin;
    const opts: CallOptions = {
      ...(d.rpc ? { rpc: d.rpc } : {}),
      ...(pin ? { pin } : {}),
      traceId,
    };
    if (d.node === this.options.me()) return this.local(app, service, input, qos, opts, d.reason);
    const frame = { app, service, rpc: d.rpc, input, qos, ...(pin ? { pin } : {}), traceId };
    const t0 = performance.now();
    if (links && (this.noLink.get(d.node) ?? 0) <= performance.now()) {
      try {
        const r = await links.call(d.node, { t: 'call', id: 0, ...frame });
        return answer(r, d.node, 'peer', d.reason, t0, traceId);
      } catch (e) {
        const err = fromWire(e);
        const others = exclude.filter((n) => n !== this.options.me()).length;
        if (placeAgainAfter.has(err.code) && others < maxPlaceAgain) {
          // The node went away, is full, or stopped answering: place it again without that
          // node. Whatever it might still send for this attempt has nowhere to go.
          this.options.log?.(`${d.node.slice(0, 8)}: ${err.message}; placing again`);
          if (key !== undefined) this.leases.drop(key);
          return this.remote(app, service, input, qos, rpc, [...exclude, d.node], traceId).catch(
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
    let reply: Awaited<ReturnType<typeof link.request>>;
    try {
      reply = await link.request({ t: 'call', id: 0, to: d.node, ...frame });
    } catch (e) {
      // The relay already placed it again where it could: the lease chose badly, ask next time.
      if (key !== undefined) this.leases.drop(key);
      throw e;
    }
    if (reply.t !== 'result') throw new ProtocolError(`expected a result, got ${reply.t}`);
    // Lost or refused there, the relay ran it elsewhere: that node's lease is stale.
    if (key !== undefined && reply.node !== d.node) this.leases.drop(key);
    return answer(reply, reply.node, 'relay', d.reason, t0, traceId);
  }
}

function answer(
  r: {
    value: unknown;
    rpc: string;
    version?: string | undefined;
    trace?: TraceEntry[] | undefined;
  },
  node: string,
  via: 'peer' | 'relay',
  reason: string,
  t0: number,
  traceId: string,
): InvokeAnswer {
  const ms = performance.now() - t0;
  // A node older than versions does not say which ran: ''.
  const version = r.version ?? '';
  return {
    value: r.value,
    rpc: r.rpc,
    ms,
    version,
    trace: r.trace ?? [],
    traceId,
    node,
    via,
    reason,
  };
}
