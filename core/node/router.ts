/**
 * Where a node's own calls run, local-first: on this node when its own figures meet the QoS, else
 * offered to its parent fog, else where the relay places them — over a data channel when one
 * opens, through the relay otherwise. A call whose node is lost, full or silent is placed again
 * without it; a node cut off from the relay serves itself with the best variant it has. A Logic's
 * calls to other services come through here too (`logicCall`), so a request can hop across nodes.
 * @example const r = await router.call('digits', 'classify', input, { accuracy: 0.96 });
 */
import { fromWire, ProtocolError, QosError } from '../errors';
import type { InvokeAnswer, ScheduleAnswer } from '../page-api';
import { parseQos } from '../protocol';
import type { CallOptions, Runtime, TraceEntry } from '../runtime';
import type { Qos } from '../scheduler';
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

  constructor(private readonly options: RouterOptions) {}

  /** Runs `service` of `app` wherever the QoS is best met. */
  async call(
    app: string,
    service: string,
    input: unknown,
    qos: Qos = {},
    opts: CallOptions = {},
  ): Promise<InvokeAnswer> {
    qos = parseQos(qos); // from page code or a host page: checked here, named by field
    const { runtime, link } = this.options;
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
    if (missed && this.options.parent()) {
      const r = await this.viaParent(app, service, input, qos, opts.rpc ?? '');
      if (r) return r;
    }
    const exclude = missed ? [this.options.me()] : [];
    return this.remote(app, service, input, qos, opts.rpc ?? '', exclude);
  }

  /** A Logic's call to another service: scheduled like any other request. */
  logicCall = (
    app: string,
    service: string,
    rpc: string,
    input: unknown,
    qos: Qos,
  ): Promise<InvokeAnswer> => this.call(app, service, input, qos, rpc ? { rpc } : {});

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
    const d = await link.request({ t: 'schedule', id: 0, app, service, qos, rpc, exclude });
    if (d.t !== 'decision') throw new ProtocolError(`expected a decision, got ${d.t}`);
    const { node, variant, estimateMs, reason } = d;
    return { node, rpc: d.rpc, variant, estimateMs, reason };
  }

  /** `node` left the fabric: a channel may open to a node of that id again. */
  forget(node: string): void {
    this.noLink.delete(node);
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
  ): Promise<InvokeAnswer | undefined> {
    const parent = this.options.parent()!;
    const t0 = performance.now();
    try {
      const frame = { t: 'call' as const, id: 0, app, service, rpc, input, qos, probe: true };
      const r = await this.options.links!.call(parent, frame);
      return answer(r, parent, 'peer', `parent fog ${parent.slice(0, 8)} met the QoS`, t0);
    } catch (e) {
      const err = fromWire(e);
      if (!(err instanceof QosError) && !parentDeclines.has(err.code)) throw err;
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
  ): Promise<InvokeAnswer> {
    const { link, links } = this.options;
    // The relay places by what this node last reported: report first if that changed since.
    this.options.beforeAsk();
    const d = await link.request({ t: 'schedule', id: 0, app, service, qos, rpc, exclude });
    if (d.t !== 'decision') throw new ProtocolError(`expected a decision, got ${d.t}`);
    const pin = d.pin;
    const opts: CallOptions = { ...(d.rpc ? { rpc: d.rpc } : {}), ...(pin ? { pin } : {}) };
    if (d.node === this.options.me()) return this.local(app, service, input, qos, opts, d.reason);
    const frame = { app, service, rpc: d.rpc, input, qos, ...(pin ? { pin } : {}) };
    const t0 = performance.now();
    if (links && (this.noLink.get(d.node) ?? 0) <= performance.now()) {
      try {
        const r = await links.call(d.node, { t: 'call', id: 0, ...frame });
        return answer(r, d.node, 'peer', d.reason, t0);
      } catch (e) {
        const err = fromWire(e);
        const others = exclude.filter((n) => n !== this.options.me()).length;
        if (placeAgainAfter.has(err.code) && others < maxPlaceAgain) {
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
    const reply = await link.request({ t: 'call', id: 0, to: d.node, ...frame });
    if (reply.t !== 'result') throw new ProtocolError(`expected a result, got ${reply.t}`);
    return answer(reply, reply.node, 'relay', d.reason, t0);
  }
}

function answer(
  r: { value: unknown; rpc: string; trace?: TraceEntry[] | undefined },
  node: string,
  via: 'peer' | 'relay',
  reason: string,
  t0: number,
): InvokeAnswer {
  const ms = performance.now() - t0;
  return { value: r.value, rpc: r.rpc, ms, trace: r.trace ?? [], node, via, reason };
}
