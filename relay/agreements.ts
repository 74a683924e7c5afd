/**
 * The agreement keys nodes signed for at join (PROTOCOL.md §5.1), which writers ask for
 * (`ctx-keys`) to seal a private value for a node. Kept on disk (`agreements.json`) only for keys
 * somebody may seal for while their node is away: keys on the trust list, and keys a private value
 * in the store is sealed for now (its next writer seals for them again). Every other join is
 * remembered in memory only, the most recent `max` of them. Both are bounded by `max`.
 * @example const a = await openAgreements(join(dir, 'agreements.json'), { max: 10_000, ... });
 *          a.bind(binding); a.lookup([publicKey]);
 */
import { z } from 'zod';
import type { AgreementBinding } from '../core/protocol';
import { readDurable, writeDurable } from './durable';

export interface AgreementOptions {
  /** Bindings kept on disk at most, and joins remembered in memory at most. */
  max: number;
  /** Whether a key is on the trust list (read at each save: the list changes). */
  trusted: (publicKey: string) => boolean;
  /** The keys private values in the store are sealed for now. */
  sealedFor: () => Set<string>;
  warn: (message: string) => void;
}

const rowSchema = z.strictObject({
  publicKey: z.string().max(512),
  agreementKey: z.string().max(128),
  signature: z.string().max(128),
});

/** The bindings on disk, at most `o.max` of them (a corrupt file is moved aside: none). */
async function readKept(path: string, o: AgreementOptions): Promise<Map<string, AgreementBinding>> {
  const rows = await readDurable(
    path,
    (b) => z.array(rowSchema).parse(JSON.parse(String(b))),
    o.warn,
  );
  const kept = new Map<string, AgreementBinding>();
  for (const r of (rows ?? []).slice(0, o.max)) {
    kept.set(r.publicKey, {
      publicKey: r.publicKey,
      agreementKey: Buffer.from(r.agreementKey, 'base64url'),
      signature: Buffer.from(r.signature, 'base64url'),
    });
  }
  return kept;
}

export async function openAgreements(path: string, o: AgreementOptions) {
  /** On disk: the keys that qualified at the last save. */
  const kept = await readKept(path, o);
  /** Recent joins, least recent first (memory only). */
  const recent = new Map<string, AgreementBinding>();
  let full = false;
  let saving: Promise<void> = Promise.resolve();

  const same = (a: AgreementBinding | undefined, b: AgreementBinding) =>
    a !== undefined && Buffer.from(a.agreementKey).equals(b.agreementKey);

  /** Rewrites the file with the kept keys that still qualify. */
  function save(): Promise<void> {
    const sealed = o.sealedFor();
    for (const k of kept.keys()) if (!o.trusted(k) && !sealed.has(k)) kept.delete(k);
    const json = JSON.stringify(
      [...kept.values()].map((a) => ({
        publicKey: a.publicKey,
        agreementKey: Buffer.from(a.agreementKey).toString('base64url'),
        signature: Buffer.from(a.signature).toString('base64url'),
      })),
    );
    saving = writeDurable(path, json).catch((e: unknown) =>
      o.warn(`${path} not saved: ${(e as Error).message}`),
    );
    return saving;
  }

  /** Keeps `b` on disk if there is room: true when that is a change to save. */
  function keep(b: AgreementBinding): boolean {
    if (same(kept.get(b.publicKey), b)) return false;
    if (!kept.has(b.publicKey) && kept.size >= o.max) {
      if (!full)
        o.warn(`${path}: ${o.max} keys kept, the limit; more are not kept across restarts`);
      full = true;
      return false;
    }
    kept.set(b.publicKey, b);
    return true;
  }

  return {
    /** A node joined with binding `b` (its signature checked by the caller). */
    bind(b: AgreementBinding): void {
      recent.delete(b.publicKey);
      recent.set(b.publicKey, b);
      if (recent.size > o.max) recent.delete(recent.keys().next().value as string);
      if ((o.trusted(b.publicKey) || kept.has(b.publicKey)) && keep(b)) void save();
    },
    /** A private value is now sealed for `keys`: keep their bindings for its next writer. */
    sealedFor(keys: string[]): void {
      let changed = false;
      for (const k of keys) {
        const b = recent.get(k);
        if (b && !kept.has(k)) changed = keep(b) || changed;
      }
      if (changed) void save(); // once for all of them
    },
    /** The bindings known for these identity keys. */
    lookup: (keys: string[]) => keys.flatMap((k) => recent.get(k) ?? kept.get(k) ?? []),
    /** Resolves once the last save is done. */
    flush: async () => {
      for (let last = saving; ; last = saving) {
        await last;
        if (last === saving) return;
      }
    },
  };
}
