/**
 * The part of jobs (index.ts) that only a relay of a cluster has (a JobQueue, queue.ts): it hears
 * every relay's changes, so reads, lists, counts and watchers follow every job, and before each
 * dispatch pass it takes from the shared queue what its nodes' free slots can run soon (plus
 * LOOKAHEAD, which it orders by priority), drops the jobs another relay took over from it, and
 * runs again a job whose relay stopped while it ran (within `maxAttempts`, as on one relay).
 * @example const sharing = shareJobs({ queue, limits, now, log, get, held, free, … });
 *          await sharing.listen(); await sharing.refill();
 */
import { toWire, UnavailableError } from '../../core/errors';
import { type Job, type JobLimits, moveTo, withReason } from './job';
import type { JobQueue } from './queue';

/** Jobs a relay of a cluster holds queued beyond its nodes' free slots (ordered by priority). */
const LOOKAHEAD = 16;

export interface SharingOptions {
  queue: JobQueue;
  limits: JobLimits;
  now(): number;
  log: { info(m: string): void; warn(m: string): void };
  get(id: string): Job | undefined;
  /** Queued jobs this relay holds. */
  held(): number;
  /** Free slots on the nodes that may take jobs now. */
  free(): number;
  closed(): boolean;
  /** index.ts's table changes: `mine` when this relay may run the job. */
  apply(prev: Job | undefined, next: Job, mine: boolean): void;
  reset(cur: Job, to: Job, mine: boolean): void;
  /** Records the job's idempotency key. */
  remember(job: Job): void;
  commit(prev: Job, next: Job): Promise<Job>;
  tell(job: Job): void;
}

export function shareJobs(o: SharingOptions) {
  const q = o.queue;
  let failing = false;

  /** Puts `job` in the tables as the cluster keeps it. */
  function place(job: Job, mine: boolean): void {
    const cur = o.get(job.id);
    if (cur) o.reset(cur, job, mine);
    else o.apply(undefined, job, mine);
    o.remember(job);
  }

  /** Another relay's change: the tables and watchers follow it. */
  function heard(job: Job): void {
    const cur = o.get(job.id);
    if (cur && cur.state === job.state && cur.attempts === job.attempts) return;
    place(job, false);
    o.tell(job);
  }

  return {
    /** Hears every relay's changes (before the jobs are read: none is missed). */
    listen(): Promise<void> {
      return q.listen({
        change: heard,
        resync: () =>
          void q
            .load()
            .then((all) => all.forEach(heard))
            .catch((e: unknown) => o.log.warn(`jobs: ${String(e)}`)),
      });
    },
    /** Drops jobs taken over from this relay; takes what its free slots can run soon. */
    async refill(): Promise<void> {
      for (const id of q.lost()) {
        const job = o.get(id);
        if (job) o.reset(job, job, false);
      }
      const want = o.free() + LOOKAHEAD - o.held();
      if (want <= 0 || o.closed()) return;
      let taken: Job[];
      try {
        taken = await q.take(want);
        if (failing) o.log.info('jobs: the shared queue answers again');
        failing = false;
      } catch (e) {
        // Once per outage: the pump asks again every pass.
        if (!failing) o.log.warn(`jobs: cannot take jobs from the shared queue: ${String(e)}`);
        failing = true;
        return;
      }
      for (const job of taken) {
        place(job, job.state === 'queued');
        if (job.state !== 'running') continue;
        // Its relay stopped while it ran (or this one, restarted): it runs again, attempts bounded.
        const why = `the relay of run ${job.attempts} stopped while it ran`;
        const next =
          job.attempts < o.limits.maxAttempts
            ? moveTo(job, 'queued', { reasons: withReason(job, why) })
            : moveTo(
                job,
                'failed',
                { reasons: withReason(job, why), error: toWire(new UnavailableError(why)) },
                o.now(),
              );
        await o.commit(job, next).catch((e: unknown) => o.log.warn(`jobs: ${String(e)}`));
      }
    },
  };
}
