/**
 * Asynchronous jobs (PROTOCOL.md §6.2): submitted, written to disk, queued by priority then
 * deadline then id, run on nodes with free capacity (dispatch.ts), and fetched, watched or
 * cancelled later. A job succeeds at most once and its result never changes (job.ts `moveTo`);
 * a run whose node is lost puts it back in the queue, at most `maxAttempts` runs; a job past its
 * deadline fails with E_TIMEOUT. Every change is durable before it is visible (store.ts).
 * Relays of a cluster share their jobs through a JobQueue instead of a store (queue.ts,
 * shared.ts): every relay sees every job, the one that holds a job runs it, moves are conditional.
 * @example const jobs = await openJobs({ store, blobs, hub, limits, log, manifest });
 *          const { job } = await jobs.submit('admin', body);
 *          jobs.watch(job.id, (view) => …);
 */
import { encode } from '../../core/codec';
import {
  CodecError,
  ConflictError,
  InputError,
  LimitError,
  NotFoundError,
  UnavailableError,
} from '../../core/errors';
import type { Manifest } from '../../core/manifest';
import { frameLimits } from '../../core/protocol';
import type { JobBlobs } from './blobs';
import { createDispatch, type JobHub } from './dispatch';
import { jobIds } from './ids';
import {
  before,
  defaultJobLimits,
  isTerminal,
  type Job,
  type JobLimits,
  type JobState,
  type JobView,
  moveTo,
  type SubmitBody,
  viewOf,
  withReason,
} from './job';
import type { JobQueue } from './queue';
import { shareJobs } from './shared';
import type { JobStore } from './store';

export type { JobHub } from './dispatch';
export type { Job, JobLimits, JobState, JobView } from './job';
export { defaultJobLimits } from './job';

export interface JobsOptions {
  /** Exactly one: `store`, jobs kept by this relay alone, or `queue`, shared by a cluster. */
  store?: JobStore;
  queue?: JobQueue;
  blobs: JobBlobs;
  hub: JobHub;
  limits?: Partial<JobLimits>;
  /** The current manifest of an app, if it is deployed. */
  manifest(app: string): Promise<Manifest | undefined>;
  log: { info(m: string): void; warn(m: string): void };
  now?: () => number;
  /** How often queued jobs are offered to nodes with free capacity; default 50 ms. */
  pumpMs?: number;
}

type Listener = (view: JobView) => void;

