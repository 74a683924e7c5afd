/**
 * A manifest's `pipelines` (PROTOCOL.md §2.1): the types, the zod schema of one pipeline, and the
 * checks across fields that need the whole manifest (a stage's service and rpc exist, `from` names
 * stages, no cycle, `each` only on a one-`from` stage, `output` is a stage). core/manifest-schema.ts
 * plugs both into the manifest's schema; every refusal names its field, e.g.
 * `pipelines.read.stages.detect.from[0]: unknown stage "detct"`.
 */
import { z } from 'zod';
import { APP_NAME, APP_NAME_RULE } from '../names';

// ---- Types ----------------------------------------------------------------------------------

/** Seed 001 §VI-A: NI pre/post-processing, LI light model (prefers fog), HI heavy (prefers cloud). */
export type TaskClass = 'NI' | 'LI' | 'HI';

/** The request's own input, as a `from` entry (and as key `input` of a several-`from` map). */
export const INPUT = '$input';

export interface Stage {
  /** A service of the same app: a Logic (then `rpc` is one of its rpcs) or a Model. */
  service: string;
  /** A Logic's rpc (absent: its first); a Model's variant (absent: the scheduler's choice). */
  rpc?: string;
  /** Stage names or `$input`; one: that value is the input; several: a map keyed by stage name. */
  from: string[];
  /** Fan-out: the one predecessor's value is a map whose field `each` is a list; one run each. */
  each?: string;
  class: TaskClass;
  /** Among stages of one class, the higher reserves capacity first (place.ts); default 0. */
  priority?: number;
  /** Wall time allowed for the stage (all its branches); absent: the services' own limits. */
  deadlineMs?: number;
}

export interface QualityLevel {
  value: number;
  /** End-to-end accuracy of the pipeline at this level, in [0, 1]. */
  accuracy: number;
  /** End-to-end latency on one node. */
  latencyMs: number;
  measured: string;
}

export interface PipelineQuality {
  /** The field of the request input the chosen level's value is written to. */
  field: string;
  levels: QualityLevel[];
}

export interface Pipeline {
  description?: string;
  stages: Record<string, Stage>;
  /** The stage whose value is the answer. */
  output: string;
  quality?: PipelineQuality;
}

// ---- Schema ---------------------------------------------------------------------------------

/** Bounds: a pipeline is a small graph, its branches a bounded list. */
export const pipelineLimits = { stages: 32, from: 8, levels: 16, pipelines: 32 } as const;

const FIELD = /^[A-Za-z_][A-Za-z0-9_]{0,63}$/;
const field = z
  .string()
  .regex(FIELD, { error: 'must be a field name [A-Za-z_][A-Za-z0-9_]{0,63}' });
const name = z.string().regex(APP_NAME, { error: `must match ${APP_NAME_RULE}` });

const stage = z.strictObject({
  service: name,
  rpc: z.string().min(1).max(64).optional(),
  from: z
    .array(z.string().max(64))
    .min(1, { error: 'must name at least one stage or "$input"' })
    .max(pipelineLimits.from),
  each: field.optional(),
  class: z.enum(['NI', 'LI', 'HI']),
  priority: z.int().min(-100).max(100).optional(),
  deadlineMs: z.int().min(1).max(600_000).optional(),
});

const level = z.strictObject({
  value: z.number().min(0).max(1e9),
  accuracy: z.number().min(0).max(1),
  latencyMs: z.number().min(0).max(600_000),
  measured: z.string().min(1, { error: 'must say how the figures were measured' }).max(1024),
});

export const pipelineSchema = z.strictObject({
  description: z.string().max(4096).optional(),
  stages: z
    .record(
      name.refine((s) => s !== 'input', { error: '"input" is the request input\'s key' }),
      stage,
    )
    .refine((s) => Object.keys(s).length > 0, { error: 'must hold at least one stage' })
    .refine((s) => Object.keys(s).length <= pipelineLimits.stages, {
      error: `must hold at most ${pipelineLimits.stages} stages`,
    }),
  output: z.string().max(64),
  quality: z
    .strictObject({
      field,
      levels: z
        .array(level)
        .min(1, { error: 'must hold at least one level' })
        .max(pipelineLimits.levels),
    })
    .optional(),
});

export const pipelinesSchema = z
  .record(name, pipelineSchema)
  .refine((p) => Object.keys(p).length <= pipelineLimits.pipelines, {
    error: `must hold at most ${pipelineLimits.pipelines} pipelines`,
  });

// ---- Checks across fields -------------------------------------------------------------------

