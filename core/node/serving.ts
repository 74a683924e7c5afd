/**
 * How a node serves calls from other nodes (through the relay or a data channel): a few at once,
 * a bounded queue after them, none while paused, and privacy checked where the data lands. A call
 * whose caller is gone before it starts (its relay socket closed: `gone` aborted) leaves the queue
 * and never runs; one already running finishes, holding only its own slot. It counts what it
 * served for the page's "compute contributed".
 * @example const serving = new Serving({ runtime, isMe, maxConcurrency: 2, changed: () => link.beatNow() });
 *          const r = await serving.serveCall({ app, service, rpc, input, qos });
 */
import { DisconnectedError, QosError, UnavailableError } from '../errors';
import type { Runtime, ServeOptions, TraceEntry } from '../runtime';
import type { Qos } from '../scheduler';

export interface ServingOptions {
  runtime: Runtime;
  /** Whether a privacy constraint names this node (its id or its key). */
  isMe(privacy: string): boolean;
  /** Requests this node runs at once for others; default 1. */
  maxConcurrency?: number;
  /** Requests from others that wait for a free slot; past this they are refused. Default 16. */
  maxQueued?: number;
  /** The load or the pause changed: the relay should hear of it. */
  changed(): void;
}

/** A call from another node, as the relay or a data channel carries it. */
export interface ServeRequest {
  app: string;
  service: string;
  rpc: string;
  input: unknown;
  qos: Qos;
  pin?: Record<string, string> | undefined;
  /** A child's offer to its parent fog: taken only if this node meets the QoS itself. */
  probe?: boolean | undefined;
  /** The request's trace id, from where it entered the fabric. */
  traceId?: string | undefined;
}

export interface ServeResult {
  value: unknown;
  rpc: string;
  ms: number;
  /** The version of the app that ran (§5.7). */
  version: string;
  trace: TraceEntry[];
}

export class Serving {
  /** Requests it runs at once for others (lowered while the tab is hidden). */
  concurrency: number;
  /** Milliseconds of compute spent on requests from other nodes. */
  contributedMs = 0;
  /** Requests served for other nodes. */
  served = 0;
  /** Why this node serves only itself now ('user', 'battery'...); empty: it contributes. */
  private readonly pausedBy = new Set<string>();
  private running = 0;
  /** Calls from others waiting for a slot, oldest first: each takes the slot when called. */
  private readonly queued: (() => void)[] = [];

  constructor(private readonly options: ServingOptions) {
    this.concurrency = options.maxConcurrency ?? 1;
  }

  get paused(): boolean {
    return this.pausedBy.size > 0;
  }

  /** Stops (or resumes) serving others for `reason`; the relay hears of it at once. */
  pause(reason: string, on = true): void {
    const was = this.paused;
    if (on) this.pausedBy.add(reason);
    else this.pausedBy.delete(reason);
    if (was !== this.paused) this.options.changed();
  }

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
    this.options.changed();
  }

  /** Requests running for others now. */
  get busy(): number {
    return this.running;
  }

  /** Requests from others waiting for a slot now. */
  get waiting(): number {
    return this.queued.length;
  }

  /**
   * Runs a call another node sent and answers it. `gone` aborts when whoever sent it can no longer
   * hear the answer (the relay socket it came over closed): if it has not started by then, it
   * never does and fails with the signal's reason (an E_DISCONNECTED).
   */
  async serveCall(msg: ServeRequest, gone?: AbortSignal): Promise<ServeResult> {
    if (gone?.aborted) throw reason(gone);
    if (this.paused) throw new UnavailableError('this node is paused');
    const p = msg.qos.privacy;
    // The relay placed it here, but privacy is checked where the data lands too.
    if (p !== undefined && (p === 'device' || !this.options.isMe(p))) {
      throw new QosError('privacy', undefined, `privacy ${p} does not allow this node`);
    }
    const runtime = this.options.runtime;
    // A call that leaves the queue (its caller gone) never held a slot: it fails before the try.
    const wait = this.slot(gone);
    if (wait) await wait;
    try {
      await runtime.ensure(msg.app);
      // A child's offer: taken only if this node meets the QoS (it throws the QosError if not).
      if (msg.probe) await runtime.plan(msg.app, msg.service, msg.qos, msg.rpc);
      // Gone while the app was fetched: it has not started, so it does not.
      if (gone?.aborted) throw reason(gone);
      const opts: ServeOptions = {
        ...(msg.rpc ? { rpc: msg.rpc } : {}),
        ...(msg.pin ? { pin: msg.pin } : {}),
        ...(msg.traceId ? { traceId: msg.traceId } : {}),
        // Past this slot, a Logic call may still wait for a worker: it leaves that queue too.
        ...(gone ? { gone } : {}),
      };
      const r = await runtime.call(msg.app, msg.service, msg.input, msg.qos, opts);
      this.served++;
      this.contributedMs += r.ms;
      const trace = r.trace.map((t) => ({
        service: t.service,
        rpc: t.rpc,
        kind: t.kind,
        ms: t.ms,
        ...(t.backend ? { backend: t.backend } : {}),
        ...(t.traceId ? { traceId: t.traceId } : {}),
        ...(t.version ? { version: t.version } : {}),
        // Where each step ran (this node, or one its Logic's calls reached) and its exit head.
        ...(t.node ? { node: t.node } : {}),
        ...(t.exit !== undefined ? { exit: t.exit } : {}),
      }));
      return { value: r.value, rpc: r.rpc, ms: r.ms, version: r.version, trace };
    } finally {
      this.freeSlot();
    }
  }

  /**
   * A slot to serve a call in: at once, after the calls waiting before it, or refused when the
   * queue is full (the caller places it elsewhere). Synchronous up to the wait, so the order and
   * the refusal do not depend on timing. A call waiting when `gone` aborts leaves the queue without
   * a slot (the promise rejects), so it counts against nothing after.
   */
  private slot(gone?: AbortSignal): Promise<void> | undefined {
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
    return new Promise<void>((resolve, reject) => {
      const take = () => {
        gone?.removeEventListener('abort', leave);
        resolve();
      };
      const leave = () => {
        const at = this.queued.indexOf(take);
        if (at < 0) return;
        this.queued.splice(at, 1);
        reject(reason(gone!));
      };
      gone?.addEventListener('abort', leave, { once: true });
      this.queued.push(take);
    });
  }

  /** Hands the slot to the oldest waiting call, unless concurrency was lowered meanwhile. */
  private freeSlot(): void {
    const next = this.running <= this.concurrency ? this.queued.shift() : undefined;
    if (next) next();
    else this.running--;
  }
}

/** Why a call's caller is gone: the signal's reason when it is an error, else a plain one. */
function reason(gone: AbortSignal): Error {
  const r: unknown = gone.reason;
  return r instanceof Error ? r : new DisconnectedError('the caller is gone');
}