export async function openJobs(o: JobsOptions) {
  if ((o.store === undefined) === (o.queue === undefined))
    throw new InputError('jobs: give exactly one of store (one relay) and queue (a cluster)');
  const shared = o.queue;
  const limits: JobLimits = { ...defaultJobLimits, ...o.limits };
  const now = o.now ?? Date.now;
  const ids = jobIds(now);
  /** Every job kept, in id order (ids sort by time; the map keeps insertion order). */
  const jobs = new Map<string, Job>();
  /** Queued jobs this relay may run, in queue order (in a cluster: those it holds). */
  const queue: Job[] = [];
  /** Jobs running on this relay's dispatch. */
  const runningHere = new Set<string>();
  /** Finished jobs' ids in the order they finished: the oldest is forgotten first. */
  const finished: string[] = [];
  const idempotent = new Map<string, string>();
  const listeners = new Map<string, Set<Listener>>();
  /** Jobs whose new state is being written: the state before it, which readers still see. */
  const unsettled = new Map<string, Job>();
  let watchers = 0;
  /** Submits checked and being written: counted against maxActive before they are queued. */
  let accepting = 0;
  /** Jobs queued or running (or being accepted) by owner, and their inline inputs' bytes (one
   * entry per job active: its size is the count of jobs active). */
  const activeBy = new Map<string, number>();
  const inputBytes = new Map<string, number>();
  let activeInputBytes = 0;
  const holdActive = (owner: string, id: string, bytes: number) => {
    activeBy.set(owner, (activeBy.get(owner) ?? 0) + 1);
    inputBytes.set(id, bytes);
    activeInputBytes += bytes;
  };
  const releaseActive = (owner: string, id: string) => {
    if (!inputBytes.has(id)) return;
    const n = (activeBy.get(owner) ?? 1) - 1;
    if (n > 0) activeBy.set(owner, n);
    else activeBy.delete(owner);
    activeInputBytes -= inputBytes.get(id) ?? 0;
    inputBytes.delete(id);
  };
  let closed = false;
  let closing: Promise<void> | undefined;

  const idemKey = (owner: string, key: string) => `${owner}\u0000${key}`;

  function enqueue(job: Job): void {
    let lo = 0;
    let hi = queue.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (before(queue[mid]!, job) <= 0) lo = mid + 1;
      else hi = mid;
    }
    queue.splice(lo, 0, job);
  }
  function dequeue(id: string): void {
    const i = queue.findIndex((j) => j.id === id);
    if (i >= 0) queue.splice(i, 1);
  }

  /**
   * Makes `next` the job's state: in the queue and tables at once (the dispatcher never runs a
   * job twice), then to readers and watchers once it is on disk.
   */
  async function commit(prev: Job, next: Job, force = false): Promise<Job> {
    apply(prev, next, true);
    // Readers see the state before until this one is on disk: a result shown is never taken back.
    unsettled.set(next.id, unsettled.get(next.id) ?? prev);
    if (shared) {
      let moved: boolean;
      try {
        moved = await shared.move(prev, next, force);
      } catch (e) {
        // Redis did not say: the job is as before; a run's answer is lost, and the job is left
        // for a relay (maybe this one) to take over once its entry is idle.
        unsettled.delete(next.id);
        if (prev.state === 'running') shared.release(prev.id);
        reset(next, prev, prev.state === 'queued');
        throw e;
      }
      unsettled.delete(next.id);
      if (!moved) {
        // Another relay moved it first (a cancel, or a takeover): the cluster's state wins.
        const kept = await shared.get(next.id).catch(() => undefined);
        if (kept && kept.state !== 'queued' && kept.state !== 'running') shared.release(next.id);
        reset(next, kept ?? prev, false);
        if (kept) tell(kept);
        throw new ConflictError(`job ${next.id}: another relay moved it first`);
      }
    } else {
      // A failed write leaves it there: the disk keeps the state before, and readers see it too.
      await o.store!.put(next);
      unsettled.delete(next.id);
    }
    tell(next);
    return next;
  }

  /**
   * Makes `next` the job's state in the tables (`mine`: this relay may run it): in the queue at
   * once, so the dispatcher never runs a job twice.
   */
  function apply(prev: Job | undefined, next: Job, mine: boolean): void {
    jobs.set(next.id, next);
    if (prev?.state === 'queued') dequeue(prev.id);
    runningHere.delete(next.id);
    if (mine && next.state === 'queued') enqueue(next);
    if (mine && next.state === 'running') runningHere.add(next.id);
    if (!prev && !isTerminal(next.state))
      holdActive(next.owner, next.id, next.input === undefined ? 0 : encodedSize(next.input));
    if (isTerminal(next.state) && (!prev || !isTerminal(prev.state))) {
      releaseActive(next.owner, next.id);
      finished.push(next.id);
      void trim();
    }
  }
  /** Puts a job back as `to` whatever it was locally (a write refused or failed, a resync). */
  function reset(cur: Job, to: Job, mine: boolean): void {
    dequeue(cur.id);
    runningHere.delete(cur.id);
    releaseActive(cur.owner, cur.id);
    const at = finished.indexOf(cur.id);
    if (at >= 0) finished.splice(at, 1);
    jobs.delete(cur.id);
    apply(undefined, to, mine);
  }
  /** A job as readers see it: its last state on disk. */
  const shown = (job: Job): Job => unsettled.get(job.id) ?? job;

  function tell(job: Job): void {
    const set = listeners.get(job.id);
    if (!set) return;
    const view = viewOf(job, dispatch.waiting(job));
    for (const l of [...set]) l(view);
  }

  /** Forgets the oldest finished jobs over `maxKept`. */
  async function trim(): Promise<void> {
    if (finished.length <= limits.maxKept) return;
    const gone = finished.splice(0, finished.length - limits.maxKept);
    const forgotten = new Map<string, string>();
    for (const id of gone) {
      const job = jobs.get(id);
      jobs.delete(id);
      if (job?.idempotencyKey) {
        idempotent.delete(idemKey(job.owner, job.idempotencyKey));
        forgotten.set(id, idemKey(job.owner, job.idempotencyKey));
      }
    }
    const keys = gone.map((id) => {
      const key = forgotten.get(id);
      forgotten.delete(id);
      return key ?? '';
    });
    await (shared ? shared.forget(gone, keys) : o.store!.forget(gone)).catch((e: unknown) =>
      o.log.warn(`jobs: ${String(e)}`),
    );
  }

  const dispatch = createDispatch({
    hub: o.hub,
    blobs: o.blobs,
    limits,
    now,
    queue: () => queue,
    get: (id) => jobs.get(id),
    commit,
    ...(shared && { refill: () => sharing!.refill(), confirmRuns: true }),
    log: o.log,
  });

  const sharing =
    shared &&
    shareJobs({
      queue: shared,
      limits,
      now,
      log: o.log,
      get: (id) => jobs.get(id),
      held: () => queue.length,
      free: () => dispatch.free(),
      closed: () => closed,
      apply,
      reset,
      remember: (job) => {
        if (job.idempotencyKey) idempotent.set(idemKey(job.owner, job.idempotencyKey), job.id);
      },
      commit,
      tell,
    });

  /** The rest of a submit, counted in `accepting` until its job is held (`held` called). */
  async function accept(
    owner: string,
    body: SubmitBody,
    size: number,
    held: () => void,
  ): Promise<{ job: Job; created: boolean }> {
    const manifest = await o.manifest(body.app);
    if (!manifest) throw new NotFoundError(`app: no app named "${body.app}" is deployed`);
    if (!Object.hasOwn(manifest.services, body.service))
      throw new NotFoundError(`service: app "${body.app}" has no service "${body.service}"`);
    if (body.inputBlob !== undefined) {
      const blob = await o.blobs.stat(body.inputBlob);
      if (!blob) throw new NotFoundError(`inputBlob: no blob ${body.inputBlob} on this relay`);
      // It is read whole and decoded for each run: no larger than a frame to a node may be.
      if (blob.size > frameLimits.maxBytes)
        throw new LimitError(
          `inputBlob: the blob is ${blob.size} bytes (limit ${frameLimits.maxBytes}, a frame to a node)`,
        );
    }
    // Asked again after the awaits: two submits with one key at once make one job.
    if (body.idempotencyKey !== undefined) {
      const same = jobs.get(idempotent.get(idemKey(owner, body.idempotencyKey)) ?? '');
      if (same) return { job: same, created: false };
    }
    const created = now();
    const job: Job = {
      id: ids.next(),
      app: body.app,
      service: body.service,
      rpc: body.rpc ?? '',
      ...(body.input !== undefined && { input: body.input }),
      ...(body.inputBlob !== undefined && { inputBlob: body.inputBlob }),
      qos: body.qos ?? {},
      priority: body.priority ?? 0,
      ...(body.deadlineMs !== undefined && { deadline: created + body.deadlineMs }),
      owner,
      ...(body.idempotencyKey !== undefined && { idempotencyKey: body.idempotencyKey }),
      state: 'queued',
      attempts: 0,
      reasons: [],
      created,
    };
    if (job.idempotencyKey) idempotent.set(idemKey(owner, job.idempotencyKey), job.id);
    jobs.set(job.id, job);
    held();
    holdActive(owner, job.id, size);
    let same: string | undefined;
    try {
      if (shared) {
        const key = job.idempotencyKey && idemKey(owner, job.idempotencyKey);
        same = await shared.add(job, key);
      } else await o.store!.put(job);
    } catch (e) {
      same = undefined;
      releaseActive(owner, job.id);
      jobs.delete(job.id);
      if (job.idempotencyKey) idempotent.delete(idemKey(owner, job.idempotencyKey));
      throw e;
    }
    if (same !== undefined) {
      // Another relay made it first under this key.
      releaseActive(owner, job.id);
      jobs.delete(job.id);
      const made = jobs.get(same) ?? (await shared!.get(same));
      if (!made) throw new ConflictError(`idempotencyKey: job ${same} made under it is gone`);
      idempotent.set(idemKey(owner, job.idempotencyKey!), same);
      return { job: made, created: false };
    }
    // In a cluster it is run by the relay that takes it from the shared queue.
    if (shared) return { job, created: true };
    // Queued only once on disk: it cannot run before it is accepted.
    enqueue(job);
    dispatch.pump();
    return { job, created: true };
  }

  // A cluster's relay hears changes before it reads them all: it misses none.
  await sharing?.listen();
  // What the store kept: a job that was running when the relay stopped runs again.
  const kept = (await (shared ?? o.store!).load()).sort((a, b) => (a.id < b.id ? -1 : 1));
  let requeued = 0;
  for (const job of kept) {
    ids.after(job.id);
    let j = job;
    if (!shared && j.state === 'running') {
      j = moveTo(j, 'queued', { reasons: withReason(j, 'the relay stopped while it ran') });
      requeued++;
      await o.store!.put(j);
    }
    jobs.set(j.id, j);
    if (j.idempotencyKey) idempotent.set(idemKey(j.owner, j.idempotencyKey), j.id);
    if (!isTerminal(j.state)) {
      if (!shared) enqueue(j);
      holdActive(j.owner, j.id, j.input === undefined ? 0 : encodedSize(j.input));
    }
    if (isTerminal(j.state)) finished.push(j.id);
  }
  finished.sort((a, b) => (jobs.get(a)!.finished ?? 0) - (jobs.get(b)!.finished ?? 0));
  await trim(); // --jobs-kept lowered since the last start
  if (kept.length > 0)
    o.log.info(`jobs: ${kept.length} kept, ${queue.length} queued (${requeued} were running)`);
  dispatch.start(o.pumpMs ?? 50);

  return {
    limits,
    /**
     * Accepts a job: durable on disk when this resolves. The same `idempotencyKey` from the same
     * owner answers the job it made first (`created: false`).
     */
    async submit(owner: string, body: SubmitBody): Promise<{ job: Job; created: boolean }> {
      if (body.idempotencyKey !== undefined) {
        const id = idempotent.get(idemKey(owner, body.idempotencyKey));
        const same = id === undefined ? undefined : jobs.get(id);
        if (same) return { job: same, created: false };
      }
      if (closed)
        throw new UnavailableError('the relay is shutting down: it takes no new jobs, retry later');
      const active = inputBytes.size + accepting;
      if (active >= limits.maxActive)
        throw new LimitError(
          `${active} jobs are queued or running (limit --max-jobs ${limits.maxActive}): submit again once some finish`,
        );
      const size = body.input === undefined ? 0 : encodedSize(body.input);
      if (size > limits.maxInputBytes)
        throw new LimitError(
          `input is ${size} bytes encoded (limit --max-job-input-kib ${limits.maxInputBytes / 1024} KiB): upload it as a blob and send inputBlob`,
        );
      if (activeInputBytes + size > limits.maxActiveInputBytes)
        throw new LimitError(
          `the inputs of the jobs queued or running hold ${activeInputBytes} bytes (limit ${limits.maxActiveInputBytes}): submit again once some finish, or send inputBlob`,
        );
      const mine = activeBy.get(owner) ?? 0;
      if (owner.startsWith('anon:') && mine >= limits.maxActivePerAddress)
        throw new LimitError(
          `this address has ${mine} jobs queued or running (limit ${limits.maxActivePerAddress} without a credential): submit again once some finish`,
        );
      accepting++;
      let counted = true;
      const held = () => {
        if (counted) accepting--;
        counted = false;
      };
      try {
        return await accept(owner, body, size, held);
      } finally {
        held();
      }
    },
    get: (id: string) => jobs.get(id),
    /** The view of job `id` (with its result, and why it waits when queued). */
    view(id: string): JobView | undefined {
      const job = jobs.get(id);
      return job && viewOf(shown(job), dispatch.waiting(job));
    },
    /** Cancels a queued or running job (a running one's result, if it comes, is dropped). */
    async cancel(id: string): Promise<JobView> {
      const job = jobs.get(id);
      if (!job) throw new NotFoundError(`no job ${id}`);
      if (isTerminal(job.state))
        throw new ConflictError(`job ${id} is already ${job.state}: there is nothing to cancel`);
      const next = await commit(job, moveTo(job, 'cancelled', {}, now()), true);
      return viewOf(next);
    },
    /** Jobs in id order after `after`, filtered; `next` is the cursor for the next page. */
    list(
      filter: { state?: JobState; app?: string; after?: string; limit?: number },
      visible: (job: Job) => boolean,
    ): { jobs: JobView[]; next?: string } {
      const limit = filter.limit ?? 100;
      const out: JobView[] = [];
      for (const job of jobs.values()) {
        if (filter.after !== undefined && job.id <= filter.after) continue;
        if (filter.state && job.state !== filter.state) continue;
        if (filter.app && job.app !== filter.app) continue;
        if (!visible(job)) continue;
        if (out.length === limit) return { jobs: out, next: out[out.length - 1]!.id };
        out.push(viewOf(shown(job), dispatch.waiting(job), false));
      }
      return { jobs: out };
    },
    /** Calls `listener` with the job's view at each change; answers the unsubscribe. */
    watch(id: string, listener: Listener): () => void {
      if (watchers >= limits.maxWatchers)
        throw new LimitError(
          `${watchers} job watchers are open (limit ${limits.maxWatchers}): poll GET /api/jobs/:id instead`,
        );
      const set = listeners.get(id) ?? new Set<Listener>();
      listeners.set(id, set);
      set.add(listener);
      watchers++;
      let done = false;
      return () => {
        if (done) return;
        done = true;
        watchers--;
        set.delete(listener);
        if (set.size === 0) listeners.delete(id);
      };
    },
    /** Counts by state, for the admin console and metrics. */
    counts(): Record<JobState, number> {
      const c = { queued: 0, running: 0, succeeded: 0, failed: 0, cancelled: 0 };
      for (const job of jobs.values()) c[job.state]++;
      return c;
    },
    /** Blobs kept jobs name (inputs and results): a referrer for blob collection. */
    *blobs(): Iterable<string> {
      for (const job of jobs.values()) {
        if (job.inputBlob) yield job.inputBlob;
        if (job.resultBlob) yield job.resultBlob;
      }
    },
    /** Stops dispatching; runs in flight are left as `running` on disk (re-queued at start). */
    close(): Promise<void> {
      closed = true;
      dispatch.stop();
      closing ??= (shared ?? o.store!).close();
      return closing;
    },
  };
}

export type Jobs = Awaited<ReturnType<typeof openJobs>>;

/** The input's MessagePack size; what MessagePack cannot carry (nested too deep) is the caller's. */
function encodedSize(input: unknown): number {
  try {
    return encode(input).byteLength;
  } catch (e) {
    throw new CodecError(`input cannot be encoded as MessagePack: ${(e as Error).message}`);
  }
}