type ServiceShape = { kind: 'logic'; rpcs: string[] } | { kind: 'model'; variants: object };

/** Adds an issue for each broken cross-field rule of `pipelines` against the app's `services`. */
export function checkPipelines(
  pipelines: Record<string, Pipeline>,
  services: Record<string, ServiceShape>,
  ctx: z.RefinementCtx,
): void {
  for (const [pname, p] of Object.entries(pipelines)) {
    const at = (...rest: PropertyKey[]) => ['pipelines', pname, ...rest];
    const issue = (path: PropertyKey[], message: string) =>
      ctx.addIssue({ code: 'custom', path, message });
    if (Object.hasOwn(services, pname)) {
      issue(at(), `"${pname}" is a service's name: a pipeline is called like one`);
    }
    const has = (s: string) => Object.hasOwn(p.stages, s);
    for (const [sname, s] of Object.entries(p.stages)) {
      const svc = Object.hasOwn(services, s.service) ? services[s.service] : undefined;
      if (!svc) issue(at('stages', sname, 'service'), `no service "${s.service}"`);
      else if (s.rpc !== undefined) {
        const rpcs = svc.kind === 'logic' ? svc.rpcs : Object.keys(svc.variants);
        if (!rpcs.includes(s.rpc)) {
          issue(
            at('stages', sname, 'rpc'),
            `"${s.rpc}" is not an rpc of service "${s.service}" (it has: ${rpcs.join(', ')})`,
          );
        }
      }
      const seen = new Set<string>();
      s.from.forEach((f, i) => {
        if (seen.has(f)) issue(at('stages', sname, 'from', i), `"${f}" twice`);
        seen.add(f);
        if (f === sname) issue(at('stages', sname, 'from', i), 'a stage cannot take its own value');
        else if (f !== INPUT && !has(f))
          issue(at('stages', sname, 'from', i), `unknown stage "${f}"`);
      });
      if (s.each !== undefined && s.from.length !== 1) {
        issue(at('stages', sname, 'each'), 'fans out over one predecessor: "from" must name one');
      }
    }
    if (!has(p.output)) issue(at('output'), `unknown stage "${p.output}"`);
    if (!Object.values(p.stages).some((s) => s.from.includes(INPUT))) {
      issue(at('stages'), 'no stage takes "$input": the request would go nowhere');
    }
    const cycle = findCycle(p.stages);
    if (cycle) {
      issue(at('stages', cycle[0]!, 'from'), `a cycle: ${[...cycle, cycle[0]].join(' → ')}`);
    } else if (has(p.output)) {
      const used = new Set([p.output, ...Object.values(p.stages).flatMap((s) => s.from)]);
      for (const sname of Object.keys(p.stages)) {
        if (!used.has(sname))
          issue(at('stages', sname), 'its value goes nowhere (not the output, in no "from")');
      }
    }
    if (p.quality) {
      const values = new Set<number>();
      p.quality.levels.forEach((l, i) => {
        if (values.has(l.value)) issue(at('quality', 'levels', i, 'value'), `${l.value} twice`);
        values.add(l.value);
      });
    }
  }
}

/** A cycle among `from` edges (stage names in order), or undefined when there is none. */
export function findCycle(stages: Record<string, Pick<Stage, 'from'>>): string[] | undefined {
  const state = new Map<string, 'open' | 'done'>();
  const trail: string[] = [];
  const visit = (s: string): string[] | undefined => {
    if (state.get(s) === 'done') return undefined;
    if (state.get(s) === 'open') return trail.slice(trail.indexOf(s));
    state.set(s, 'open');
    trail.push(s);
    for (const f of stages[s]?.from ?? []) {
      if (f === INPUT || !Object.hasOwn(stages, f)) continue;
      const c = visit(f);
      if (c) return c;
    }
    trail.pop();
    state.set(s, 'done');
    return undefined;
  };
  for (const s of Object.keys(stages)) {
    const c = visit(s);
    if (c) return c.reverse();
  }
  return undefined;
}

/**
 * The stages in an order where each comes after all of its `from` (ties keep manifest order).
 * For a validated pipeline (no cycle).
 */
export function stageOrder(stages: Record<string, Pick<Stage, 'from'>>): string[] {
  const out: string[] = [];
  const done = new Set<string>();
  const visit = (s: string) => {
    if (done.has(s)) return;
    done.add(s);
    for (const f of stages[s]?.from ?? []) if (f !== INPUT && Object.hasOwn(stages, f)) visit(f);
    out.push(s);
  };
  for (const s of Object.keys(stages)) visit(s);
  return out;
}
