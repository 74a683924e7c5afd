/**
 * Calls the relay runs on a node for someone else (a node without a data channel, or an HTTP
 * caller), with no socket in it: a call is placed, entered in the table of calls waiting for an
 * answer (core/pending.ts), and sent with `send(node, frame)`. Each call is answered exactly
 * once: by the node's result or error, by its timeout, or — when its node refuses it as busy or
 * leaves — by the node it is placed on next. Calls on untrusted nodes may run twice and be
 * compared (relay/verify.ts); every answer is timed for honest placement (relay/measure.ts).
 * @example const fw = createForwarding({ limits, callTimeoutMs, send, node, nodes, buffered, … });
 *          fw.forward({ app, service, rpc, input, qos, caller: '', target: '' }, reply);
 *          fw.answer(record, frame);   // a node's `result` or `error`
 *          fw.moveFrom(nodeId);        // the node left: its calls run elsewhere
 */
import type { NodeRecord } from '../../core/api';
import {
  BrumeError,
  DisconnectedError,
  fromWire,
  InternalError,
  TimeoutError,
  UnavailableError,
} from '../../core/errors';
import type { Manifest } from '../../core/manifest';
import { Pending } from '../../core/pending';
import { MAX_PLACEMENTS, type ToNode, type ToRelay } from '../../core/protocol';
import type { Qos } from '../../core/scheduler';
import { askRefusal, CallCounts, callRefusal, type HubLimits, sizeOf } from '../limits';
import { type CallShape, type Meter, shapeOf } from '../measure';
import type { RelayMetrics } from '../metrics';
import type { createVerifier, Outcome } from '../verify';
import type { RelayFrame } from './cluster';
import type { DecideArgs, Route } from './decide';

export interface CallAnswer {
  value: unknown;
  rpc: string;
  ms: number;
  node: string;
  /** The version of the app that ran (§5.7); absent from a node older than versions. */
  version?: string;
  trace?: Extract<ToNode, { t: 'result' }>['trace'];
}

export type Reply = (answer: Outcome<CallAnswer>) => void;

/** A call to run: where it was asked to go ('' or a node), and what it is. */
export interface Call {
  app: string;
  service: string;
  rpc: string;
  pin?: Record<string, string>;
  input: unknown;
  qos: Qos;
  /** The asking node ('' for HTTP). */
  caller: string;
  target: string;
  /** Nodes it was placed on before (lost, or refused it). */
  tried?: string[];
  /** About what its input takes in memory, held until it is answered (relay/limits.ts). */
  bytes?: number;
  /** One run of a checked call (relay/verify.ts): never checked again itself. */
  leg?: boolean;
  /** The request's trace id, passed on to the node that runs it. */
  traceId?: string | undefined;
  /**
   * Run on `target` only: a lost or refusing node answers E_DISCONNECTED / its refusal instead of
   * the call moving on (a job goes back to its queue, relay/jobs/, which places it again).
   */
  stay?: boolean;
  /** How long it may take, instead of the hub's call timeout (a job's run). */
  timeoutMs?: number;
}

/** A call in flight: sent to `target`, waiting for its answer. */
interface Forward extends Call {
  reply: Reply;
  tried: string[];
  bytes: number;
  /** The node it runs on, as it was when sent. */
  record: NodeRecord;
  /** When it was sent, and what it is, for the relay's own timing (relay/measure.ts). */
  sentAt: number;
  shape?: CallShape;
}

type NodeAnswer = Extract<ToRelay, { t: 'result' | 'error' }>;
type RelayAnswer = Extract<RelayFrame, { t: 'result' | 'error' }>;

export interface ForwardingOptions {
  limits: HubLimits;
  callTimeoutMs: number;
  manifest(app: string, range?: string): Promise<Manifest | undefined>;
  /** The connected node `id`, here or on another relay (a new record when it reconnected). */
  node(id: string): NodeRecord | undefined;
  nodes(): NodeRecord[];
  /** Bytes queued for node `id` and not sent yet. */
  buffered(id: string): number;
  send(node: string, frame: ToNode): void;
  decide(...args: DecideArgs): Promise<Route>;
  meter: Meter;
  verifier: ReturnType<typeof createVerifier>;
  metrics: Pick<RelayMetrics, 'forwarded' | 'retried'>;
}

