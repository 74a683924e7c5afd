/**
 * When a worker pool grows and shrinks (PROTOCOL.md §2.1 `scale`), as a pure policy over what the
 * pool holds and a clock, so it is tested without workers or time passing.
 *
 * - Grow: every request that waits with no worker starting for it starts one, up to `max`
 *   (and `startAtOnce` starting together).
 * - Shrink, with hysteresis: one worker retires only after a full `idleMs` during which at least
 *   one worker stood idle and nothing waited (any wait starts the period again), and the period
 *   starts again after each retirement, so the pool steps down one worker per `idleMs` at most
 *   and reaches 0 for a service nobody calls.
 *
 * `dropToMin` is the policy the seed observed in OpenFaaS ("replicas drop abruptly to minimum"
 * once the queue is empty), kept to compare against (the flap test, the autoscale bench).
 * @example const s = new Scaler({ max: 5, idleMs: 30_000 }, () => performance.now());
 *          const d = s.decide({ workers: 1, starting: 0, busy: 1, queued: 2 }); // { grow: 2 }
 */

/** What a pool holds now. */
export interface PoolState {
  /** Workers started and ready (busy or idle). */
  workers: number;
  /** Workers being started. */
  starting: number;
  /** Workers running a step now. */
  busy: number;
  /** Requests waiting for a worker. */
  queued: number;
}

export interface ScalePolicy {
  /** Workers at most (≥ 1). */
  max: number;
  /** A full period with a spare worker and nothing waiting before one retires (ms). */
  idleMs: number;
  /**
   * Workers starting at once, at most (default: no limit). Starting one costs CPU (a thread, a
   * module instantiated): a burst on a small machine must not start twenty together.
   */
  startAtOnce?: number;
  /** `hysteresis` (default) or `dropToMin`, the OpenFaaS behaviour, for comparison. */
  mode?: 'hysteresis' | 'dropToMin';
}

/** What to do now: start `grow` workers, retire `shrink` idle ones, look again at `wakeAt`. */
export interface ScaleDecision {
  grow: number;
  shrink: number;
  /** When a retirement falls due if nothing changes (the pool sets a timer for it). */
  wakeAt?: number;
}

export class Scaler {
  /** Since when a worker has stood idle with nothing waiting; undefined: not now. */
  private spareSince: number | undefined;

  constructor(
    readonly policy: ScalePolicy,
    private readonly now: () => number,
  ) {}

  /** Called after every change in the pool, and at `wakeAt`. */
  decide(s: PoolState): ScaleDecision {
    const max = Math.max(1, this.policy.max);
    const grow = Math.max(
      0,
      Math.min(
        s.queued - s.starting,
        max - s.workers - s.starting,
        (this.policy.startAtOnce ?? Number.POSITIVE_INFINITY) - s.starting,
      ),
    );
    if (grow > 0 || s.queued > 0) {
      this.spareSince = undefined;
      return { grow, shrink: 0 };
    }
    const idle = s.workers - s.busy;
    if (idle <= 0 || s.starting > 0) {
      this.spareSince = undefined;
      return { grow: 0, shrink: 0 };
    }
    if (this.policy.mode === 'dropToMin') return { grow: 0, shrink: idle };
    const t = this.now();
    this.spareSince ??= t;
    if (t - this.spareSince < this.policy.idleMs) {
      return { grow: 0, shrink: 0, wakeAt: this.spareSince + this.policy.idleMs };
    }
    // One retires; the next needs a whole period of its own.
    this.spareSince = idle > 1 ? t : undefined;
    return {
      grow: 0,
      shrink: 1,
      ...(idle > 1 && { wakeAt: t + this.policy.idleMs }),
    };
  }
}

/**
 * One timer for the earliest moment a pool must ask its scaler again (a retirement due), on the
 * scaler's clock; an idle pool keeps no process alive (Node; a tab's timers have no unref).
 */
export class WakeTimer {
  private timer: ReturnType<typeof setTimeout> | undefined;
  private at = Number.POSITIVE_INFINITY;

  constructor(
    private readonly now: () => number,
    private readonly fire: () => void,
  ) {}

  /** Fires at `at` unless it is already set to fire as early; undefined: nothing due. */
  set(at: number | undefined): void {
    if (at === undefined || at >= this.at) return;
    clearTimeout(this.timer);
    this.at = at;
    this.timer = setTimeout(
      () => {
        this.cancel();
        this.fire();
      },
      Math.max(0, at - this.now()),
    );
    (this.timer as { unref?: () => void }).unref?.();
  }

  cancel(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.at = Number.POSITIVE_INFINITY;
  }
}

/** One change in a pool's size, as logged and reported. */
export interface ScaleEvent {
  /** `app/service`. */
  service: string;
  kind: 'grow' | 'shrink';
  from: number;
  to: number;
  /** Date.now() when it happened. */
  at: number;
}

/** Keeps the latest scale events (bounded) and counts every one. */
export class ScaleLog {
  readonly events: ScaleEvent[] = [];
  grows = 0;
  shrinks = 0;

  private readonly listeners = new Set<(e: ScaleEvent) => void>();

  constructor(private readonly keep = 256) {}

  add(e: ScaleEvent): void {
    if (e.kind === 'grow') this.grows++;
    else this.shrinks++;
    this.events.push(e);
    if (this.events.length > this.keep) this.events.shift();
    for (const l of this.listeners) l(e);
  }

  /** Calls `listener` at each event; answers an unsubscribe. */
  listen(listener: (e: ScaleEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** The events after `since` (Date.now() ms). */
  after(since: number): ScaleEvent[] {
    return this.events.filter((e) => e.at > since);
  }
}
