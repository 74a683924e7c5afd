/**
 * A node's side of private context values: the agreement keys of the identity keys it seals for
 * (asked of the relay with `ctx-keys`, checked by their signature, kept in the KV), and the
 * plaintext of the sealed values it may read (memory only: storage holds the envelope).
 * @example const ring = new Keyring(me, kv);  const to = await ring.recipients(keys, send);
 *          await ring.open(op);  ring.opened(op.opId);
 */
import { decode } from '../codec';
import { BrumeError, TimeoutError, UnavailableError } from '../errors';
import { nodeIdOf, verifyAgreement } from '../identity';
import { Pending } from '../pending';
import type { AgreementBinding } from '../protocol';
import type { KV } from './outbox';
import type { ContextOp } from './replica';
import { type AgreementKey, kidOf, type Recipient, unseal } from './seal';

/** Who this node is, for node-scoped keys and private values. */
export interface ContextIdentity {
  id: string;
  publicKey?: string;
  agreement?: AgreementKey;
}

/** How long a `ctx-keys` question waits for the relay's answer. */
const KEYS_TIMEOUT_MS = 5000;

const bindingPrefix = 'agreement/';

export class Keyring {
  /** Plaintext of the private values this node may read, by operation id: memory only. */
  private readonly plain = new Map<string, unknown>();
  /** Agreement keys of identity keys, checked against their signature. */
  private readonly bindings = new Map<string, Recipient>();
  /** `ctx-keys` questions the relay has not answered yet. */
  readonly queries = new Pending<AgreementBinding[]>({
    timeoutMs: KEYS_TIMEOUT_MS,
    timeout: () => new TimeoutError(`the relay did not answer ctx-keys in ${KEYS_TIMEOUT_MS} ms`),
  });

  constructor(
    private readonly me: ContextIdentity,
    private readonly kv: KV,
  ) {}

  /** Whether KV entry `key` is a binding this keyring keeps. */
  static holds(key: string): boolean {
    return key.startsWith(bindingPrefix);
  }

  /** A binding found in the KV at load. */
  load(key: string, value: unknown): void {
    this.bindings.set(key.slice(bindingPrefix.length), value as Recipient);
  }

  /** The plaintext of sealed value `opId`, when this node could open it. */
  opened(opId: string): { value: unknown } | undefined {
    return this.plain.has(opId) ? { value: this.plain.get(opId) } : undefined;
  }

  /** This node sealed `value` itself as `opId`: it reads it without opening it. */
  remember(opId: string, value: unknown): void {
    this.plain.set(opId, value);
  }

  /** Opens a sealed value this node is a recipient of, into memory. */
  async open(op: ContextOp): Promise<void> {
    const me = this.me.agreement;
    if (!op.sealed || !me || this.plain.has(op.opId)) return;
    try {
      this.plain.set(op.opId, decode(await unseal(op.sealed, me)));
    } catch (e) {
      if (!(e instanceof BrumeError && e.code === 'E_PRIVACY')) throw e;
    }
  }

  /** The relay's answer to `ctx-keys` question `id`. */
  answer(id: number, found: AgreementBinding[]): void {
    this.queries.settle(id, found);
  }

  /** The relay is out of reach: questions waiting get no binding. */
  offline(): void {
    for (const [id] of this.queries.entries()) this.queries.settle(id, []);
  }

  /**
   * The agreement keys to seal for: this node's own, then each key's, checked by signature.
   * Keys not seen here are asked of the relay through `send` when online.
   */
  async recipients(
    keys: string[],
    send: ((frame: { t: 'ctx-keys'; id: number; keys: string[] }) => void) | undefined,
  ): Promise<Recipient[]> {
    for (const k of keys) await nodeIdOf(k); // InputError for what is not a public key
    const missing = keys.filter((k) => k !== this.me.publicKey && !this.bindings.has(k));
    if (missing.length && send) await this.ask(missing, send);
    return keys.map((k) => {
      if (k === this.me.publicKey && this.me.agreement) return this.me.agreement;
      const r = this.bindings.get(k);
      if (!r) {
        throw new UnavailableError(
          `cannot seal a value for key ${k.slice(0, 16)}…: ${send ? 'no node with that key has joined this relay' : 'it was never seen here and the relay is out of reach'}`,
        );
      }
      return r;
    });
  }

  private async ask(
    missing: string[],
    send: (frame: { t: 'ctx-keys'; id: number; keys: string[] }) => void,
  ): Promise<void> {
    const { id, answer } = this.queries.open(undefined);
    send({ t: 'ctx-keys', id, keys: missing });
    // Unanswered in time: no binding; the key is then reported as unknown by `recipients`.
    const found = await answer.catch((e: unknown) => {
      if (e instanceof TimeoutError) return [];
      throw e;
    });
    for (const b of found) {
      if (!missing.includes(b.publicKey)) continue;
      if (!(await verifyAgreement(b.publicKey, b.agreementKey, b.signature))) continue;
      const r = { kid: await kidOf(b.agreementKey), publicKey: b.agreementKey };
      this.bindings.set(b.publicKey, r);
      await this.kv.set(`${bindingPrefix}${b.publicKey}`, r);
    }
  }
}
