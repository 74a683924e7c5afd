/** Latency of one (service, rpc, backend), measured on this node. */
export interface LatencySummary {
  count: number;
  p50: number;
  p99: number;
  mean: number;
}

const window = 256;

/**
 * The sample at quantile `q` of `sorted` (ascending, not empty): the one at floor(q·n), the last
 * for q near 1. Both the node's figures and the relay's own measurement (relay/measure.ts) use it.
 */
export function quantile(sorted: readonly number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

/**
 * Keeps the most recent latencies per stats key (core/placement `statsKey`); placement trusts
 * these over the manifest's figures once there are `minSamples`.
 */
export class LatencyStats {
  // `summary`: the last one computed, until the next sample (a node plans by these per call).
  private readonly samples = new Map<
    string,
    { ring: number[]; next: number; count: number; summary?: LatencySummary }
  >();

  record(key: string, ms: number): void {
    let s = this.samples.get(key);
    if (!s) {
      s = { ring: [], next: 0, count: 0 };
      this.samples.set(key, s);
    }
    if (s.ring.length < window) s.ring.push(ms);
    else s.ring[s.next] = ms;
    s.next = (s.next + 1) % window;
    s.count++;
    s.summary = undefined;
  }

  get(key: string): LatencySummary | undefined {
    const s = this.samples.get(key);
    if (!s) return undefined;
    if (!s.summary) {
      const sorted = [...s.ring].sort((a, b) => a - b);
      const mean = sorted.reduce((a, b) => a + b, 0) / sorted.length;
      s.summary = { count: s.count, p50: quantile(sorted, 0.5), p99: quantile(sorted, 0.99), mean };
    }
    return { ...s.summary };
  }

  all(): Record<string, LatencySummary> {
    const out: Record<string, LatencySummary> = {};
    for (const key of this.samples.keys()) out[key] = this.get(key)!;
    return out;
  }
}