export function createForwarding(o: ForwardingOptions) {
  const { limits, callTimeoutMs, meter } = o;
  const counts = new CallCounts();
  const table = new Pending<NodeAnswer, Forward>({
    timeoutMs: callTimeoutMs,
    timeout(f) {
      const ms = f.timeoutMs ?? callTimeoutMs;
      if (f.shape) {
        meter.timedOut(f.record, f.shape, ms);
        f.record.measured = meter.of(f.target);
      }
      return new TimeoutError(`${f.target.slice(0, 8)} did not answer within ${ms} ms`);
    },
    added: (f) => counts.add(f),
    removed: (f) => counts.remove(f),
  });

  /** Runs a call on `target` (or a placed node when it is ''), moving it if the node is lost. */
  function forward(call: Call, reply: Reply, replace = false): void {
    void run(call, reply, replace).catch((e: unknown) =>
      reply({ ok: false, error: e instanceof BrumeError ? e : new InternalError(String(e)) }),
    );
  }

  async function run(call: Call, reply: Reply, replace: boolean): Promise<void> {
    const tried = call.tried ?? [];
    if (replace) o.metrics.retried();
    let routed = call;
    const asked = o.node(call.target);
    if (call.stay && (!asked || asked.quarantined))
      throw new DisconnectedError(`node ${call.target.slice(0, 8)} is gone or quarantined`);
    if (replace || !asked || asked.quarantined) {
      if (tried.length >= MAX_PLACEMENTS)
        throw new UnavailableError(`gave up after ${tried.length} nodes were lost`);
      // A node that sent its call elsewhere did not want to run it: not back to it either.
      const exclude = call.caller ? [...tried, call.caller] : tried;
      const r = await o.decide(call.app, call.service, call.qos, call.caller, exclude, call.rpc);
      routed = { ...call, target: r.node, rpc: r.rpc, ...(r.pin ? { pin: r.pin } : {}) };
    }
    const { target } = routed;
    const record = o.node(target)!;
    const manifest = await o.manifest(call.app, call.qos.version);
    const shape = shapeOf(manifest, routed, record.backends[0]);
    // It may have left while the manifest was read: place the call again without it.
    if (o.node(target) !== record && call.stay)
      throw new DisconnectedError(`node ${target.slice(0, 8)} left before the call was sent`);
    if (o.node(target) !== record)
      return forward({ ...call, tried: [...tried, target] }, reply, true);
    if (!routed.leg && o.verifier.wants(record, call.qos)) {
      return o.verifier.check(checked(routed, shape?.variant), reply);
    }
    // Both caps are read here, where the call enters the table with no await between: a check
    // before the manifest read above would let a burst of calls all pass it.
    const bytes = call.bytes ?? sizeOf(call.input);
    const asker = call.caller && !replace && !routed.leg ? call.caller : '';
    const refused =
      (asker ? askRefusal(limits, counts, asker) : undefined) ??
      callRefusal(limits, counts, { id: target, buffered: o.buffered(target) }, bytes);
    if (refused) throw refused;
    const f: Forward = {
      ...routed,
      tried,
      reply,
      bytes,
      record,
      sentAt: performance.now(),
      ...(shape && { shape }),
    };
    const { id, answer } = table.open(f, f.timeoutMs);
    answer.then(
      (msg) => answered(f, msg),
      (error: BrumeError) => reply({ ok: false, error }),
    );
    o.metrics.forwarded(call.caller);
    o.send(target, {
      t: 'call',
      id,
      from: call.caller,
      app: call.app,
      service: call.service,
      rpc: routed.rpc,
      ...(routed.pin ? { pin: routed.pin } : {}),
      input: call.input,
      // The version current when the relay took the call (or the one its range picked): a call
      // in flight across a deploy runs the version it was accepted for (PROTOCOL.md §5.7).
      qos: manifest ? { ...call.qos, version: manifest.version } : call.qos,
      ...(call.traceId && { traceId: call.traceId }),
    });
  }

  /** The node's answer: the caller's, or — a refusal as busy or paused — a reason to move on. */
  function answered(f: Forward, msg: NodeAnswer): void {
    if (msg.t === 'result') {
      const { t: _, id: __, ...answer } = msg;
      f.reply({ ok: true, ...answer, node: f.target });
    } else if (msg.error.code === 'E_UNAVAILABLE') {
      refused(f, f.target, fromWire(msg.error));
    } else f.reply({ ok: false, error: fromWire(msg.error) }); // keeps constraint, best
  }

  /**
   * A node refused a call as busy or paused: it is placed again without that node, or the
   * refusal is the answer when no other node is there to take it.
   */
  function refused(f: Forward, by: string, e: BrumeError): void {
    const tried = [...f.tried, by];
    const others = o.nodes().some((n) => !tried.includes(n.id) && n.id !== f.caller);
    if (!f.stay && tried.length < MAX_PLACEMENTS && others)
      forward({ ...callOf(f), tried }, f.reply, true);
    else f.reply({ ok: false, error: e });
  }

  /** A routed call as relay/verify.ts runs it: on any node, with the same rpc and variant. */
  function checked(routed: Call, variant?: string) {
    const { latencyMs: _, verify: __, ...qos } = routed.qos;
    return {
      app: routed.app,
      service: routed.service,
      rpc: routed.rpc,
      primary: routed.target,
      caller: routed.caller,
      qos: routed.qos,
      run: (node: string) =>
        new Promise<Outcome<CallAnswer>>((resolve) =>
          forward({ ...routed, target: node, leg: true }, resolve),
        ),
      // The check need not be fast, only kept where privacy allows and on the same variant.
      pick: (exclude: string[], trustedOnly: boolean) =>
        o
          .decide(routed.app, routed.service, qos, routed.caller, exclude, routed.rpc, {
            ...(variant !== undefined && { variant }),
            trustedOnly,
          })
          .then(
            (r) => r.node,
            () => undefined,
          ),
    };
  }

  return {
    forward,
    /** Whether call `id` waits on `node`: its answer is work the relay gave it. */
    waitsOn: (id: number | undefined, node: string) =>
      id !== undefined && table.get(id)?.target === node,
    /** A node's `result` or `error`; a late one (moved, timed out) or another node's is dropped. */
    answer(node: NodeRecord, msg: NodeAnswer): void {
      const f = msg.id === undefined ? undefined : table.get(msg.id);
      if (!f || f.target !== node.id) return;
      if (msg.t === 'result' && f.shape) {
        meter.answered(node, f.shape, performance.now() - f.sentAt - node.rttMs);
        node.measured = meter.of(node.id);
      }
      table.settle(msg.id!, msg);
    },
    /**
     * An answer another relay sent for its node `msg.node` (relay/hub/cluster.ts): taken as that
     * node's own, unless the call waits on another node or relay (moved, timed out: dropped). The
     * node was lost there (E_DISCONNECTED): the call runs elsewhere, as when a node here leaves.
     */
    answerFrom(relay: string, msg: RelayAnswer) {
      const f = table.get(msg.id);
      if (!f || f.target !== msg.node || f.record.relay !== relay) return;
      if (msg.t === 'error' && msg.error.code === 'E_DISCONNECTED' && !f.stay) {
        table.take(msg.id);
        return forward({ ...callOf(f), tried: [...f.tried, f.target] }, f.reply, true);
      }
      const { from: _, node: __, ...answer } = msg;
      if (answer.t === 'result' && f.shape) {
        meter.answered(f.record, f.shape, performance.now() - f.sentAt - f.record.rttMs);
        f.record.measured = meter.of(f.target);
      }
      table.settle(msg.id, answer);
    },
    /** A call frame that could not be sent: its caller gets `error`. False if no such call. */
    fail: (id: number, error: BrumeError) => table.fail(id, error),
    /** Node `id` left: work forwarded to it runs elsewhere; its late answers match nothing. */
    moveFrom(id: string): void {
      for (const [fid, f] of table.entries()) {
        if (f.target !== id) continue;
        if (f.stay) {
          table.fail(fid, new DisconnectedError(`node ${id.slice(0, 8)} left while running it`));
          continue;
        }
        table.take(fid);
        forward({ ...callOf(f), tried: [...f.tried, id] }, f.reply, true);
      }
    },
    /** Calls the relay forwarded to node `id` and waits on. */
    running: (id: string) => counts.running(id),
    /** Calls in flight and the bytes held for them. */
    load: () => ({ calls: counts.size, callBytes: counts.bytes }),
    /** Stops every timer; callers are not answered (the relay is going away). */
    close(): void {
      for (const [id] of table.entries()) table.take(id);
    },
  };
}

/** The call a forward carries, without what was kept for it in flight. */
function callOf(f: Forward): Call {
  const { reply: _r, record: _n, sentAt: _s, shape: _h, ...call } = f;
  return call;
}

export type Forwarding = ReturnType<typeof createForwarding>;
