/**
 * A pool of interchangeable resources (a model's inference sessions on a Node node) that grows
 * with waiting work and shrinks after idle periods by core/exec/scaler.ts, like a Logic's worker
 * pool (core/exec/logic-pool.ts) but for things made by an async `create()` in this process.
 * Work that finds none idle waits in order; a failed `create()` fails the oldest waiting use.
 * @example const pool = new ScaledPool({ name: 'digits/recognize', max: 2, idleMs: 30_000,
 *            create: () => makeSession(bytes), dispose: (s) => s.release() });
 *          const out = await pool.use((s) => s.run(feeds));
 */
import { ModelRunError } from '../errors';
import type { PoolNow } from './logic-pool';
import { type ScaleEvent, Scaler, WakeTimer } from './scaler';

export interface ScaledPoolOptions<T> {
  /** For messages and scale events: `app/service`. */
  name: string;
  /** Resources at most (≥ 1). */
  max: number;
  /** A full idle period before one retires (core/exec/scaler.ts). */
  idleMs: number;
  create: () => Promise<T>;
  dispose: (t: T) => void;
  onScale?: (e: ScaleEvent) => void;
  /** The clock the scaler reads; default performance.now. */
  now?: () => number;
}

export class ScaledPool<T> {
  /** The most held at once. */
  peak = 0;
  private readonly idle: T[] = [];
  private readonly waiting: { resolve: (t: T) => void; reject: (e: unknown) => void }[] = [];
  private live = 0;
  private starting = 0;
  private closed = false;
  private readonly scaler: Scaler;
  private readonly wake: WakeTimer;

  constructor(private readonly options: ScaledPoolOptions<T>) {
    const now = options.now ?? (() => performance.now());
    this.scaler = new Scaler(
      { max: Math.max(1, options.max), idleMs: options.idleMs, startAtOnce: 2 },
      now,
    );
    this.wake = new WakeTimer(now, () => this.rescale());
  }

  get max(): number {
    return this.scaler.policy.max;
  }

  now(): PoolNow {
    return {
      workers: this.live - this.starting,
      starting: this.starting,
      busy: this.live - this.starting - this.idle.length,
      queued: this.waiting.length,
      max: Math.max(1, this.options.max),
    };
  }

  /** Takes in one made elsewhere (the session `load` made to read the model's names) as idle. */
  adopt(t: T): void {
    if (this.closed) {
      this.options.dispose(t);
      return;
    }
    this.live++;
    this.peak = Math.max(this.peak, this.live);
    this.event('grow', this.live - 1, this.live);
    this.release(t);
  }

  /** Runs `fn` on an idle resource, or on the next one free or made. */
  async use<R>(fn: (t: T) => Promise<R>): Promise<R> {
    if (this.closed) throw new ModelRunError(`${this.options.name} was unloaded`);
    let t = this.idle.pop();
    if (t !== undefined) this.rescale();
    else {
      const p = new Promise<T>((resolve, reject) => this.waiting.push({ resolve, reject }));
      this.rescale();
      t = await p;
    }
    try {
      return await fn(t);
    } finally {
      this.release(t);
    }
  }

  /** Disposes what is idle, and the rest as it comes back; waiting uses fail. */
  close(): void {
    this.closed = true;
    this.wake.cancel();
    for (const t of this.idle.splice(0)) this.options.dispose(t);
    for (const w of this.waiting.splice(0))
      w.reject(new ModelRunError(`${this.options.name} was unloaded`));
  }

  private rescale(): void {
    if (this.closed) return;
    const d = this.scaler.decide(this.now());
    const size = this.live;
    if (d.grow > 0) {
      this.event('grow', size, size + d.grow);
      for (let i = 0; i < d.grow; i++) this.start();
    }
    if (d.shrink > 0) {
      // The oldest freed retires; the one freed last is taken first.
      const gone = this.idle.splice(0, Math.min(d.shrink, this.idle.length));
      this.live -= gone.length;
      if (gone.length) this.event('shrink', size, this.live);
      for (const t of gone) this.options.dispose(t);
    }
    this.wake.set(d.wakeAt);
  }

  private event(kind: ScaleEvent['kind'], from: number, to: number): void {
    this.options.onScale?.({ service: this.options.name, kind, from, to, at: Date.now() });
  }

  private start(): void {
    this.live++;
    this.starting++;
    this.peak = Math.max(this.peak, this.live);
    this.options.create().then(
      (t) => {
        this.starting--;
        this.release(t);
      },
      (e: unknown) => {
        this.starting--;
        this.live--;
        this.waiting.shift()?.reject(e);
        this.rescale();
      },
    );
  }

  private release(t: T): void {
    if (this.closed) {
      this.live--;
      this.options.dispose(t);
      return;
    }
    const next = this.waiting.shift();
    if (next) next.resolve(t);
    else this.idle.push(t);
    this.rescale();
  }
}
