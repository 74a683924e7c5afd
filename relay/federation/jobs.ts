/**
 * Jobs held at another site (issue 17, seed 003: "blobs and jobs are fetched from another site
 * only when needed"). A job runs where it was submitted (nodes never move); a site that does not
 * hold job `id` asks its peers for it when someone reads it there (PROTOCOL.md §6.3):
 * - `GET /api/federation/jobs/:id`, behind the key shared with the peers: the job as this site
 *   holds it, `{ view, anonymous, site }` in MessagePack. Only this site's own jobs: never asked
 *   on (full mesh, one hop).
 * - `findJob`: asks the peers, nearest first, at most MAX_JOB_PEERS at once and JOB_READ_TIMEOUT_MS
 *   in all; the first that holds it wins and the requests still out are cut short.
 * Who may read it is decided at the asking site (relay/http/jobs.ts), by the rules of a local read
 * against the app's project as federated there. That is the safe side: the caller's credential
 * never leaves its site (an admin token is one site's alone), and a peer answers only a site that
 * holds the shared key, which could read any job through this route anyway.
 * @example mountFederatedJobs(app, { peers, jobs });
 *          const { view, site } = await findJob(peers, id, log);
 */
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { decode } from '../../core/codec';
import { InputError, NotFoundError } from '../../core/errors';
import { SHA256_HEX } from '../../core/names';
import { frameLimits } from '../../core/protocol';
import { name } from '../../core/protocol/fields';
import { isJobId, JOB_ID } from '../jobs/ids';
import { type Job, type JobView, jobStates, MAX_REASONS } from '../jobs/job';
import { encodeAnswer } from '../outgoing';
import { type Peer, type Peers, SITE } from './peers';

/** A job read at the site that holds it. */
export interface SiteJob {
  /** Its view as that site answers `GET /api/jobs/:id`. */
  view: JobView;
  /** The site that holds (and runs) it. */
  site: string;
  /** Submitted without a credential: its id alone reads it (relay/http/jobs.ts). */
  anonymous: boolean;
}

/** Jobs held at other sites (GET /api/jobs/:id, relay/http/jobs.ts), read when this relay holds none. */
export interface JobsElsewhere {
  /** Job `id` as the site holding it answers; NotFoundError when no site does. */
  find(id: string): Promise<SiteJob>;
  /** Makes result blob `hash` readable at this site (fetched from a peer); never throws. */
  fetchResult(hash: string): Promise<void>;
}

/** What the route reads: this relay's own jobs (relay/jobs). */
export interface LocalJobs {
  get(id: string): Job | undefined;
  view(id: string): JobView | undefined;
}

/** Peers asked at once at most for one job (more are asked only once these answered). */
export const MAX_JOB_PEERS = 4;
/** How long reading a job at the peers may take in all: a peer down costs no more than this. */
export const JOB_READ_TIMEOUT_MS = 5_000;
/** Largest answer taken: a view whose inline result is at most one frame to a node. */
const MAX_JOB_ANSWER_BYTES = frameLimits.maxBytes + 64 * 1024;
/** Bytes of text fields a peer's view may carry (a reason, an error message, `waiting`). */
const MAX_TEXT = 4096;

const time = z.number().int().nonnegative();
/** A peer's answer, checked as any input is (unknown fields dropped: a newer peer may add some). */
const siteJobSchema = z.object({
  view: z.object({
    id: z.string().regex(JOB_ID),
    app: name,
    service: name,
    state: z.enum(jobStates),
    priority: z.number().int(),
    attempts: z.number().int().nonnegative(),
    created: time,
    started: time.optional(),
    finished: time.optional(),
    deadline: time.optional(),
    node: z.string().max(64).optional(),
    result: z.unknown().optional(),
    resultBlob: z.string().regex(SHA256_HEX).optional(),
    error: z.object({ code: z.string().max(64), message: z.string().max(MAX_TEXT) }).optional(),
    reasons: z.array(z.string().max(MAX_TEXT)).max(MAX_REASONS).optional(),
    waiting: z.string().max(MAX_TEXT).optional(),
  }),
  site: z.string().regex(SITE),
  anonymous: z.boolean(),
});

