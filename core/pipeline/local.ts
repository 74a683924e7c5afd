/**
 * A pipeline run on one node alone (a lone Runtime, a call kept on the device by privacy, a node
 * cut off from the relay): every stage is a call to this node's own runtime, on the version the
 * pipeline started with. Also the per-pipeline level figures a host keeps (`PipelineStats`).
 */

import type { CallOptions, CallResult } from '../call-types';
import type { Manifest } from '../manifest';
import type { Qos } from '../scheduler';
import { LevelStats } from './quality';
import { type PipelineHost, runPipeline } from './run';

type Call = (
  app: string,
  service: string,
  input: unknown,
  qos: Qos,
  opts: CallOptions,
) => Promise<CallResult>;

/** The host of a node that runs every stage itself (`id`): its own runtime's `call`. */
export function localHost(id: string, m: Manifest, call: Call): PipelineHost {
  return {
    source: id,
    nodes: () => [{ id, tier: 'dew', free: Number.POSITIVE_INFINITY }],
    cost: () => 0,
    async run(_node, c) {
      const qos = { ...c.qos, version: m.version };
      const r = await call(m.name, c.service, c.input, qos, {
        ...(c.rpc && { rpc: c.rpc }),
        traceId: c.traceId,
      });
      return { value: r.value, rpc: r.rpc, node: id, version: r.version };
    },
  };
}

/** Runs pipeline `name` of `m` on this node alone, answering as a call does. */
export async function runLocalPipeline(
  id: string,
  m: Manifest,
  name: string,
  input: unknown,
  qos: Qos,
  traceId: string,
  call: Call,
  stats: PipelineStats,
): Promise<CallResult> {
  const a = await runPipeline(m, name, input, qos, localHost(id, m, call), {
    traceId,
    stats: stats.of(m.name, name, m.version),
  });
  return {
    value: a.value,
    rpc: '',
    ms: a.ms,
    version: a.version,
    trace: a.trace,
    traceId,
    ...(a.quality !== undefined && { quality: a.quality }),
  };
}

/** Level figures per app, pipeline and version, the most recently used `max` kept. */
export class PipelineStats {
  private readonly map = new Map<string, LevelStats>();
  constructor(private readonly max = 64) {}

  of(app: string, pipeline: string, version: string): LevelStats {
    const key = `${app}/${pipeline}@${version}`;
    const s = this.map.get(key) ?? new LevelStats();
    this.map.delete(key);
    this.map.set(key, s);
    if (this.map.size > this.max) this.map.delete(this.map.keys().next().value!);
    return s;
  }
}
