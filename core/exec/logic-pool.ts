import { DisconnectedError, fromWire, LogicLoadError, LogicTimeoutError } from '../errors';
import type { LogicWorkerApi, Reply } from './logic-worker';
import { type PoolState, type ScaleEvent, type ScalePolicy, Scaler, WakeTimer } from './scaler';

/** A worker as the platform made it: its API (over core/exec/channel.ts) and a kill switch. */
export interface WorkerHandle {
  api: LogicWorkerApi;
  terminate(): void;
}

export interface LogicPoolOptions {
  /** For messages and scale events: `app/service`. */
  name: string;
  module: WebAssembly.Module;
  minPages: number;
  maxPages: number;
  /** Wall-clock budget of one step; past it the worker is terminated and replaced. */
  timeoutMs: number;
  /** Workers at most; requests beyond wait in order. Default 1. */
  size?: number;
  /** A full idle period before one worker retires (core/exec/scaler.ts); default 30 000 ms. */
  idleMs?: number;
  /** Workers starting together, at most; default 2. */
  startAtOnce?: number;
  /** `dropToMin`: the OpenFaaS behaviour, for comparisons only. */
  mode?: ScalePolicy['mode'];
  /** Bench only: each first step of a call holds its worker this long (see LogicWorkerApi.step). */
  holdMs?: number;
  spawn: () => WorkerHandle;
  /** Told of every grow and shrink. */
  onScale?: (e: ScaleEvent) => void;
  /** The clock the scaler reads; default performance.now. */
  now?: () => number;
}

export interface LogicPoolStats {
  /** Workers started, ever. */
  workers: number;
  respawns: number;
  timeouts: number;
  /** The most workers held at once. */
  peak: number;
  /** Instantiate times (ms) of every worker started, newest last. */
  instantiateMs: number[];
}

/** What a pool holds now, as the node reports it (heartbeat `workers`). */
export interface PoolNow extends PoolState {
  max: number;
}

export const DEFAULT_IDLE_MS = 30_000;

/**
 * Runs steps of one compiled Logic on workers, each step under a watchdog. It starts with none,
 * starts one for each request that finds none free (up to `size`), and retires them one at a time
 * after full idle periods (core/exec/scaler.ts), down to none.
 * @example const pool = createLogicPool({ name: 'digits/classify', module, minPages: 1,
 *            maxPages: 256, timeoutMs: 2000, size: 4, spawn });
 *          const bytes = await pool.step('classify', encode(input));
 */
export function createLogicPool(options: LogicPoolOptions): LogicPool {
  return new LogicPool(options);
}

export class LogicPool {
  readonly stats: LogicPoolStats = {
    workers: 0,
    respawns: 0,
    timeouts: 0,
    peak: 0,
    instantiateMs: [],
  };
  /** Free workers, the one freed last at the end (taken first; the oldest retires first). */
  private readonly idle: WorkerHandle[] = [];
  private readonly waiting: { resolve: (w: WorkerHandle) => void; reject: (e: unknown) => void }[] =
    [];
  /** Workers held: starting, busy or idle. */
  private live = 0;
  private starting = 0;
  private closed = false;
  private readonly scaler: Scaler;
  private readonly max: number;
  private readonly wake: WakeTimer;

  constructor(private readonly options: LogicPoolOptions) {
    this.max = Math.max(1, options.size ?? 1);
    const now = options.now ?? (() => performance.now());
    this.scaler = new Scaler(
      {
        max: this.max,
        idleMs: options.idleMs ?? DEFAULT_IDLE_MS,
        startAtOnce: options.startAtOnce ?? 2,
        ...(options.mode && { mode: options.mode }),
      },
      now,
    );
    this.wake = new WakeTimer(now, () => this.rescale());
  }

  /** Workers held, busy, starting, and requests waiting, now. */
  now(): PoolNow {
    return {
      workers: this.live - this.starting,
      starting: this.starting,
      busy: this.live - this.starting - this.idle.length,
      queued: this.waiting.length,
      max: this.max,
    };
  }

  /**
   * One invocation step under the watchdog. Bound, so it can be passed as a Step. `first`: the
   * call's first step (a bench's `holdMs` applies to it alone). `gone`: aborted when the caller
   * can no longer hear the answer; a step still waiting for a worker then leaves the queue and
   * fails with the signal's reason, never run.
   */
  step = async (
    exportName: string,
    request: Uint8Array,
    first = false,
    gone?: AbortSignal,
  ): Promise<Uint8Array> => {
    if (gone?.aborted) throw goneReason(gone);
    // An idle worker is taken without a turn of the event loop: this runs twice per Logic call.
    let worker = this.closed ? undefined : this.idle.pop();
    // The scaler hears of it: a worker taken ends the idle period it was standing in.
    if (worker) this.rescale();
    else worker = await this.acquire(gone);
    const hold = first ? this.options.holdMs : undefined;
    let timer: ReturnType<typeof setTimeout> | undefined;
    let reply: Reply<Uint8Array> | 'timeout';
    try {
      // The watchdog and the reply settle one promise: whichever comes first wins.
      reply = await new Promise<Reply<Uint8Array> | 'timeout'>((resolve, reject) => {
        timer = setTimeout(() => resolve('timeout'), this.options.timeoutMs + (hold ?? 0));
        worker!.api.step(exportName, request, hold).then(resolve, reject);
      });
    } catch (e) {
      this.discard(worker);
      throw fromWire(e);
    } finally {
      clearTimeout(timer);
    }
    if (reply === 'timeout') {
      this.stats.timeouts++;
      this.discard(worker);
      throw new LogicTimeoutError(
        `Logic ${this.options.name} ("${exportName}") ran past its ${this.options.timeoutMs} ms budget; its worker was terminated and replaced`,
      );
    }
    this.release(worker);
    if (!reply.ok) throw fromWire(reply.error);
    return reply.value;
  };

