/**
 * Decision leases (PROTOCOL.md §5.3.2), a node's side: decisions the relay leased to it, reused
 * for calls with the same key (app, service, rpc, QoS, whether this node excluded itself) until
 * they expire, the relay revokes them, the link to the relay drops, or a call on one fails. A
 * lease only saves the round trip that asks: where it points is still the relay's decision.
 * @example const d = leases.get(key) ?? (await askRelay());   // then leases.put(key, d, askedAt)
 */
import type { Lease, ToNode } from '../protocol';
import type { Qos } from '../scheduler';

export type Decision = Extract<ToNode, { t: 'decision' }>;

/** A node keeps at most this many leases (the relay grants one node 256 by default). */
const maxHeld = 256;
/** Revoked ids remembered, for a revocation that overtakes the decision it revokes. */
const maxRevoked = 1024;

interface Held {
  decision: Decision;
  expiresAt: number;
}

export class LeaseCache {
  private readonly held = new Map<string, Held>();
  private readonly revoked = new Set<number>();
  /** Calls that reused a lease, and decisions asked of the relay with one wanted. */
  hits = 0;
  asked = 0;

  constructor(private readonly now: () => number = () => performance.now()) {}

  /** The key a lease covers; undefined for a request no lease may answer. */
  static key(app: string, service: string, rpc: string, qos: Qos, self: boolean) {
    if (qos.verify) return undefined;
    return `${app}/${service}/${rpc}|${qos.latencyMs ?? ''}|${qos.accuracy ?? ''}|${qos.privacy ?? ''}|${qos.version ?? ''}|${self ? 'x' : ''}`;
  }

  /** The live decision leased for `key`, if any. */
  get(key: string): Decision | undefined {
    const h = this.held.get(key);
    if (!h) return undefined;
    if (h.expiresAt <= this.now()) {
      this.held.delete(key);
      return undefined;
    }
    this.hits++;
    return h.decision;
  }

  /**
   * Keeps a decision whose lease covers `key` (asked at `askedAt`, so it expires here no later
   * than at the relay). A lease for another key, or one already revoked, is not kept.
   */
  put(key: string, d: Decision, askedAt: number, covers: (l: Lease) => boolean): void {
    const l = d.lease;
    if (!l || this.revoked.has(l.id) || !covers(l)) return;
    this.held.delete(key);
    if (this.held.size >= maxHeld) this.held.delete(this.held.keys().next().value!);
    this.held.set(key, { decision: d, expiresAt: askedAt + l.ms });
  }

  /** The relay revoked these leases. */
  revoke(ids: readonly number[]): void {
    const gone = new Set(ids);
    for (const [key, h] of this.held) if (gone.has(h.decision.lease!.id)) this.held.delete(key);
    for (const id of ids) {
      this.revoked.add(id);
      if (this.revoked.size > maxRevoked) this.revoked.delete(this.revoked.values().next().value!);
    }
  }

  /** A call on `key`'s lease failed or went elsewhere: ask the relay next time. */
  drop(key: string): void {
    this.held.delete(key);
  }

  /** `node` left: no lease pointing to it is used again. */
  forget(node: string): void {
    for (const [key, h] of this.held) if (h.decision.node === node) this.held.delete(key);
  }

  /** The link to the relay dropped: the relay forgot every lease it gave this connection. */
  clear(): void {
    this.held.clear();
    this.revoked.clear();
  }

  get size(): number {
    return this.held.size;
  }
}
