/**
 * Redundant execution: untrusted dews are spot-checked, and quarantined when they disagree. A call
 * the relay forwards to an untrusted node runs on a second node too — a trusted one when one can
 * take it — when the caller asked `qos.verify` or, for a configured fraction of calls, at random.
 * The answers are compared (`differ`); a node that disagrees with a trusted node, or loses a
 * majority of three untrusted ones, is quarantined with its evidence.
 * @example
 * const book = createQuarantine({ max: 1000 });
 * const verifier = createVerifier({ fraction: 0.05, book, trusted, onQuarantine, onUnresolved });
 * if (verifier.wants(node, qos)) return verifier.check(run, reply);
 */
import { createHash } from 'node:crypto';
import type { QuarantineEntry, QuarantineEvidence } from '../core/api';
import { encode } from '../core/codec';
import { type BrumeError, VerifyError } from '../core/errors';
import type { Qos } from '../core/scheduler';

/** Floats agree when |a − b| ≤ absTol + relTol·max(|a|, |b|): backends round differently. */
export const floatTolerance = { absTol: 1e-5, relTol: 1e-3 };

const maxDepth = 64;

/**
 * Where `a` and `b` differ (`value.outputs.probs[3]: 0.1 ≠ 0.9`), or undefined when they agree:
 * integers, strings, bytes and booleans exactly; other numbers within `floatTolerance`
 * (NaN agrees with NaN); arrays and maps deeply; a tensor (`{ type, dims, data }`, PROTOCOL.md
 * §4) element by element, with the tolerance for float32.
 */
export function differ(a: unknown, b: unknown, path = 'value', depth = 0): string | undefined {
  if (depth > maxDepth) return `${path}: nested deeper than ${maxDepth}, not compared`;
  if (typeof a === 'number' && typeof b === 'number') {
    return sameNumber(a, b, Number.isSafeInteger(a) && Number.isSafeInteger(b))
      ? undefined
      : `${path}: ${a} ≠ ${b}`;
  }
  if (typeof a !== typeof b || (a === null) !== (b === null)) {
    return `${path}: ${kind(a)} ≠ ${kind(b)}`;
  }
  if (a === null || typeof a !== 'object') {
    return a === b ? undefined : `${path}: ${short(a)} ≠ ${short(b)}`;
  }
  const x = a as object;
  const y = b as object;
  if (ArrayBuffer.isView(x) || ArrayBuffer.isView(y)) return differView(x, y, path);
  if (Array.isArray(x) !== Array.isArray(y)) return `${path}: ${kind(x)} ≠ ${kind(y)}`;
  if (Array.isArray(x) && Array.isArray(y)) {
    if (x.length !== y.length) return `${path}: ${x.length} items ≠ ${y.length}`;
    for (let i = 0; i < x.length; i++) {
      const d = differ(x[i], y[i], `${path}[${i}]`, depth + 1);
      if (d) return d;
    }
    return undefined;
  }
  const tx = asTensor(x);
  const ty = asTensor(y);
  if (tx && ty) return differTensor(tx, ty, path);
  const kx = Object.keys(x).sort();
  const ky = Object.keys(y).sort();
  if (kx.join('\0') !== ky.join('\0')) return `${path}: keys ${short(kx)} ≠ ${short(ky)}`;
  for (const k of kx) {
    const d = differ(
      (x as Record<string, unknown>)[k],
      (y as Record<string, unknown>)[k],
      `${path}.${k}`,
      depth + 1,
    );
    if (d) return d;
  }
  return undefined;
}

function sameNumber(a: number, b: number, exact: boolean): boolean {
  if (a === b) return true;
  if (exact) return false;
  if (Number.isNaN(a) || Number.isNaN(b)) return Number.isNaN(a) && Number.isNaN(b);
  const { absTol, relTol } = floatTolerance;
  return Math.abs(a - b) <= absTol + relTol * Math.max(Math.abs(a), Math.abs(b));
}

/** Bytes exactly; Float32/Float64 arrays (page-side tensors) element by element, with tolerance. */
function differView(a: object, b: object, path: string): string | undefined {
  if (!ArrayBuffer.isView(a) || !ArrayBuffer.isView(b) || a.constructor !== b.constructor) {
    return `${path}: ${kind(a)} ≠ ${kind(b)}`;
  }
  if (a instanceof Float32Array || a instanceof Float64Array) {
    return differFloats(a, b as Float32Array | Float64Array, path);
  }
  const x = new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  const y = new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
  if (x.length !== y.length) return `${path}: ${x.length} bytes ≠ ${y.length}`;
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return `${path}: byte ${i} differs`;
  return undefined;
}

