/**
 * The manifest's shape (PROTOCOL.md §2.1): the hand-written types and the zod schema that checks
 * them, field by field and across fields (a listed file, a declared model that is a model service).
 * core/manifest.ts parses with it and re-exports the types; import from there.
 */
import validRange from 'semver/ranges/valid.js';
import { z } from 'zod';
import { APP_NAME, APP_NAME_RULE } from './names';
import { checkPipelines, type Pipeline, pipelinesSchema } from './pipeline/schema';

export type {
  Pipeline,
  PipelineQuality,
  QualityLevel,
  Stage,
  TaskClass,
} from './pipeline/schema';

// ---- Types ----------------------------------------------------------------------------------

export type TensorType = 'float32' | 'int32' | 'int64' | 'uint8' | 'bool';

/** A named tensor a Model takes or gives; `-1` in `dims` is a free dimension (e.g. batch). */
export interface TensorSpec {
  name: string;
  type: TensorType;
  dims: number[];
}

/** The roles of node a call may be placed on (PROTOCOL.md §2.1 `tiers`). */
export type Tier = 'dew' | 'fog' | 'cloud';

/** How a model's exit head decides (PROTOCOL.md §2.1 `exit`, core/early-exit.ts). */
export type ExitRule = 'entropy' | 'top';

/**
 * An exit head on a model service: after a run, the host judges the first row of `output` (a
 * probability vector) and tells the caller whether to stop there.
 */
export interface ExitHead {
  output: string;
  /** `entropy`: taken when the normalised entropy ≤ threshold; `top`: when the top probability ≥ it. */
  rule: ExitRule;
  /** In [0, 1]. */
  threshold: number;
  /** Never taken (the exit is turned off). */
  off?: boolean;
}

export interface LogicLimits {
  /** Wall-clock budget per invocation step; default 5000. */
  timeoutMs?: number;
  /** Guest memory maximum; default 64. */
  memoryMiB?: number;
}

/**
 * Workers per node for one service (PROTOCOL.md §2.1 `scale`): pools start with none, grow with
 * queued work up to `max` (capped by the node), shrink one at a time after `idleMs` idle.
 */
export interface ServiceScale {
  max?: number;
  idleMs?: number;
}

/** One wasm module; its `rpcs` are exports, the first is the default. */
export interface LogicService {
  kind: 'logic';
  file: string;
  rpcs: string[];
  limits?: LogicLimits;
  scale?: ServiceScale;
  /**
   * The model services its rpcs call; the first decides a call's accuracy when placing it.
   * Absent: the app's only model service, if it has exactly one (none otherwise); `[]`: none.
   */
  models?: string[];
  /** Only nodes of these roles run it (privacy "device" keeps it on the caller whatever they are). */
  tiers?: Tier[];
}

/** One model file of a Model service, with figures as measured (see `measured`). */
export interface Variant {
  file: string;
  accuracy: number;
  latencyMs: number;
  params: number;
  /** `random`: an architecture with random weights, whose accuracy means nothing. */
  weights: 'trained' | 'random';
  measured: string;
}

/** One task; every variant shares `inputs`/`outputs`, and each variant is an RPC. */
export interface ModelService {
  kind: 'model';
  task: string;
  inputs: TensorSpec[];
  outputs: TensorSpec[];
  variants: Record<string, Variant>;
  scale?: ServiceScale;
  /** Only nodes of these roles run it (privacy "device" keeps it on the caller whatever they are). */
  tiers?: Tier[];
  /** An exit head judged after each run (its result gains `exit`). */
  exit?: ExitHead;
}

export type Service = LogicService | ModelService;

export interface FileEntry {
  /** Lowercase hex sha256 of the file's bytes. */
  sha256: string;
  size: number;
}

export interface Manifest {
  brume: 1;
  name: string;
  version: string;
  description?: string;
  files: Record<string, FileEntry>;
  services: Record<string, Service>;
  /** Services chained into a graph, each called like a service (core/pipeline/schema.ts). */
  pipelines?: Record<string, Pipeline>;
  /** Inputs a person can try from the join page. */
  demos?: Demo[];
  /**
   * Other apps whose services this app's Logics call (`call("digits/model", ...)`), each with the
   * semver range of versions it works with: `{ "digits": "^1.0.0" }`.
   */
  uses?: Record<string, string>;
}

export interface Demo {
  title: string;
  service: string;
  rpc?: string;
  /** JSON: the join page sends it as it is. */
  input: unknown;
}

/** A manifest whose `files` are still to be computed from the bytes (see `buildManifest`). */
export type ManifestDraft = Omit<Manifest, 'files'> & { files?: Record<string, FileEntry> };

export const DEFAULT_LOGIC_LIMITS: Readonly<Required<LogicLimits>> = {
  timeoutMs: 5000,
  memoryMiB: 64,
};

