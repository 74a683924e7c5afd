/**
 * The pipeline executor: one function for every entry (a lone Runtime, the relay for its nodes
 * and HTTP clients, the benchmark), which differ only in their `PipelineHost`: the nodes it may
 * place on and how one stage call runs on one node. It picks the quality level (quality.ts), places
 * the stages (place.ts), then runs each stage as soon as its `from` are done; a fan-out stage runs
 * one branch per list element, dealt over its node and the `spread`, in parallel. A branch whose
 * node is lost (E_DISCONNECTED, E_UNAVAILABLE, E_TIMEOUT from the node) runs again on the next
 * node not lost — each branch answers exactly once, in element order. A stage past its
 * `deadlineMs` fails the call with E_TIMEOUT naming the stage.
 * @example
 * const a = await runPipeline(manifest, 'read', input, { accuracy: 0.9 }, host, { traceId });
 * a.value; // the output stage's value, with `quality` and `ms` when it is a map
 * a.trace; // one entry per stage run: stage, node, branch, ms
 */

import type { TraceEntry } from '../call-types';
import { BrumeError, fromWire, InputError, NotFoundError, TimeoutError } from '../errors';
import type { Manifest } from '../manifest';
import type { Qos } from '../scheduler';
import { type PipelinePlacement, type PlaceNode, placePipeline } from './place';
import { applyQuality, type LevelStats } from './quality';
import { INPUT, type Pipeline, type Stage, stageOrder } from './schema';

/** One stage call to run on one node. */
export interface StageCall {
  stage: string;
  service: string;
  /** A Logic's rpc or a Model's variant; '' lets the node choose. */
  rpc: string;
  input: unknown;
  qos: Qos;
  traceId: string;
}

export interface StageAnswer {
  value: unknown;
  rpc: string;
  /** The node that ran it (a host that moved it says where). */
  node: string;
  version?: string;
}

export interface PipelineHost {
  /** Where the input comes from: the calling node, or '' for an HTTP client. */
  source: string;
  /** The nodes that may run stages of `manifest`, with what each can run. */
  nodes(manifest: Manifest, pipeline: Pipeline, qos: Qos): PlaceNode[];
  /** Link cost between two nodes in ms (0 for one node). */
  cost(a: string, b: string): number;
  run(node: string, call: StageCall): Promise<StageAnswer>;
}

export interface PipelineAnswer {
  value: unknown;
  ms: number;
  /** The chosen level's value (absent: the pipeline declares no quality). */
  quality?: number;
  qualityReason?: string;
  /** The node that ran the output stage. */
  node: string;
  trace: TraceEntry[];
  version: string;
  placement: PipelinePlacement;
}

/**
 * Bounds: branches of one fan-out, nodes one branch is tried on, and trace entries answered (the
 * wire's bound on a trace, PROTOCOL.md §5.3: past it the first ones are kept).
 */
export const pipelineRunLimits = { branches: 128, attempts: 4, trace: 256 } as const;

/** A stage call that failed this way runs again on another node. */
const placeAgain = new Set(['E_DISCONNECTED', 'E_UNAVAILABLE', 'E_TIMEOUT', 'E_NO_LINK']);

export interface RunOptions {
  traceId: string;
  /** Per-level wall times of this pipeline, read for the choice and fed with this run. */
  stats?: LevelStats;
  log?: (line: string) => void;
}

