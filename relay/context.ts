/**
 * The relay's copy of the context store, durable: every operation it acknowledges is appended to
 * `<data>/context.log` and fsynced first, and the log is replayed at start, so a relay killed at
 * any moment loses nothing it acknowledged.
 * @example const ctx = await openContext('.brume'); if (await ctx.accept(op, nodeId)) fanOut(op);
 */
import { mkdir, open, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { decode, encode } from '../core/codec';
import { Clock } from '../core/context/hlc';
import { type ContextOp, ContextReplica } from '../core/context/replica';
import { BrumeError } from '../core/errors';
import { type AgreementBinding, contextOpSchema } from '../core/protocol';

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
  // Agreement keys nodes signed for at join, so writers can seal for nodes that are away.
  const agreementsPath = join(dataDir, 'agreements.json');
  const agreements = new Map<string, AgreementBinding>(
    (
      JSON.parse(await readFile(agreementsPath, 'utf8').catch(() => '[]')) as {
        publicKey: string;
        agreementKey: string;
        signature: string;
      }[]
    ).map((b) => [
      b.publicKey,
      {
        publicKey: b.publicKey,
        agreementKey: Buffer.from(b.agreementKey, 'base64url'),
        signature: Buffer.from(b.signature, 'base64url'),
      },
    ]),
  );
  let saving: Promise<void> = Promise.resolve();

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
        if (op.privacy && op.value) {
          throw new BrumeError('E_PRIVACY', 'a private value must arrive sealed, not in plaintext');
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
    /** Remembers the agreement key a node's identity signed for (checked by the caller). */
    bind(b: AgreementBinding): void {
      const old = agreements.get(b.publicKey);
      if (old && Buffer.from(old.agreementKey).equals(b.agreementKey)) return;
      agreements.set(b.publicKey, b);
      const rows = [...agreements.values()].map((a) => ({
        publicKey: a.publicKey,
        agreementKey: Buffer.from(a.agreementKey).toString('base64url'),
        signature: Buffer.from(a.signature).toString('base64url'),
      }));
      saving = saving
        .then(async () => {
          await writeFile(`${agreementsPath}.tmp`, JSON.stringify(rows));
          await rename(`${agreementsPath}.tmp`, agreementsPath);
        })
        .catch((e: unknown) => process.emitWarning(`agreements.json not saved: ${e}`));
    },
    /** The bindings known for these identity keys. */
    agreements: (keys: string[]) => keys.flatMap((k) => agreements.get(k) ?? []),
    /** A stamp for a write the relay makes itself (HTTP PUT/DELETE). */
    tick: () => clock.tick(),
    close: () => file.close(),
  };
}
