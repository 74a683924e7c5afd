/**
 * What jobs need of a queue shared by several relays (issue 17; the Redis one is
 * relay/cluster/job-queue.ts `openJobQueue`), in place of a JobStore (store.ts) kept by one relay.
 * Every relay sees every job (`load`, then `onChange`); a job is run by the one relay that holds
 * it (`take`), and only that relay may move it while it runs (`move` answers false otherwise, and
 * for every move out of a final state), so two relays never both complete a job.
 * @example const jobs = await openJobs({ queue: await openJobQueue(link, o), blobs, hub, … });
 */
import type { Job } from './job';

export interface JobQueue {
  /** This relay's name in the queue. */
  readonly relayId: string;
  /** Every job kept by the cluster now. */
  load(): Promise<Job[]>;
  /**
   * Adds a new queued job, with its idempotency key, in one step; answers the id of the job
   * already made under that key (nothing added), or undefined once it is added.
   */
  add(job: Job, idempotencyField?: string): Promise<string | undefined>;
  /**
   * Moves job `prev` to `next` if it still is `prev` (state and attempts) and, while it is
   * running, this relay holds it (`force`: any relay may, for a cancel). False: not moved.
   */
  move(prev: Job, next: Job, force?: boolean): Promise<boolean>;
  /** The job as the cluster keeps it now. */
  get(id: string): Promise<Job | undefined>;
  /**
   * Takes up to `n` jobs for this relay to run: new ones, and those of relays that stopped
   * heartbeating (queued or still marked running). Answers them as kept.
   */
  take(n: number): Promise<Job[]>;
  /** Jobs this relay held and another relay took over since (it stalled): to drop. */
  lost(): string[];
  /** Stops holding job `id` (a write failed): another relay, or this one, takes it over later. */
  release(id: string): void;
  /** Forgets finished jobs (their retention is over). */
  forget(ids: string[], idempotencyFields: string[]): Promise<void>;
  /** Every relay's changes, newest only; `resync` after missing some (a reconnect). */
  listen(on: { change(job: Job): void; resync(): void }): Promise<void>;
  close(): Promise<void>;
}