/** Mounts `GET /api/federation/jobs/:id` over this relay's own jobs. */
export function mountFederatedJobs(
  app: FastifyInstance,
  o: { peers: Peers; jobs: LocalJobs },
): void {
  app.get<{ Params: { id: string } }>(
    '/api/federation/jobs/:id',
    { onRequest: async (req) => o.peers.authorize(req.headers.authorization) },
    async (req, reply) => {
      const { id } = req.params;
      if (!isJobId(id)) throw new InputError('id: a job id (24 lowercase letters or digits)');
      const job = o.jobs.get(id);
      const view = job && o.jobs.view(id);
      if (!job || !view) throw new NotFoundError(`no job ${id} at site ${o.peers.site}`);
      const answer: SiteJob = {
        view,
        site: o.peers.site,
        anonymous: job.owner.startsWith('anon:'),
      };
      const bytes = encodeAnswer(answer);
      return reply
        .type('application/msgpack')
        .send(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
    },
  );
}

/**
 * Job `id` as the first peer holding it answers; NotFoundError when none does (naming the peers
 * that could not say within the bound), or when `id` is no job id (no peer is asked).
 */
export async function findJob(
  peers: Peers,
  id: string,
  log: { warn(m: string): void },
): Promise<SiteJob> {
  if (!isJobId(id)) throw new NotFoundError(`no job ${id.slice(0, 32)} at this site`);
  // Nearest first, then those whose ping has not answered (they may answer this).
  const order = [...peers.nearest(), ...peers.list().filter((p) => !p.up)];
  const deadline = AbortSignal.timeout(JOB_READ_TIMEOUT_MS);
  const silent: string[] = [];
  for (let i = 0; i < order.length; i += MAX_JOB_PEERS) {
    const batch = order.slice(i, i + MAX_JOB_PEERS);
    if (deadline.aborted) {
      silent.push(...batch.map((p) => p.name));
      continue;
    }
    const cut = new AbortController();
    const signal = AbortSignal.any([deadline, cut.signal]);
    const found = await firstFound(
      batch.map((peer) =>
        ask(peers, peer, id, signal).catch((e: unknown) => {
          if (!cut.signal.aborted) {
            silent.push(peer.name);
            log.warn(`federation: job ${id} at ${peer.name}: ${(e as Error).message}`);
          }
          return undefined;
        }),
      ),
    );
    cut.abort();
    if (found) return found;
  }
  const also = silent.length > 0 ? ` (not answered in time: ${silent.join(', ')})` : '';
  throw new NotFoundError(`no job ${id} at this site or its peers${also}`);
}

/** Job `id` at `peer`: its answer, undefined when it holds none, thrown when it cannot say. */
async function ask(
  peers: Peers,
  peer: Peer,
  id: string,
  signal: AbortSignal,
): Promise<SiteJob | undefined> {
  const res = await peers.request(
    peer,
    `/api/federation/jobs/${id}`,
    { headers: { accept: 'application/msgpack' }, signal },
    JOB_READ_TIMEOUT_MS,
  );
  if (res.status === 404) {
    await res.body?.cancel();
    return undefined;
  }
  const bytes = await readBounded(res, MAX_JOB_ANSWER_BYTES);
  if (!res.ok) throw new Error(`HTTP ${res.status}`);
  const parsed = siteJobSchema.safeParse(decode(bytes, frameLimits));
  if (!parsed.success || parsed.data.view.id !== id || parsed.data.site === peers.site)
    throw new Error('answered in an unknown shape');
  return parsed.data as SiteJob;
}

/** The first value that is not undefined; undefined once every promise gave none (none rejects). */
function firstFound<T>(tasks: Promise<T | undefined>[]): Promise<T | undefined> {
  return new Promise((resolve) => {
    let left = tasks.length;
    if (left === 0) resolve(undefined);
    for (const t of tasks)
      void t.then((v) => {
        if (v !== undefined) resolve(v);
        else if (--left === 0) resolve(undefined);
      });
  });
}

/** The body's bytes, refused past `max` without reading the rest. */
async function readBounded(res: Response, max: number): Promise<Uint8Array> {
  if (Number(res.headers.get('content-length') ?? 0) > max) {
    await res.body?.cancel();
    throw new Error(`the answer is over ${max} bytes`);
  }
  if (!res.body) return new Uint8Array(0);
  const chunks: Uint8Array[] = [];
  let size = 0;
  const reader = res.body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return Buffer.concat(chunks);
    size += value.byteLength;
    if (size > max) {
      await reader.cancel();
      throw new Error(`the answer is over ${max} bytes`);
    }
    chunks.push(value);
  }
}
