import { fromWire, LogicLoadError, LogicTimeoutError } from '../errors';
import type { LogicWorkerApi, Reply } from './logic-worker';

/** A worker as the platform made it: its API (over core/exec/channel.ts) and a kill switch. */
export interface WorkerHandle {
  api: LogicWorkerApi;
  terminate(): void;
}

export interface LogicPoolOptions {
  /** For messages: `app/service`. */
  name: string;
  module: WebAssembly.Module;
  minPages: number;
  maxPages: number;
  /** Wall-clock budget of one step; past it the worker is terminated and replaced. */
  timeoutMs: number;
  /** Workers at most; requests beyond wait in order. */
  size?: number;
  spawn: () => WorkerHandle;
}

export interface LogicPoolStats {
  workers: number;
  respawns: number;
  timeouts: number;
  /** Instantiate times (ms) of every worker started, newest last. */
  instantiateMs: number[];
}

/**
 * Runs steps of one compiled Logic on a few workers, each step under a watchdog.
 * @example const pool = createLogicPool({ name: 'digits/classify', module, minPages: 1,
 *            maxPages: 256, timeoutMs: 2000, spawn });
 *          const bytes = await pool.step('classify', encode(input));
 */
export function createLogicPool(options: LogicPoolOptions): LogicPool {
  return new LogicPool(options);
}

export class LogicPool {
  readonly stats: LogicPoolStats = { workers: 0, respawns: 0, timeouts: 0, instantiateMs: [] };
  private readonly idle: WorkerHandle[] = [];
  private readonly waiting: { resolve: (w: WorkerHandle) => void; reject: (e: unknown) => void }[] =
    [];
  private live = 0;
  private closed = false;

  constructor(private readonly options: LogicPoolOptions) {}

  /** One invocation step under the watchdog. Bound, so it can be passed as a Step. */
  step = async (exportName: string, request: Uint8Array): Promise<Uint8Array> => {
    // An idle worker is taken without a turn of the event loop: this runs twice per Logic call.
    const worker = (!this.closed && this.idle.pop()) || (await this.acquire());
    let timer: ReturnType<typeof setTimeout> | undefined;
    let reply: Reply<Uint8Array> | 'timeout';
    try {
      // The watchdog and the reply settle one promise: whichever comes first wins.
      reply = await new Promise<Reply<Uint8Array> | 'timeout'>((resolve, reject) => {
        timer = setTimeout(() => resolve('timeout'), this.options.timeoutMs);
        worker.api.step(exportName, request).then(resolve, reject);
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
    for (const w of this.idle.splice(0)) w.terminate();
    for (const w of this.waiting.splice(0)) {
      w.reject(new LogicLoadError(`Logic ${this.options.name} was unloaded`));
    }
  }

  private async acquire(): Promise<WorkerHandle> {
    if (this.closed) throw new LogicLoadError(`Logic ${this.options.name} was unloaded`);
    const idle = this.idle.pop();
    if (idle) return idle;
    if (this.live < (this.options.size ?? 1)) return this.start();
    return new Promise((resolve, reject) => this.waiting.push({ resolve, reject }));
  }

  private async start(): Promise<WorkerHandle> {
    this.live++;
    this.stats.workers++;
    const { module, minPages, maxPages } = this.options;
    let worker: WorkerHandle | undefined;
    try {
      worker = this.options.spawn();
      const loaded = await worker.api.load(module, { minPages, maxPages });
      if (!loaded.ok) throw fromWire(loaded.error);
      this.stats.instantiateMs.push(loaded.value);
      if (this.stats.instantiateMs.length > 100) this.stats.instantiateMs.shift();
      return worker;
    } catch (e) {
      worker?.terminate();
      this.live--;
      this.handOver();
      throw e;
    }
  }

  private release(worker: WorkerHandle): void {
    if (this.closed) {
      worker.terminate();
      return;
    }
    const next = this.waiting.shift();
    if (next) next.resolve(worker);
    else this.idle.push(worker);
  }

  private discard(worker: WorkerHandle): void {
    worker.terminate();
    this.live--;
    this.stats.respawns++;
    this.handOver();
  }

  // A slot freed up: the next waiting request gets a fresh worker, or the reason there is none.
  private handOver(): void {
    const next = this.waiting.shift();
    if (next) this.start().then(next.resolve, next.reject);
  }
}
