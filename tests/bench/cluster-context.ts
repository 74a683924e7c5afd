// A context write reaching watchers spread over a cluster's relays: the writer on relay 0, the
// watchers taken from every relay in turn; each watcher times a write's arrival (same process,
// same clock). Then writes per second acknowledged, 10 writers from every relay, 8 in flight each.
import { decodeFrame } from '../../core/protocol';
import type { RawNode } from '../raw-node';
import type { ContextFigures } from './cluster-kit';
import { ctxOp, writesAcked } from './context-writes';
import { quantile } from './decisions';

/** Waits up to `ms` for `check`, polling each millisecond (the figure is milliseconds). */
async function within(check: () => boolean, ms: number): Promise<boolean> {
  const deadline = performance.now() + ms;
  while (!check() && performance.now() < deadline) await new Promise((r) => setTimeout(r, 1));
  return check();
}

let runs = 0;

/**
 * `watchers` of `byRelay`'s nodes (round robin over the relays) watch a fresh app; `writes` writes
 * by the first node of relay 0 are timed to each. A write some watcher has not seen within 10 s
 * is counted as missed (on a cluster whose relays do not share the context log, every write misses
 * the other relays' watchers: the first miss ends the timing).
 */
export async function clusterContext(
  byRelay: RawNode[][],
  watchers: number,
  writes: number,
): Promise<ContextFigures> {
  const app = `bench-cluster-${++runs}`;
  const writer = byRelay[0]![0]!;
  const watching: RawNode[] = [];
  for (let i = 0; watching.length < watchers; i++) {
    const list = byRelay[i % byRelay.length]!;
    const node = list[Math.floor(i / byRelay.length) + (list === byRelay[0] ? 1 : 0)];
    if (node) watching.push(node);
    else if (i > watchers * byRelay.length) break;
  }
  const arrivals = new Map<string, number[]>();
  const sentAt = new Map<string, number>();
  const handlers: [RawNode, (data: Buffer) => void][] = [];
  for (const w of watching) {
    w.send({ t: 'ctx-sync', cursor: 0, apps: [app] });
    const h = (data: Buffer) => {
      const f = decodeFrame(new Uint8Array(data), 'toNode');
      if (f.t !== 'ctx-op') return;
      const t0 = sentAt.get(f.op.opId);
      if (t0 !== undefined) arrivals.get(f.op.opId)!.push(performance.now() - t0);
    };
    w.ws.on('message', h);
    handlers.push([w, h]);
  }
  try {
    await Promise.all(watching.map((w) => w.next('ctx-catchup', 30_000)));
    const all: number[] = [];
    const last: number[] = [];
    let missed = 0;
    for (let i = 0; i < writes; i++) {
      const o = ctxOp(app, writer, `k${i % 10}`, i, i);
      arrivals.set(o.opId, []);
      sentAt.set(o.opId, performance.now());
      writer.send({ t: 'ctx-op', op: o });
      const got = arrivals.get(o.opId)!;
      const ok = await within(() => got.length >= watching.length, 10_000);
      all.push(...got);
      if (!ok) {
        missed += writes - i;
        break;
      }
      last.push(Math.max(...got));
    }
    return {
      watchers: watching.length,
      p50Ms: quantile(all, 0.5),
      p99Ms: quantile(all, 0.99),
      allReachedP50Ms: quantile(last, 0.5),
      writesPerSecond: await ackRate(app, byRelay),
      missed,
    };
  } finally {
    for (const [w, h] of handlers) w.ws.off('message', h);
  }
}

/** Writes a second acknowledged: 10 writers taken from every relay, 8 in flight each, for 3 s. */
async function ackRate(app: string, byRelay: RawNode[][]): Promise<number> {
  const writers: RawNode[] = [];
  for (let i = 0; writers.length < 10 && i < 10 * byRelay.length; i++) {
    const node = byRelay[i % byRelay.length]![Math.floor(i / byRelay.length)];
    if (node) writers.push(node);
  }
  return writesAcked(app, writers);
}
