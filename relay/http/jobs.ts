/**
 * The jobs API (PROTOCOL.md §6.2): submit (`POST /api/jobs`, 202 once the job is on disk), read
 * (`GET /api/jobs/:id`), cancel (`DELETE /api/jobs/:id`), list (`GET /api/jobs`) and watch
 * (`GET /api/jobs/:id/watch`, Server-Sent Events until the job is over). JSON or MessagePack in
 * and out, like /api/call. A credential needs the `jobs` scope (the admin token holds it) and,
 * per app, what `access` allows; without one, a relay that takes anonymous calls takes anonymous
 * jobs at the same per-address rate, and such a job is read or cancelled by its id alone (62
 * random bits: the id is the capability); listing needs `jobs`. A federated site reads a job it
 * does not hold at its peers (`elsewhere`, relay/federation/jobs.ts), checked here by the same
 * rules against the app's project as this site has it; the answer names the `site` holding it.
 * @example mountJobs(app, { jobs, auth, anonymous: true, rate, access: () => true, draining });
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import {
  AuthError,
  ForbiddenError,
  LimitError,
  NotFoundError,
  UnavailableError,
} from '../../core/errors';
import type { Auth, Principal } from '../auth';
import { parseBody } from '../bodies';
import { send } from '../fabric-http';
import type { JobsElsewhere } from '../federation/jobs';
import type { Jobs } from '../jobs';
import { isJobId } from '../jobs/ids';
import { isTerminal, type Job, type JobView, listQuery, submitBody } from '../jobs/job';

/** Who may do what with an app's jobs beyond the `jobs` scope (projects, relay/projects.ts). */
export type JobAccess = (p: Principal | undefined, app: string, what: 'read' | 'write') => boolean;

export interface JobRoutesOptions {
  jobs: Jobs;
  auth: Auth;
  /** Jobs without a credential (the relay takes anonymous calls), and their rate per address. */
  anonymous: boolean;
  rate: { max: number; windowMs: number };
  access: JobAccess;
  draining(): boolean;
  /** Federated: where a job this relay does not hold is read (GET only; it runs there). */
  elsewhere?: JobsElsewhere;
}

const DRAIN_RETRY_AFTER_S = 5;