/** Decode bounds for a whole bundle: one message, but far larger than a network message. */

export function logicLimits(service: LogicService): Required<LogicLimits> {
  return { ...DEFAULT_LOGIC_LIMITS, ...service.limits };
}

// ---- Schema (PROTOCOL.md §2.1) --------------------------------------------------------------

const SEMVER = /^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$/;
const SHA256 = /^[0-9a-f]{64}$/;
const PATH_CHARS = /^[A-Za-z0-9._/-]{1,255}$/;
const EXPORT_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,63}$/;
const ABI_EXPORTS = new Set(['brume_alloc', 'brume_free']);

const name = z.string().regex(APP_NAME, { error: `must match ${APP_NAME_RULE}` });

/** Bundle-relative file paths; `.`/`..`/empty segments are refused so one file has one path. */
export function isBundlePath(path: string): boolean {
  if (!PATH_CHARS.test(path)) return false;
  return path.split('/').every((s) => s !== '' && s !== '.' && s !== '..');
}

const filePath = z.string().refine(isBundlePath, {
  error: 'must be a relative path of [A-Za-z0-9._/-] (at most 255), without "." or ".." segments',
});

const fileEntry = z.strictObject({
  sha256: z.string().regex(SHA256, { error: 'must be 64 lowercase hex digits' }),
  size: z.int().min(0),
});

const tensorSpec = z.strictObject({
  name: z.string().min(1).max(256),
  type: z.enum(['float32', 'int32', 'int64', 'uint8', 'bool']),
  dims: z.array(z.int().min(-1)).max(16),
});

const scale = z
  .strictObject({
    max: z.int().min(1).max(64).optional(),
    idleMs: z.int().min(100).max(3_600_000).optional(),
  })
  .optional();
const tiers = z
  .array(z.enum(['dew', 'fog', 'cloud']))
  .min(1, { error: 'must name at least one role (dew, fog, cloud)' })
  .max(3);

/** An exit head's rule and threshold: the manifest's, and a call's override (core/early-exit.ts). */
export const exitRule = z.enum(['entropy', 'top']);
export const exitThreshold = z.number().min(0).max(1);

const exitHead = z.strictObject({
  output: z.string().min(1).max(256),
  rule: exitRule,
  threshold: exitThreshold,
  off: z.boolean().optional(),
});

const logicService = z.strictObject({
  kind: z.literal('logic'),
  file: filePath,
  rpcs: z
    .array(
      z
        .string()
        .regex(EXPORT_NAME, { error: 'must be a wasm export name [A-Za-z_][A-Za-z0-9_]{0,63}' })
        .refine((s) => !ABI_EXPORTS.has(s), { error: 'is an ABI export, not an RPC' }),
    )
    .min(1, { error: 'must list at least one exported function (the first is the default)' })
    .max(256),
  limits: z
    .strictObject({
      timeoutMs: z.int().min(1).max(600_000).optional(),
      memoryMiB: z.int().min(1).max(4096).optional(),
    })
    .optional(),
  models: z.array(name).max(64).optional(),
  scale,
  tiers: tiers.optional(),
});

const variant = z.strictObject({
  file: filePath,
  accuracy: z.number().min(0).max(1),
  latencyMs: z.number().min(0),
  params: z.int().min(0),
  weights: z.enum(['trained', 'random']),
  measured: z.string().min(1, { error: 'must say how the figures were measured' }).max(1024),
});

const modelService = z.strictObject({
  kind: z.literal('model'),
  task: z.string().min(1).max(128),
  inputs: z.array(tensorSpec).min(1).max(64),
  outputs: z.array(tensorSpec).min(1).max(64),
  variants: z
    .record(name, variant)
    .refine((v) => Object.keys(v).length > 0, { error: 'must hold at least one variant' }),
  scale,
  tiers: tiers.optional(),
  exit: exitHead.optional(),
});

const service = z.discriminatedUnion('kind', [logicService, modelService]);

