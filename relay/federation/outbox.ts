/**
 * What this site still has to push to one peer, in order, on disk until the peer took it: each
 * item is a small file (`<dir>/<seq>.item`, MessagePack, written durably) removed once delivered,
 * so a relay restarted mid-way pushes the rest. One delivery at a time per peer; a peer that
 * cannot be reached (or answers 5xx/429) is retried with exponential backoff; a peer that refuses
 * an item for good (another 4xx) has it dropped with a warning, so one bad item never blocks the
 * queue. The queue is bounded in items and bytes: past either, a new item is dropped with a
 * warning (the local write stands; the peer misses that change).
 * @example const box = await openOutbox(dir, { deliver, log }); box.push({ kind: 'context', op });
 */
import { mkdir, readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { decode, encode } from '../../core/codec';
import type { ContextOp } from '../../core/context/replica';
import { writeDurable } from '../durable';
import type { ObjectItem } from './objects';

/**
 * What is pushed: an app version deployed, a version made current, a context change, a user,
 * project or key changed (relay/federation/objects.ts).
 */
export type OutItem =
  | { kind: 'app'; name: string; version: string }
  | { kind: 'current'; name: string; version: string }
  | { kind: 'context'; op: ContextOp }
  | ObjectItem;

/** A delivery the peer refused for good: dropped, not retried. */
export class Refused extends Error {}

export interface Outbox {
  push(item: OutItem): void;
  /** Items and bytes waiting. */
  size(): { items: number; bytes: number };
  /** Resolves once nothing waits (tests). */
  drained(): Promise<void>;
  close(): Promise<void>;
}

/** Items waiting per peer at most. */
export const MAX_OUTBOX_ITEMS = 10_000;
/** Bytes waiting per peer at most (context values are the large ones). */
export const MAX_OUTBOX_BYTES = 64 * 1024 * 1024;
/** First retry delay, doubled per failure up to the cap. */
const RETRY_FIRST_MS = 250;
const RETRY_MAX_MS = 30_000;

export async function openOutbox(
  dir: string,
  o: {
    /** Pushes one item; throws Refused when the peer will never take it, anything else to retry. */
    deliver(item: OutItem): Promise<void>;
    log: { warn(m: string): void };
    name: string;
  },
): Promise<Outbox> {
  await mkdir(dir, { recursive: true });
  const queue: { seq: number; item: OutItem; bytes: number }[] = [];
  let bytes = 0;
  let next = 0;
  for (const f of (await readdir(dir)).sort()) {
    const m = /^(\d{16})\.item$/.exec(f);
    if (!m) continue;
    const seq = Number(m[1]);
    next = Math.max(next, seq + 1);
    try {
      const raw = await readFile(join(dir, f));
      queue.push({ seq, item: decode(raw) as OutItem, bytes: raw.byteLength });
      bytes += raw.byteLength;
    } catch (e) {
      o.log.warn(`federation outbox ${o.name}: ${f} unreadable, dropped: ${(e as Error).message}`);
      await rm(join(dir, f), { force: true });
    }
  }
  const file = (seq: number) => join(dir, `${String(seq).padStart(16, '0')}.item`);
  let closed = false;
  let running: Promise<void> | undefined;
  let wake: (() => void) | undefined;
  let waiters: (() => void)[] = [];
  // Writes in push order: an item is on disk before it is delivered.
  let written: Promise<void> = Promise.resolve();

  async function run(): Promise<void> {
    let delay = RETRY_FIRST_MS;
    while (!closed && queue.length > 0) {
      const head = queue[0]!;
      await written;
      try {
        await o.deliver(head.item);
      } catch (e) {
        if (!(e instanceof Refused)) {
          // Not reachable or not now: wait, then the same item again.
          await new Promise<void>((resolve) => {
            const t = setTimeout(resolve, delay);
            t.unref();
            wake = () => {
              clearTimeout(t);
              resolve();
            };
          });
          wake = undefined;
          delay = Math.min(delay * 2, RETRY_MAX_MS);
          continue;
        }
        o.log.warn(`federation: peer ${o.name} refused a ${head.item.kind} push: ${e.message}`);
      }
      delay = RETRY_FIRST_MS;
      queue.shift();
      bytes -= head.bytes;
      await rm(file(head.seq), { force: true });
    }
    if (queue.length === 0) {
      for (const w of waiters) w();
      waiters = [];
    }
  }
  const start = () => {
    if (running) return;
    // After this turn: `running` is set before the loop can end and clear it.
    running = Promise.resolve()
      .then(run)
      .finally(() => {
        running = undefined;
        if (queue.length > 0 && !closed) start();
      });
  };
  start();

  return {
    push(item) {
      if (closed) return;
      const raw = encode(item);
      if (queue.length >= MAX_OUTBOX_ITEMS || bytes + raw.byteLength > MAX_OUTBOX_BYTES) {
        o.log.warn(
          `federation: outbox to ${o.name} full (${queue.length} items, ${bytes} bytes; limits ${MAX_OUTBOX_ITEMS}, ${MAX_OUTBOX_BYTES}): a ${item.kind} push dropped`,
        );
        return;
      }
      const seq = next++;
      queue.push({ seq, item, bytes: raw.byteLength });
      bytes += raw.byteLength;
      written = written
        .then(() => writeDurable(file(seq), raw))
        .catch((e: unknown) =>
          o.log.warn(
            `federation outbox ${o.name}: not saved, kept in memory: ${(e as Error).message}`,
          ),
        );
      start();
    },
    size: () => ({ items: queue.length, bytes }),
    drained: () =>
      queue.length === 0 ? Promise.resolve() : new Promise<void>((r) => waiters.push(r)),
    async close() {
      closed = true;
      wake?.();
      await running;
      await written;
    },
  };
}
