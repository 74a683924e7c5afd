/**
 * Requests waiting for an answer, by id: the one table behind every "send a frame, wait for the
 * frame that answers it" in Brume (the relay's forwarded calls, a node's requests to the relay,
 * peer links, the embed tag, context waiters). Each request is answered exactly once: by
 * `settle`, by `fail`, by its timeout, or by `failAll` when the link under it goes away; an
 * answer that comes after that finds nothing and is dropped (`settle` returns false).
 * @example const calls = new Pending<Reply>({ timeoutMs: 30_000, timeout: () => new TimeoutError('…') });
 *          const { id, answer } = calls.open();  socket.send({ id, … });  return answer;
 *          // on the answering frame: calls.settle(frame.id, frame);  on close: calls.failAll(new DisconnectedError('…'));
 */
import type { BrumeError } from './errors';

export interface PendingOptions<M> {
  /** How long a request waits by default; 0 or Infinity: until answered or failed. */
  timeoutMs: number;
  /** The error a request fails with when its time is up (side effects allowed: it runs once). */
  timeout(meta: M, id: number): BrumeError;
  /** Told when a request enters and leaves the table, however it leaves (for counting). */
  added?(meta: M): void;
  removed?(meta: M): void;
  /** The first id (default 1); ids then count up. */
  firstId?: number;
}

interface Entry<T, M> {
  meta: M;
  resolve(value: T): void;
  reject(error: BrumeError): void;
  timer?: ReturnType<typeof setTimeout>;
}

export class Pending<T, M = undefined> {
  private readonly table = new Map<number, Entry<T, M>>();
  private nextId: number;

  constructor(private readonly options: PendingOptions<M>) {
    this.nextId = options.firstId ?? 1;
  }

  /** Opens a request: its id, and the answer it will get. `meta` is kept with it until then. */
  open(meta: M, timeoutMs = this.options.timeoutMs): { id: number; answer: Promise<T> } {
    const id = this.nextId++;
    let entry!: Entry<T, M>;
    const answer = new Promise<T>((resolve, reject) => {
      entry = { meta, resolve, reject };
    });
    this.table.set(id, entry);
    this.options.added?.(meta);
    if (timeoutMs > 0 && Number.isFinite(timeoutMs)) {
      entry.timer = setTimeout(() => {
        if (this.remove(id)) entry.reject(this.options.timeout(meta, id));
      }, timeoutMs);
    }
    return { id, answer };
  }

  /** Answers request `id`; false when it is not waiting (answered, failed, timed out, taken). */
  settle(id: number, value: T): boolean {
    const entry = this.remove(id);
    entry?.resolve(value);
    return entry !== undefined;
  }

  /** Fails request `id`; false when it is not waiting. */
  fail(id: number, error: BrumeError): boolean {
    const entry = this.remove(id);
    entry?.reject(error);
    return entry !== undefined;
  }

  /** Fails every request waiting (the link under them closed). */
  failAll(error: BrumeError): void {
    for (const id of [...this.table.keys()]) this.fail(id, error);
  }

  /**
   * Removes request `id` without answering it and answers its meta: for a request that will be
   * answered by another (the relay moves a call whose node left to a new node and id).
   */
  take(id: number): M | undefined {
    return this.remove(id)?.meta;
  }

  /** The meta of request `id` while it waits. */
  get(id: number): M | undefined {
    return this.table.get(id)?.meta;
  }

  has(id: number): boolean {
    return this.table.has(id);
  }

  get size(): number {
    return this.table.size;
  }

  /** The requests waiting now, as [id, meta] (a copy: safe to settle or take while iterating). */
  entries(): [number, M][] {
    return [...this.table].map(([id, e]) => [id, e.meta]);
  }

  private remove(id: number): Entry<T, M> | undefined {
    const entry = this.table.get(id);
    if (!entry) return undefined;
    this.table.delete(id);
    clearTimeout(entry.timer);
    this.options.removed?.(entry.meta);
    return entry;
  }
}
