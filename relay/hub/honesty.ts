/**
 * Honest placement: the relay's own timings of each node (relay/measure.ts), and answers on
 * untrusted nodes checked by redundant execution, with the nodes that lost quarantined
 * (relay/verify.ts). This wires both to the registry's records and the event log.
 * @example const honesty = createHonesty({ verifyFraction: 0.05, maxQuarantined: 1000, node, event });
 */
import type { NodeRecord } from '../../core/api';
import { InputError } from '../../core/errors';
import { createMeter } from '../measure';
import { createQuarantine, createVerifier } from '../verify';
import type { Logs } from './logs';

export interface HonestyOptions {
  /** Fraction (0–1) of calls on untrusted nodes also run on a second node and compared. */
  verifyFraction?: number;
  /** Nodes kept in quarantine at most (the oldest is released when full). Default 1000. */
  maxQuarantined?: number;
  /** The connected node `id`, if it is. */
  node(id: string): NodeRecord | undefined;
  event: Logs['event'];
}

export function createHonesty(o: HonestyOptions) {
  const verifyFraction = o.verifyFraction ?? 0;
  if (!(verifyFraction >= 0 && verifyFraction <= 1))
    throw new InputError(`verifyFraction must be from 0 to 1, got ${verifyFraction}`);
  const maxQuarantined = o.maxQuarantined ?? 1000;
  if (!(Number.isInteger(maxQuarantined) && maxQuarantined >= 1))
    throw new InputError(
      `maxQuarantined must be a whole number of at least 1, got ${maxQuarantined}`,
    );
  const meter = createMeter();
  const quarantine = createQuarantine({
    max: maxQuarantined,
    onEvict(id) {
      const n = o.node(id);
      if (n) n.quarantined = false;
    },
  });
  const verifier = createVerifier({
    fraction: verifyFraction,
    book: quarantine,
    trusted: (id) => o.node(id)?.trusted === true,
    onQuarantine(e) {
      const n = o.node(e.node);
      if (n) n.quarantined = true;
      const by = e.by === 'trusted' ? 'trusted node' : 'majority of three';
      o.event(
        'quarantined',
        `${e.app}/${e.service} answered ${e.where}; ${by} ${e.other.slice(0, 8)} disagreed`,
        e.node,
      );
    },
    onUnresolved: (detail) => o.event('disagreed', detail),
  });
  return {
    meter,
    quarantine,
    verifier,
    /** Lets a quarantined node be placed again; false when it was not quarantined. */
    release(node: string): boolean {
      const had = quarantine.release(node);
      const n = o.node(node);
      if (had && n) n.quarantined = false;
      if (had) o.event('released', 'released from quarantine by the admin', node);
      return had;
    },
  };
}