  /** Starts a worker now (pre-warm), so the first request pays no instantiate time. */
  async warm(): Promise<void> {
    this.release(await this.acquire());
  }

  close(): void {
    this.closed = true;
    this.wake.cancel();
    for (const w of this.idle.splice(0)) w.terminate();
    for (const w of this.waiting.splice(0)) {
      w.reject(new LogicLoadError(`Logic ${this.options.name} was unloaded`));
    }
  }

  private acquire(gone?: AbortSignal): Promise<WorkerHandle> {
    if (this.closed)
      return Promise.reject(new LogicLoadError(`Logic ${this.options.name} was unloaded`));
    const idle = this.idle.pop();
    if (idle) return Promise.resolve(idle);
    const p = new Promise<WorkerHandle>((resolve, reject) => {
      const leave = () => {
        const at = this.waiting.indexOf(waiter);
        if (at < 0) return;
        this.waiting.splice(at, 1);
        reject(goneReason(gone!));
        // One fewer waiting: the scaler may start fewer workers.
        this.rescale();
      };
      const waiter = {
        resolve: (w: WorkerHandle) => {
          gone?.removeEventListener('abort', leave);
          resolve(w);
        },
        reject: (e: unknown) => {
          gone?.removeEventListener('abort', leave);
          reject(e);
        },
      };
      gone?.addEventListener('abort', leave, { once: true });
      this.waiting.push(waiter);
    });
    this.rescale();
    return p;
  }

  /** Asks the scaler what the pool should hold now, and does it. */
  private rescale(): void {
    if (this.closed) return;
    const d = this.scaler.decide(this.now());
    const size = this.live;
    if (d.grow > 0) {
      this.event('grow', size, size + d.grow);
      for (let i = 0; i < d.grow; i++) this.start();
    }
    if (d.shrink > 0) {
      const gone = this.idle.splice(0, Math.min(d.shrink, this.idle.length));
      this.live -= gone.length;
      // Told first: stopping a thread can take a while on a busy machine.
      if (gone.length) this.event('shrink', size, this.live);
      for (const w of gone) w.terminate();
    }
    this.wake.set(d.wakeAt);
  }

  private event(kind: ScaleEvent['kind'], from: number, to: number): void {
    this.options.onScale?.({ service: this.options.name, kind, from, to, at: Date.now() });
  }

  /** Starts one worker; once ready it goes to the oldest waiting request, or stands idle. */
  private start(): void {
    this.live++;
    this.starting++;
    this.stats.workers++;
    this.stats.peak = Math.max(this.stats.peak, this.live);
    const { module, minPages, maxPages } = this.options;
    let worker: WorkerHandle | undefined;
    const ready = (async () => {
      worker = this.options.spawn();
      const loaded = await worker.api.load(module, { minPages, maxPages });
      if (!loaded.ok) throw fromWire(loaded.error);
      this.stats.instantiateMs.push(loaded.value);
      if (this.stats.instantiateMs.length > 100) this.stats.instantiateMs.shift();
      return worker;
    })();
    ready.then(
      (w) => {
        this.starting--;
        this.release(w);
      },
      (e: unknown) => {
        this.starting--;
        worker?.terminate();
        this.live--;
        // The request this worker was started for learns why there is none.
        this.waiting.shift()?.reject(e);
        this.rescale();
      },
    );
  }

  private release(worker: WorkerHandle): void {
    if (this.closed) {
      worker.terminate();
      return;
    }
    const next = this.waiting.shift();
    if (next) next.resolve(worker);
    else this.idle.push(worker);
    this.rescale();
  }

  private discard(worker: WorkerHandle): void {
    worker.terminate();
    this.live--;
    this.stats.respawns++;
    // A slot freed up: the next waiting request gets a fresh worker.
    this.rescale();
  }
}

/** Why a step's caller is gone: the signal's reason when it is an error, else a plain one. */
function goneReason(gone: AbortSignal): Error {
  const r: unknown = gone.reason;
  return r instanceof Error ? r : new DisconnectedError('the caller is gone');
}
