/**
 * What a job is (PROTOCOL.md §6.2): the record the relay keeps and writes, the body `POST
 * /api/jobs` takes (checked by schema, so a refusal names the field), the view `GET
 * /api/jobs/:id` answers, and the one rule for changing a job's state: queued → running →
 * succeeded | failed | cancelled (running → queued again when its node is lost), nothing after a
 * terminal state, so a job succeeds at most once and its result never changes.
 * @example const body = parseBody(submitBody, req.body); moveTo(job, 'running', { node });
 */
import { z } from 'zod';
import { ConflictError, type WireError } from '../../core/errors';
import { isTerminal, type JobState, type JobView, jobStates } from '../../core/jobs-client';
import { SHA256_HEX } from '../../core/names';
import { name, qosSchema, rpcName } from '../../core/protocol/fields';
import type { Qos } from '../../core/scheduler';

export { isTerminal, type JobState, type JobView, jobStates };

/** Reasons kept per job at most (each run that failed or was lost adds one). */
export const MAX_REASONS = 16;
const DAY_MS = 86_400_000;

export interface Job {
  id: string;
  app: string;
  service: string;
  /** A Logic's rpc ('' : its first). */
  rpc: string;
  /** The input, when it came inline (dropped once the job is over). */
  input?: unknown;
  /** The sha256 of a blob whose bytes are the MessagePack-encoded input. */
  inputBlob?: string;
  qos: Qos;
  /** Higher runs first. */
  priority: number;
  /** When it fails with E_TIMEOUT if not succeeded (ms since the epoch). */
  deadline?: number;
  /** Who submitted it: 'admin', 'key:<id>', or 'anon:<address>'. */
  owner: string;
  idempotencyKey?: string;
  state: JobState;
  /** Runs started (a node lost mid-run, or a run that failed on the node's side, counts one). */
  attempts: number;
  /** Why earlier runs did not succeed, oldest first (at most MAX_REASONS). */
  reasons: string[];
  created: number;
  started?: number;
  finished?: number;
  /** The node of the last run. */
  node?: string;
  result?: unknown;
  /** The sha256 of a blob holding the MessagePack-encoded result (a result over the threshold). */
  resultBlob?: string;
  error?: WireError;
}

export interface JobLimits {
  /** Jobs queued or running at once. */
  maxActive: number;
  /** Bytes of one job's input, MessagePack-encoded (larger: send it as a blob). */
  maxInputBytes: number;
  /** Bytes of the inline inputs of every job queued or running, encoded, together. */
  maxActiveInputBytes: number;
  /** Jobs queued or running at once from one anonymous address. */
  maxActivePerAddress: number;
  /** Runs of one job at most before it fails with its reasons. */
  maxAttempts: number;
  /** A result over this many bytes, encoded, is stored as a blob (`resultBlob`). */
  resultBlobBytes: number;
  /** Finished jobs kept (readable) at most; the oldest finished is forgotten first. */
  maxKept: number;
  /** Watchers (SSE streams) open at once. */
  maxWatchers: number;
  /** The longest one run may take on a node (a deadline shortens it). */
  runTimeoutMs: number;
}

export const defaultJobLimits: JobLimits = {
  maxActive: 10_000,
  maxInputBytes: 1024 * 1024,
  maxActiveInputBytes: 256 * 1024 * 1024,
  maxActivePerAddress: 100,
  maxAttempts: 3,
  resultBlobBytes: 256 * 1024,
  maxKept: 10_000,
  maxWatchers: 1000,
  runTimeoutMs: 600_000,
};

/** POST /api/jobs */
export const submitBody = z
  .strictObject({
    app: name,
    service: name,
    rpc: rpcName.optional(),
    input: z.unknown().optional(),
    inputBlob: z.string().regex(SHA256_HEX, 'must be a sha256: 64 lowercase hex digits').optional(),
    qos: qosSchema.optional(),
    priority: z.number().int().min(-100).max(100).optional(),
    deadlineMs: z
      .number()
      .int()
      .positive()
      .max(30 * DAY_MS)
      .optional(),
    idempotencyKey: z
      .string()
      .min(1)
      .max(128)
      .regex(/^[\x21-\x7e]+$/, 'must be printable ASCII without spaces')
      .optional(),
  })
  .refine((b) => (b.input !== undefined) !== (b.inputBlob !== undefined), {
    message: 'send exactly one of input and inputBlob',
    path: ['input'],
  });
export type SubmitBody = z.infer<typeof submitBody>;

/** GET /api/jobs query. */
export const listQuery = z.strictObject({
  state: z.enum(jobStates).optional(),
  app: name.optional(),
  limit: z.coerce.number().int().min(1).max(1000).optional(),
  after: z
    .string()
    .regex(/^[0-9a-z]{24}$/, 'must be a job id')
    .optional(),
});

export function viewOf(job: Job, waiting?: string, withResult = true): JobView {
  return {
    id: job.id,
    app: job.app,
    service: job.service,
    state: job.state,
    priority: job.priority,
    attempts: job.attempts,
    created: job.created,
    ...(job.started !== undefined && { started: job.started }),
    ...(job.finished !== undefined && { finished: job.finished }),
    ...(job.deadline !== undefined && { deadline: job.deadline }),
    ...(job.node !== undefined && { node: job.node }),
    ...(withResult && job.result !== undefined && { result: job.result }),
    ...(job.resultBlob !== undefined && { resultBlob: job.resultBlob }),
    ...(job.error && { error: job.error }),
    ...(job.reasons.length > 0 && { reasons: job.reasons }),
    ...(job.state === 'queued' && waiting && { waiting }),
  };
}

/** The moves a job may make: the only place its state changes. */
const moves: Record<JobState, readonly JobState[]> = {
  queued: ['running', 'failed', 'cancelled'],
  running: ['queued', 'succeeded', 'failed', 'cancelled'],
  succeeded: [],
  failed: [],
  cancelled: [],
};

/** Moves `job` to `to` with `fields`; a ConflictError when that move is not allowed. */
export function moveTo(job: Job, to: JobState, fields: Partial<Job> = {}, now = Date.now()): Job {
  if (!moves[job.state].includes(to)) {
    throw new ConflictError(`job ${job.id} is ${job.state}: it cannot become ${to}`);
  }
  const next: Job = { ...job, ...fields, state: to };
  if (to === 'running') next.started = now;
  if (isTerminal(to)) {
    next.finished = now;
    // The input is not needed any more: the record stays small for the jobs kept after.
    delete next.input;
  }
  return next;
}

/** Adds a reason, keeping the newest MAX_REASONS. */
export function withReason(job: Job, reason: string): string[] {
  return [...job.reasons, reason.slice(0, 512)].slice(-MAX_REASONS);
}

/** Queue order: priority (higher first), then deadline (sooner first, none last), then id. */
export function before(a: Job, b: Job): number {
  if (a.priority !== b.priority) return b.priority - a.priority;
  const da = a.deadline ?? Number.POSITIVE_INFINITY;
  const db = b.deadline ?? Number.POSITIVE_INFINITY;
  if (da !== db) return da < db ? -1 : 1;
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}