function differFloats(
  a: Float32Array | Float64Array,
  b: Float32Array | Float64Array,
  path: string,
): string | undefined {
  if (a.length !== b.length) return `${path}: ${a.length} elements ≠ ${b.length}`;
  for (let i = 0; i < a.length; i++) {
    if (!sameNumber(a[i]!, b[i]!, false)) return `${path}[${i}]: ${a[i]} ≠ ${b[i]}`;
  }
  return undefined;
}

interface TensorLike {
  type: string;
  dims: unknown[];
  data: Uint8Array;
}

function asTensor(v: object): TensorLike | undefined {
  const t = v as Partial<TensorLike>;
  return typeof t.type === 'string' && Array.isArray(t.dims) && t.data instanceof Uint8Array
    ? (t as TensorLike)
    : undefined;
}

function differTensor(a: TensorLike, b: TensorLike, path: string): string | undefined {
  if (a.type !== b.type) return `${path}.type: ${a.type} ≠ ${b.type}`;
  const dims = differ(a.dims, b.dims, `${path}.dims`);
  if (dims) return dims;
  if (a.type === 'float32' && a.data.byteLength % 4 === 0 && b.data.byteLength % 4 === 0) {
    // Copied: a received buffer need not be 4-byte aligned.
    return differFloats(floats(a.data), floats(b.data), `${path}.data`);
  }
  return differView(a.data, b.data, `${path}.data`);
}

function floats(bytes: Uint8Array): Float32Array {
  const copy = bytes.slice();
  return new Float32Array(copy.buffer, 0, copy.byteLength / 4);
}

function kind(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (ArrayBuffer.isView(v)) return (v as object).constructor.name;
  return typeof v;
}

function short(v: unknown): string {
  return describe(v, 40);
}