export function mountJobs(app: FastifyInstance, o: JobRoutesOptions): void {
  const { jobs, auth } = o;
  const streams = new Set<FastifyReply['raw']>();
  app.addHook('preClose', (done) => {
    for (const s of streams) s.end();
    done();
  });

  /** The principal, checked for `jobs` (a credential) or allowed anonymously. */
  const caller = (req: FastifyRequest): Principal | undefined => {
    const p = auth.principal(req);
    if (p || !o.anonymous) return auth.require(req, 'jobs');
    return undefined;
  };
  const ownerOf = (p: Principal | undefined, req: FastifyRequest) =>
    !p ? `anon:${req.ip}` : p.kind === 'admin' ? 'admin' : `key:${p.key.id}`;
  /** Throws unless `p` may `what` a job of `app` (`anonymous`: submitted without a credential). */
  const check = (
    p: Principal | undefined,
    app: string,
    anonymous: boolean,
    what: 'read' | 'write',
  ) => {
    if (!p && !anonymous)
      throw new AuthError('this job was submitted with a credential: send one with the jobs scope');
    if (!o.access(p, app, what)) {
      if (!p) throw new AuthError(`jobs of app "${app}" need a credential with scope jobs`);
      throw new ForbiddenError(`this credential may not ${what} jobs of app "${app}"`);
    }
  };
  /** The job `id`, if this caller may `what` it. */
  const jobFor = (req: FastifyRequest<{ Params: { id: string } }>, what: 'read' | 'write'): Job => {
    const { id } = req.params;
    const p = caller(req);
    const job = isJobId(id) ? jobs.get(id) : undefined;
    if (!job) throw new NotFoundError(`no job ${id.slice(0, 32)} on this relay`);
    check(p, job.app, job.owner.startsWith('anon:'), what);
    return job;
  };

  // A body holds the input and a few small fields; JSON may spell the input twice as long.
  const bodyLimit = 2 * jobs.limits.maxInputBytes + 64 * 1024;
  app.post(
    '/api/jobs',
    {
      bodyLimit,
      onRequest: async (req, reply) => {
        // Refused before it is read, naming the setting (Fastify's own refusal would not).
        if (Number(req.headers['content-length'] ?? 0) > bodyLimit)
          throw new LimitError(
            `the body is ${req.headers['content-length']} bytes (limit ${bodyLimit}: twice --max-job-input-kib and 64 KiB): upload the input as a blob and send inputBlob`,
          );
        if (o.draining()) {
          reply.header('retry-after', String(DRAIN_RETRY_AFTER_S));
          throw new UnavailableError(
            'the relay is shutting down (draining): retry once it is back',
          );
        }
        caller(req);
      },
      config: {
        rateLimit: {
          max: o.rate.max,
          timeWindow: o.rate.windowMs,
          allowList: (req: FastifyRequest) => auth.principal(req) !== undefined,
        },
      },
    },
    async (req, reply) => {
      const p = caller(req);
      const body = parseBody(
        submitBody,
        req.body,
        '{ app, service, input | inputBlob, rpc?, qos?, priority?, deadlineMs?, idempotencyKey? }',
      );
      if (!o.access(p, body.app, 'write')) {
        if (!p) throw new AuthError(`jobs of app "${body.app}" need a credential with scope jobs`);
        throw new ForbiddenError(`this credential may not submit jobs of app "${body.app}"`);
      }
      if (!p && body.inputBlob !== undefined)
        throw new AuthError('inputBlob: an input from a blob needs a credential with scope jobs');
      // Anonymous callers share an address (NAT, a proxy): a key of one must not answer another's job.
      if (!p) delete body.idempotencyKey;
      const { job, created } = await jobs.submit(ownerOf(p, req), body);
      return send(req, reply, created ? 202 : 200, { id: job.id, state: job.state });
    },
  );

  app.get('/api/jobs', async (req, reply) => {
    const p = auth.require(req, 'jobs');
    const q = parseBody(listQuery, req.query);
    const page = jobs.list(q, (job) => o.access(p, job.app, 'read'));
    return send(req, reply, 200, page);
  });

  app.get('/api/jobs/counts', async (req) => {
    auth.require(req, 'jobs');
    return jobs.counts();
  });

  app.get<{ Params: { id: string } }>('/api/jobs/:id', async (req, reply) => {
    const { id } = req.params;
    if (o.elsewhere && isJobId(id) && !jobs.get(id)) {
      const p = caller(req); // refused before any peer is asked
      const there = await o.elsewhere.find(id);
      check(p, there.view.app, there.anonymous, 'read');
      if (there.view.resultBlob) await o.elsewhere.fetchResult(there.view.resultBlob);
      return send(req, reply, 200, { ...there.view, site: there.site });
    }
    const job = jobFor(req, 'read');
    return send(req, reply, 200, jobs.view(job.id));
  });

  app.delete<{ Params: { id: string } }>('/api/jobs/:id', async (req, reply) => {
    const job = jobFor(req, 'write');
    return send(req, reply, 200, await jobs.cancel(job.id));
  });

  // Server-Sent Events: the job's view now and at each change (without its result: GET it once
  // the state is `succeeded`), closed after a terminal state.
  app.get<{ Params: { id: string } }>('/api/jobs/:id/watch', async (req, reply) => {
    const job = jobFor(req, 'read');
    const res = reply.raw;
    const event = (v: JobView) => {
      const { result: _, ...view } = v;
      res.write(`event: state\ndata: ${JSON.stringify(view)}\n\n`);
      if (isTerminal(v.state)) end();
    };
    let off = () => {};
    const end = () => {
      off();
      streams.delete(res);
      res.end();
    };
    // The bound on watchers is checked before the stream opens: a refusal is a plain error.
    const first = jobs.view(job.id)!;
    if (!isTerminal(first.state)) off = jobs.watch(job.id, event);
    reply.hijack();
    streams.add(res);
    res.writeHead(200, {
      'content-type': 'text/event-stream',
      'cache-control': 'no-cache',
      connection: 'keep-alive',
    });
    req.raw.on('close', end);
    event(first);
  });
}
