// What the context benches send: a node's context write, and the writes a second the relays
// acknowledge with 8 writes in flight from each writer for 3 s (tests/bench/context.ts on one
// relay, tests/bench/cluster-context.ts across a cluster's relays).
import { encode } from '../../core/codec';
import { decodeFrame } from '../../core/protocol';
import type { RawNode } from '../raw-node';

/** A context write as a node sends it. */
export function ctxOp(app: string, node: RawNode, key: string, value: unknown, count: number) {
  return {
    opId: crypto.randomUUID(),
    app,
    key,
    scope: 'app' as const,
    stamp: { wall: Date.now(), count, node: node.identity.id },
    kind: 'put' as const,
    value: encode(value),
  };
}

/**
 * Writes a second acknowledged: each of `writers` keeps 8 writes of `app` in flight for 3 s; a
 * writer whose last answers never come is ended 10 s later, those writes not acknowledged.
 */
export async function writesAcked(app: string, writers: RawNode[]): Promise<number> {
  let acked = 0;
  let stop = false;
  const t0 = performance.now();
  await Promise.all(
    writers.map(
      (w, s) =>
        new Promise<void>((resolve) => {
          let inFlight = 0;
          let k = 0;
          const write = () => {
            inFlight++;
            w.send({ t: 'ctx-op', op: ctxOp(app, w, `w${s}-${k % 20}`, k, k++) });
          };
          const h = (data: Buffer) => {
            const f = decodeFrame(new Uint8Array(data), 'toNode');
            if (f.t !== 'ctx-ack' && f.t !== 'ctx-nack') return;
            inFlight--;
            if (f.t === 'ctx-ack') acked++;
            if (!stop) write();
            else if (inFlight === 0) finish();
          };
          const finish = () => {
            w.ws.off('message', h);
            resolve();
          };
          w.ws.on('message', h);
          for (let i = 0; i < 8; i++) write();
          setTimeout(() => {
            stop = true;
            // An answer that never comes ends the writer 10 s later, counted as not acknowledged.
            setTimeout(finish, 10_000).unref();
          }, 3000);
        }),
    ),
  );
  return (acked * 1000) / (performance.now() - t0);
}