/** A value as people read it, cut at `max` characters; bytes as their length. */
export function describe(v: unknown, max = 200): string {
  let text: string;
  try {
    text =
      JSON.stringify(v, (_k, x: unknown) => {
        if (x instanceof Uint8Array) return `<${x.byteLength} bytes>`;
        if (ArrayBuffer.isView(x)) return Array.from(x as Float32Array).slice(0, 16);
        if (typeof x === 'bigint') return `${x}n`;
        return x;
      }) ?? String(v);
  } catch {
    text = String(v);
  }
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

/** The first 16 hex digits of SHA-256 over the MessagePack of a value: evidence without bulk. */
export function digest(v: unknown): string {
  try {
    return createHash('sha256').update(encode(v)).digest('hex').slice(0, 16);
  } catch {
    return 'unencodable';
  }
}

/**
 * The quarantined nodes, each with the evidence that put it there; bounded (the oldest entry is
 * released when full: a node id is a key anyone can mint, so the book cannot grow with them).
 */
export function createQuarantine(options: { max?: number; onEvict?: (node: string) => void } = {}) {
  const max = options.max ?? 1000;
  const entries = new Map<string, QuarantineEntry>();
  return {
    max,
    has: (node: string) => entries.has(node),
    /** Adds `evidence.node`; false when it was already quarantined. */
    add(evidence: QuarantineEvidence): boolean {
      if (entries.has(evidence.node)) return false;
      if (entries.size >= max) {
        const oldest = entries.keys().next().value!;
        entries.delete(oldest);
        options.onEvict?.(oldest);
      }
      entries.set(evidence.node, { node: evidence.node, since: evidence.at, evidence });
      return true;
    },
    /** Newest first. */
    list: (): QuarantineEntry[] => [...entries.values()].reverse(),
    /** The admin lets a node serve again; false when it was not quarantined. */
    release: (node: string) => entries.delete(node),
  };
}

export type Quarantine = ReturnType<typeof createQuarantine>;

/** One run's outcome, as the hub's forward answers it. */
export type Outcome<A extends { value: unknown; node: string }> =
  | ({ ok: true } & A)
  | { ok: false; error: BrumeError };

/** One checked call: what it is and how to run it on a chosen node. */
export interface CheckedCall<A extends { value: unknown; node: string }> {
  app: string;
  service: string;
  rpc: string;
  /** The node placement chose (untrusted). */
  primary: string;
  /** The asking node ('' for HTTP): never its own checker. */
  caller: string;
  qos: Qos;
  /** Runs the call, routed exactly as for `primary` (same rpc and variant), on `node`. */
  run(node: string): Promise<Outcome<A>>;
  /** A node to check on, none of `exclude`, trusted ones only if asked; undefined if none. */
  pick(exclude: string[], trustedOnly: boolean): Promise<string | undefined>;
}

export interface VerifierOptions {
  /** Fraction of calls on untrusted nodes checked without being asked (0 to 1). */
  fraction: number;
  book: Quarantine;
  trusted(node: string): boolean;
  /** A node was quarantined (the hub marks its record and logs an event). */
  onQuarantine(evidence: QuarantineEvidence): void;
  /** Two untrusted nodes disagreed and nothing decided between them. */
  onUnresolved(detail: string): void;
  random?: () => number;
}

export function createVerifier(o: VerifierOptions) {
  const random = o.random ?? Math.random;

  function quarantine(
    c: { app: string; service: string; rpc: string },
    bad: { node: string; value: unknown },
    good: { node: string; value: unknown },
    where: string,
    by: QuarantineEvidence['by'],
  ): void {
    const evidence: QuarantineEvidence = {
      node: bad.node,
      at: Date.now(),
      app: c.app,
      service: c.service,
      rpc: c.rpc,
      answer: describe(bad.value),
      digest: digest(bad.value),
      other: good.node,
      otherTrusted: o.trusted(good.node),
      otherAnswer: describe(good.value),
      otherDigest: digest(good.value),
      where,
      by,
    };
    if (o.book.add(evidence)) o.onQuarantine(evidence);
  }

  /** The agreed answer, or why there is none; quarantines the node that lost. */
  async function judge<A extends { value: unknown; node: string }>(
    c: CheckedCall<A>,
    a: Outcome<A>,
    b: Outcome<A>,
  ): Promise<Outcome<A>> {
    if (!a.ok || !b.ok) {
      // A failure is not a disagreement (a node may be busy): nobody is quarantined.
      if (b.ok && o.trusted(b.node)) return b;
      if (!a.ok) return a;
      const why = b.ok ? '' : `: ${b.error.message}`;
      return unverified(`the check of ${id8(a.node)}'s answer failed${why}`);
    }
    if (a.node === b.node) return unverified(`both runs landed on ${id8(a.node)}`);
    const where = differ(a.value, b.value);
    if (!where) return o.trusted(b.node) ? b : a;
    if (o.trusted(b.node)) {
      quarantine(c, a, b, where, 'trusted');
      return b;
    }
    // Two untrusted nodes disagree: a third decides by majority.
    const third = await c.pick([a.node, b.node, ...(c.caller ? [c.caller] : [])], false);
    const t = third ? await c.run(third) : undefined;
    if (t?.ok && t.node !== a.node && t.node !== b.node) {
      if (!differ(a.value, t.value)) {
        quarantine(c, b, a, differ(b.value, a.value) ?? where, 'majority');
        return a;
      }
      if (!differ(b.value, t.value)) {
        quarantine(c, a, b, where, 'majority');
        return b;
      }
    }
    const detail = `${c.app}/${c.service}: ${id8(a.node)} and ${id8(b.node)} disagree (${where}) and no third node agreed with either`;
    o.onUnresolved(detail);
    return unverified(detail);
  }

  return {
    /** Whether a call placed on `node` is run twice: never for a trusted node's answer. */
    wants(node: { trusted: boolean }, qos: Qos): boolean {
      if (node.trusted) return false;
      return qos.verify === true || (o.fraction > 0 && random() < o.fraction);
    },
    /**
     * Runs `c` on its primary and a checker at once. A `qos.verify` caller waits for both and gets
     * only an agreed answer (or a trusted node's), else a VerifyError; a spot-checked caller gets
     * the primary's answer as soon as it comes, and the comparison happens behind it.
     */
    async check<A extends { value: unknown; node: string }>(
      c: CheckedCall<A>,
      reply: (outcome: Outcome<A>) => void,
    ): Promise<void> {
      const held = c.qos.verify === true;
      const first = c.run(c.primary);
      if (!held) void first.then(reply);
      try {
        const exclude = [c.primary, ...(c.caller ? [c.caller] : [])];
        const checker = (await c.pick(exclude, true)) ?? (await c.pick(exclude, false));
        if (!checker) {
          if (!held) return;
          const a = await first;
          return reply(
            a.ok
              ? unverified(`no second node can run ${c.app}/${c.service} to check ${id8(a.node)}`)
              : a,
          );
        }
        const [a, b] = await Promise.all([first, c.run(checker)]);
        const verdict = await judge(c, a, b);
        if (held) reply(verdict);
      } catch (e) {
        if (held) reply(unverified(`the check failed: ${(e as Error).message}`));
      }
    },
  };
}

function unverified(message: string): { ok: false; error: BrumeError } {
  return {
    ok: false,
    error: new VerifyError(`${message}; qos.verify gives no unconfirmed answer`),
  };
}

function id8(node: string): string {
  return node.slice(0, 8);
}