export const manifestSchema = z
  .strictObject({
    brume: z.literal(1),
    name,
    version: z.string().regex(SEMVER, { error: 'must be semver MAJOR.MINOR.PATCH, e.g. 1.0.0' }),
    description: z.string().max(4096).optional(),
    files: z.record(filePath, fileEntry),
    services: z
      .record(name, service)
      .refine((s) => Object.keys(s).length > 0, { error: 'must hold at least one service' }),
    pipelines: pipelinesSchema.optional(),
    demos: z
      .array(
        z.strictObject({
          title: z.string().min(1).max(128),
          service: name,
          rpc: z.string().max(64).optional(),
          input: z.unknown().refine((v) => JSON.stringify(v ?? null).length <= 64 * 1024, {
            error: 'a demo input is at most 64 KiB of JSON',
          }),
        }),
      )
      .max(16)
      .optional(),
    uses: z
      .record(
        name,
        z
          .string()
          .max(256)
          .refine((r) => validRange(r) !== null, {
            error: 'must be a semver range, e.g. "^1.0.0" or "1.2.x"',
          }),
      )
      .refine((u) => Object.keys(u).length <= 32, { error: 'may name at most 32 apps' })
      .optional(),
  })
  .superRefine((m, ctx) => {
    if (m.uses && Object.hasOwn(m.uses, m.name)) {
      ctx.addIssue({
        code: 'custom',
        path: ['uses', m.name],
        message: 'an app does not use itself: call its services by their own names',
      });
    }
    const listed = (file: string, path: PropertyKey[]) => {
      if (!Object.hasOwn(m.files, file)) {
        ctx.addIssue({ code: 'custom', path, message: `"${file}" is not listed in files` });
      }
    };
    if (m.pipelines) checkPipelines(m.pipelines, m.services, ctx);
    (m.demos ?? []).forEach((d, i) => {
      const s = Object.hasOwn(m.services, d.service) ? m.services[d.service] : undefined;
      if (!s && m.pipelines && Object.hasOwn(m.pipelines, d.service)) {
        if (d.rpc !== undefined && d.rpc !== '') {
          ctx.addIssue({
            code: 'custom',
            path: ['demos', i, 'rpc'],
            message: `"${d.service}" is a pipeline: it has no rpcs`,
          });
        }
        return;
      }
      if (!s) {
        ctx.addIssue({
          code: 'custom',
          path: ['demos', i, 'service'],
          message: `no service "${d.service}"`,
        });
        return;
      }
      // A demo's rpc is one of its Logic's rpcs, or one of its Model's variants.
      const rpcs = s.kind === 'logic' ? s.rpcs : Object.keys(s.variants);
      if (d.rpc !== undefined && d.rpc !== '' && !rpcs.includes(d.rpc)) {
        ctx.addIssue({
          code: 'custom',
          path: ['demos', i, 'rpc'],
          message: `"${d.rpc}" is not an rpc of service "${d.service}" (it has: ${rpcs.join(', ')})`,
        });
      }
    });
    for (const [sname, s] of Object.entries(m.services)) {
      if (s.tiers) unique(s.tiers, ['services', sname, 'tiers'], ctx);
      if (s.kind === 'logic') {
        listed(s.file, ['services', sname, 'file']);
        unique(s.rpcs, ['services', sname, 'rpcs'], ctx);
        if (s.models) models(m.services, s.models, ['services', sname, 'models'], ctx);
      } else {
        unique(
          s.inputs.map((t) => t.name),
          ['services', sname, 'inputs'],
          ctx,
        );
        unique(
          s.outputs.map((t) => t.name),
          ['services', sname, 'outputs'],
          ctx,
        );
        for (const [vname, v] of Object.entries(s.variants)) {
          listed(v.file, ['services', sname, 'variants', vname, 'file']);
        }
        if (s.exit) exitOutput(s.exit, s.outputs, ['services', sname, 'exit', 'output'], ctx);
      }
    }
  });

/** A Logic's `models` each name a model service of the same manifest, once. */
function models(
  services: Record<string, { kind: string }>,
  names: string[],
  path: PropertyKey[],
  ctx: z.RefinementCtx,
): void {
  unique(names, path, ctx);
  names.forEach((n, i) => {
    const s = Object.hasOwn(services, n) ? services[n] : undefined;
    if (s?.kind === 'model') return;
    const message = s ? `"${n}" is a ${s.kind} service, not a model service` : `no service "${n}"`;
    ctx.addIssue({ code: 'custom', path: [...path, i], message });
  });
}

/** An exit head judges one of the model's float32 outputs. */
function exitOutput(
  exit: ExitHead,
  outputs: TensorSpec[],
  path: PropertyKey[],
  ctx: z.RefinementCtx,
): void {
  const out = outputs.find((o) => o.name === exit.output);
  const message = !out
    ? `"${exit.output}" is not an output of this model (it has: ${outputs.map((o) => o.name).join(', ')})`
    : out.type !== 'float32'
      ? `"${exit.output}" is ${out.type}; an exit head reads float32 probabilities`
      : undefined;
  if (message) ctx.addIssue({ code: 'custom', path, message });
}

function unique(names: string[], path: PropertyKey[], ctx: z.RefinementCtx): void {
  const seen = new Set<string>();
  names.forEach((n, i) => {
    if (seen.has(n)) ctx.addIssue({ code: 'custom', path: [...path, i], message: `"${n}" twice` });
    seen.add(n);
  });
}

// The schema's output must be exactly the hand-written types (which read better in editors).
const _typeCheck: z.ZodType<Manifest> = manifestSchema;
