import { QosError } from './errors';

/** What a caller needs; absent fields are not constraints. */
export interface Qos {
  latencyMs?: number;
  accuracy?: number;
  /** A node id, a trusted public key, or 'device' (never leave this node). */
  privacy?: string;
  /**
   * Only an answer a second node agrees with (or a trusted node gave): an untrusted node's answer
   * is checked by redundant execution on the relay (PROTOCOL.md §5.3), else the call fails.
   */
  verify?: boolean;
  /** Only this app version, or those a semver range allows (core/versions.ts). */
  version?: string;
}

export interface VariantCandidate {
  rpc: string;
  accuracy: number;
  /** Measured here once it counts (`minSamples`), the manifest's figure × the backend prior before. */
  estimateMs: number;
  measured: boolean;
}

export interface Decision {
  rpc: string;
  estimateMs: number;
  reason: string;
}

/**
 * Picks the variant a node runs for `qos`: the most accurate one whose latency estimate fits the
 * budget; with no budget, the most accurate; ties go to the faster.
 * @example chooseVariant('model', candidates, { accuracy: 0.95 }).rpc === 'large'
 */
export function chooseVariant(
  service: string,
  candidates: VariantCandidate[],
  qos: Qos = {},
): Decision {
  if (candidates.length === 0) {
    throw new QosError('accuracy', undefined, `no variant of "${service}" can run on this node`);
  }
  const accurate = candidates.filter(
    (c) => qos.accuracy === undefined || c.accuracy >= qos.accuracy,
  );
  if (accurate.length === 0) {
    const best = Math.max(...candidates.map((c) => c.accuracy));
    throw new QosError(
      'accuracy',
      best,
      `no variant of "${service}" reaches accuracy ${qos.accuracy}; the best is ${best}`,
    );
  }
  const fast = accurate.filter((c) => qos.latencyMs === undefined || c.estimateMs <= qos.latencyMs);
  if (fast.length === 0) {
    const best = Math.min(...accurate.map((c) => c.estimateMs));
    throw new QosError(
      'latencyMs',
      best,
      `no variant of "${service}" meeting the accuracy target runs within ${qos.latencyMs} ms here; the fastest takes ~${best.toFixed(2)} ms`,
    );
  }
  fast.sort((a, b) => b.accuracy - a.accuracy || a.estimateMs - b.estimateMs);
  const pick = fast[0]!;
  const source = pick.measured ? 'measured here' : 'manifest figure × backend prior';
  const why =
    qos.latencyMs !== undefined
      ? `most accurate variant within ${qos.latencyMs} ms`
      : 'most accurate variant (no latency budget)';
  return {
    rpc: pick.rpc,
    estimateMs: pick.estimateMs,
    reason: `${why}: ${pick.rpc} (accuracy ${pick.accuracy}, ~${pick.estimateMs.toFixed(2)} ms, ${source})`,
  };
}