export async function runPipeline(
  manifest: Manifest,
  name: string,
  input: unknown,
  qos: Qos,
  host: PipelineHost,
  opts: RunOptions,
): Promise<PipelineAnswer> {
  const t0 = performance.now();
  const p = manifest.pipelines?.[name];
  if (!p || !Object.hasOwn(manifest.pipelines!, name)) {
    throw new NotFoundError(`app "${manifest.name}" has no pipeline "${name}"`);
  }
  let choice: ReturnType<typeof applyQuality>['choice'] | undefined;
  if (p.quality) ({ input, choice } = applyQuality(p.quality, input, qos, opts.stats));
  const order = stageOrder(p.stages);
  const able = host.nodes(manifest, p, qos);
  /** Whether node `id` may run `stage` (a service's tiers, a pinned variant: `PlaceNode.runs`). */
  const mayRun = (id: string, stage: string) => {
    const n = able.find((x) => x.id === id);
    return n !== undefined && (n.runs?.(stage) ?? true);
  };
  const placement = placePipeline({
    stages: order.map((s) => {
      const st = p.stages[s]!;
      const x = { name: s, class: st.class, from: st.from, need: 1, fanOut: st.each !== undefined };
      return st.priority === undefined ? x : { ...x, priority: st.priority };
    }),
    nodes: able,
    source: host.source,
    cost: (a, b) => host.cost(a, b),
    ...(qos.privacy !== undefined && { privacy: qos.privacy }),
  });
  // A stage runs under the caller's privacy and version; accuracy and latency are the pipeline's.
  const stageQos: Qos = {
    ...(qos.privacy !== undefined && { privacy: qos.privacy }),
    ...(qos.version !== undefined && { version: qos.version }),
  };
  const trace: TraceEntry[] = [];
  const lost = new Set<string>();
  const ran = new Map<string, string>();
  let version = '';

  const runOn = async (
    stage: string,
    st: Stage,
    nodes: string[],
    first: number,
    value: unknown,
    branch?: number,
  ) => {
    const svc = manifest.services[st.service]!;
    let failure: BrumeError | undefined;
    for (let k = 0; k < Math.min(nodes.length + 1, pipelineRunLimits.attempts); k++) {
      const live = nodes.filter((n) => !lost.has(n));
      const node =
        live.length > 0 ? live[(first + k) % live.length]! : nodes[first % nodes.length]!;
      const s0 = performance.now();
      try {
        const call = {
          stage,
          service: st.service,
          rpc: st.rpc ?? '',
          input: value,
          qos: stageQos,
          traceId: opts.traceId,
        };
        const a = await host.run(node, call);
        version ||= a.version ?? '';
        trace.push({
          service: st.service,
          rpc: a.rpc,
          kind: svc.kind,
          ms: performance.now() - s0,
          traceId: opts.traceId,
          stage,
          node: a.node,
          ...(branch !== undefined && { branch }),
        });
        return { value: a.value, node: a.node };
      } catch (e) {
        const err = e instanceof BrumeError ? e : fromWire(e);
        if (!placeAgain.has(err.code)) throw err;
        failure = err;
        lost.add(node);
        opts.log?.(
          `pipeline ${name}: stage ${stage}${branch === undefined ? '' : `[${branch}]`} lost ${node.slice(0, 8)} (${err.message}); again elsewhere`,
        );
      }
    }
    throw failure!;
  };

  const values = new Map<string, Promise<unknown>>();
  const runStage = async (stage: string): Promise<unknown> => {
    const st = p.stages[stage]!;
    const froms = await Promise.all(st.from.map((f) => (f === INPUT ? input : values.get(f)!)));
    const value =
      st.from.length === 1
        ? froms[0]
        : Object.fromEntries(st.from.map((f, i) => [f === INPUT ? 'input' : f, froms[i]]));
    const where = placement.stages[stage]!;
    // An NI stage runs next to its predecessor as it actually ran (a retry may have moved it),
    // when that node may run it.
    const pred = st.from.find((f) => f !== INPUT);
    const moved = pred === undefined ? undefined : ran.get(pred);
    const home =
      st.class === 'NI' && moved !== undefined && qos.privacy === undefined && mayRun(moved, stage)
        ? moved
        : where.node;
    const nodes = [home, ...where.spread.filter((n) => n !== home)];
    // The stage's own wall time, from when its inputs are there (all its branches together).
    const timed = <T>(run: Promise<T>) =>
      st.deadlineMs === undefined ? run : deadline(run, st.deadlineMs, stage);
    if (st.each === undefined) {
      const r = await timed(runOn(stage, st, nodes, 0, value));
      ran.set(stage, r.node);
      return r.value;
    }
    const list = listOf(value, st.each, stage);
    const rs = await timed(Promise.all(list.map((el, i) => runOn(stage, st, nodes, i, el, i))));
    ran.set(stage, rs[0]?.node ?? home);
    return rs.map((r) => r.value);
  };
  // Every stage starts now and waits on its `from`; priority ordered the reservations.
  for (const s of order) {
    const run = runStage(s);
    values.set(s, run);
    run.catch(() => {}); // a failure is answered through the output's chain
  }
  let value = await Promise.race([values.get(p.output)!, firstFailure([...values.values()])]);
  const ms = performance.now() - t0;
  if (choice) opts.stats?.record(choice.level.value, ms);
  if (
    value !== null &&
    typeof value === 'object' &&
    !Array.isArray(value) &&
    !(value instanceof Uint8Array)
  ) {
    value = { ...value, ...(choice && { quality: choice.level.value }), ms };
  }
  return {
    value,
    ms,
    ...(choice && { quality: choice.level.value, qualityReason: choice.reason }),
    node: ran.get(p.output) ?? host.source,
    trace: trace.slice(0, pipelineRunLimits.trace),
    version: version || manifest.version,
    placement,
  };
}

/** A fan-out's list: field `each` of its one predecessor's value, bounded. */
function listOf(value: unknown, each: string, stage: string): unknown[] {
  const list =
    value !== null && typeof value === 'object' && !Array.isArray(value)
      ? (value as Record<string, unknown>)[each]
      : undefined;
  if (!Array.isArray(list)) {
    throw new InputError(
      `stage "${stage}" fans out over "${each}": its input must be a map whose "${each}" is a list`,
    );
  }
  if (list.length > pipelineRunLimits.branches) {
    throw new InputError(
      `stage "${stage}": at most ${pipelineRunLimits.branches} elements in "${each}" (got ${list.length})`,
    );
  }
  return list;
}

/** Rejects with the first of `ps` to fail; never resolves otherwise. */
function firstFailure(ps: Promise<unknown>[]): Promise<never> {
  return new Promise((_, reject) => {
    for (const p of ps) p.catch(reject);
  });
}

function deadline<T>(p: Promise<T>, ms: number, stage: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new TimeoutError(`stage "${stage}" ran past its deadline of ${ms} ms`)),
      ms,
    );
  });
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}
