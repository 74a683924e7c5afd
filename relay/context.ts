/**
 * The relay's copy of the context store, durable: every operation it acknowledges is appended to
 * `<data>/context.log` and fsynced first, and the log is replayed at start, so a relay killed at
 * any moment loses nothing it acknowledged.
 * @example const ctx = await openContext('.brume'); if (await ctx.accept(op, nodeId)) fanOut(op);
 */
import { mkdir, open, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { decode, encode } from '../core/codec';
import { Clock } from '../core/context/hlc';
import { type ContextOp, ContextReplica } from '../core/context/replica';
import { BrumeError } from '../core/errors';
import { contextOpSchema } from '../core/protocol';

export type RelayContext = Awaited<ReturnType<typeof openContext>>;

export async function openContext(dataDir: string) {
  await mkdir(dataDir, { recursive: true });
  const path = join(dataDir, 'context.log');
  const replica = new ContextReplica();
  const clock = new Clock('relay');
  // Records: a 4-byte big-endian length, then the operation as MessagePack. A torn last record
  // (a crash mid-write, never acknowledged) is ignored.
  const bytes = await readFile(path).catch(() => Buffer.alloc(0));
  let at = 0;
  while (at + 4 <= bytes.length) {
    const len = bytes.readUInt32BE(at);
    if (at + 4 + len > bytes.length) break;
    const op = contextOpSchema.parse(decode(bytes.subarray(at + 4, at + 4 + len))) as ContextOp;
    clock.receive(op.stamp);
    replica.apply(op);
    at += 4 + len;
  }
  const file = await open(path, 'a');
  if (at < bytes.length) await file.truncate(at);
  let writes: Promise<unknown> = Promise.resolve();

  return {
    replica,
    /** Operations restored from disk at start. */
    restored: replica.cursor,
    /**
     * Takes an operation from node `from` ('' for the relay's own HTTP API): checks it, stores it
     * durably, applies it. Answers its log sequence number when it changed the store (to fan
     * out), 0 when not (a duplicate, or an older write); throws what refuses it.
     */
    accept(op: ContextOp, from: string): Promise<number> {
      const run = writes.then(async () => {
        if (op.scope === 'node' && op.owner !== from) {
          throw new BrumeError('E_INPUT', `a node writes only its own node-scoped keys`);
        }
        if (op.privacy?.includes('device')) {
          throw new BrumeError('E_INPUT', 'a device-private value never leaves its device');
        }
        if (replica.has(op.opId)) return 0;
        replica.check(op);
        clock.receive(op.stamp);
        const record = encode(op);
        const head = Buffer.alloc(4);
        head.writeUInt32BE(record.byteLength);
        await file.write(Buffer.concat([head, record]));
        await file.datasync();
        return replica.apply(op) ? replica.cursor : 0;
      });
      writes = run.catch(() => undefined);
      return run;
    },
    /** A stamp for a write the relay makes itself (HTTP PUT/DELETE). */
    tick: () => clock.tick(),
    close: () => file.close(),
  };
}
