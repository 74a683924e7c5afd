/**
 * Idle capacity pulls work: queued jobs, in queue order, go to nodes with free slots — not
 * paused, not quarantined, not on a low battery that is not charging (a hidden tab reports one
 * slot, so it takes one job at a time) — never more than a node's free concurrency: its
 * `maxConcurrency` less the most of what it reports busy, what the relay forwards to it, and the
 * jobs started on it. Among the free nodes, placement (relay/hub/decide.ts) picks by fit — the
 * node that runs the app and meets the job's QoS soonest — and the job runs as a call the hub
 * forwards to that node only; its answer settles the job, or puts it back in the queue.
 * @example const d = createDispatch({ hub, blobs, limits, now, queue, get, commit, log });
 *          d.start(50); d.pump();
 */
import type { NodeRecord } from '../../core/api';
import { decode, encode } from '../../core/codec';
import {
  type BrumeError,
  httpStatus,
  NotFoundError,
  TimeoutError,
  toWire,
} from '../../core/errors';
import { frameLimits } from '../../core/protocol';
import type { Call, CallAnswer, Route } from '../hub';
import type { DecideArgs } from '../hub/decide';
import type { Outcome } from '../verify';
import type { JobBlobs } from './blobs';
import { type Job, type JobLimits, moveTo, withReason } from './job';

/** What dispatch needs of the hub (relay/hub/index.ts). */
export interface JobHub {
  nodes(): NodeRecord[];
  decide(...args: DecideArgs): Promise<Route>;
  runOn(
    call: Call,
    reply: (answer: Outcome<CallAnswer>) => void,
    ref?: Record<string, unknown>,
  ): void;
  forwardedTo(id: string): number;
}

export interface DispatchOptions {
  hub: JobHub;
  blobs: JobBlobs;
  limits: JobLimits;
  now(): number;
  /** The queued jobs in queue order (live: commit changes it). */
  queue(): readonly Job[];
  get(id: string): Job | undefined;
  commit(prev: Job, next: Job): Promise<Job>;
  /** Fills the queue before each pass (a cluster's relay takes jobs from the shared queue). */
  refill?(): Promise<void>;
  /**
   * A run starts only once its `running` state is written (a cluster: another relay may hold the
   * job, and the write is refused). Otherwise it starts at once, the write going meanwhile.
   */
  confirmRuns?: boolean;
  log: { warn(m: string): void };
}

/** A battery below this, not charging, takes no jobs (the tab pauses itself too). */
const LOW_BATTERY = 0.2;

export function createDispatch(o: DispatchOptions) {
  const { hub, limits } = o;
  /** Jobs started on each node and not answered yet. */
  const mine = new Map<string, number>();
  /** Why each queued job looked at in the last pass did not start; and why none could. */
  let reasons = new Map<string, string>();
  let stalled = '';
  let pumping = false;
  let again = false;
  let timer: ReturnType<typeof setInterval> | undefined;
  /** Set by stop: answers that come after are not recorded (the job reruns after a restart). */
  let stopped = false;

  const bump = (node: string, by: number) => {
    const n = (mine.get(node) ?? 0) + by;
    if (n > 0) mine.set(node, n);
    else mine.delete(node);
  };
  const commit = (prev: Job, next: Job) =>
    void o.commit(prev, next).catch((e: unknown) => o.log.warn(`jobs: write failed: ${String(e)}`));

  /** Free slots per node that may take jobs now, and why the others may not. */
  function freeSlots(nodes: NodeRecord[]) {
    const free = new Map<string, number>();
    const not = { busy: 0, paused: 0, quarantined: 0, battery: 0 };
    for (const n of nodes) {
      const b = n.caps.battery;
      if (n.quarantined) not.quarantined++;
      else if (n.paused) not.paused++;
      else if (b && b.level < LOW_BATTERY && !b.charging) not.battery++;
      else {
        const busy = Math.max(n.queue, hub.forwardedTo(n.id), mine.get(n.id) ?? 0);
        if (n.maxConcurrency - busy > 0) free.set(n.id, n.maxConcurrency - busy);
        else not.busy++;
      }
    }
    const why = `${not.busy} busy, ${not.paused} paused, ${not.battery} on a low battery, ${not.quarantined} quarantined`;
    return { free, why };
  }

  /** Fails queued jobs past their deadline. */
  function expire(t: number): void {
    for (const job of [...o.queue()]) {
      if (job.deadline === undefined || job.deadline > t) continue;
      const e = new TimeoutError(
        `deadline: not started by its deadline (${job.deadline - job.created} ms after it was submitted)`,
      );
      commit(job, moveTo(job, 'failed', { error: toWire(e) }, t));
    }
  }

  async function pass(): Promise<void> {
    if (stopped) return;
    await o.refill?.();
    expire(o.now());
    if (o.queue().length === 0) return;
    const nodes = hub.nodes();
    const { free, why } = freeSlots(nodes);
    const next = new Map<string, string>();
    if (free.size === 0) {
      stalled =
        nodes.length === 0
          ? 'no node is connected'
          : `none of the ${nodes.length} nodes has a free slot (${why})`;
      reasons = next;
      return;
    }
    stalled = '';
    /** Requests no free node could take in this pass: the same answer for the jobs like them. */
    const refused = new Map<string, string>();
    for (const job of [...o.queue()]) {
      if (free.size === 0) break;
      if (o.get(job.id) !== job) continue;
      const key = `${job.app}/${job.service}/${job.rpc}/${JSON.stringify(job.qos)}`;
      const known = refused.get(key);
      if (known !== undefined) {
        next.set(job.id, known);
        continue;
      }
      const exclude = nodes.filter((n) => !free.has(n.id)).map((n) => n.id);
      let route: Route;
      try {
        route = await hub.decide(job.app, job.service, job.qos, '', exclude, job.rpc);
      } catch (e) {
        const why = `no node with a free slot can run it now: ${(e as Error).message}`;
        refused.set(key, why);
        next.set(job.id, why);
        continue;
      }
      // Cancelled (or expired) while it was placed.
      if (o.get(job.id) !== job) continue;
      const left = (free.get(route.node) ?? 1) - 1;
      if (left > 0) free.set(route.node, left);
      else free.delete(route.node);
      start(job, route);
    }
    reasons = next;
  }

  function start(job: Job, route: Route): void {
    const runJob = moveTo(
      job,
      'running',
      { attempts: job.attempts + 1, node: route.node },
      o.now(),
    );
    bump(route.node, 1);
    const written = o.commit(job, runJob);
    if (!o.confirmRuns) {
      void written.catch((e: unknown) => o.log.warn(`jobs: write failed: ${String(e)}`));
      run(job, runJob, route);
      return;
    }
    written.then(
      () => run(job, runJob, route),
      (e: unknown) => {
        bump(route.node, -1);
        o.log.warn(`jobs: ${job.id} not started: ${String(e)}`);
      },
    );
  }

  function run(job: Job, runJob: Job, route: Route): void {
    void inputOf(runJob).then(
      (input) => {
        const left = runJob.deadline === undefined ? Infinity : runJob.deadline - o.now();
        const call: Call = {
          app: job.app,
          service: job.service,
          rpc: route.rpc,
          ...(route.pin && { pin: route.pin }),
          input,
          qos: job.qos,
          caller: '',
          target: route.node,
          timeoutMs: Math.max(1, Math.min(limits.runTimeoutMs, left)),
        };
        hub.runOn(call, (answer) => void settle(runJob, route.node, answer), { job: job.id });
      },
      (e: BrumeError) => void settle(runJob, route.node, { ok: false, error: e }),
    );
  }

  async function inputOf(job: Job): Promise<unknown> {
    if (job.inputBlob === undefined) return job.input;
    const bytes = await o.blobs.get(job.inputBlob);
    if (!bytes) throw new NotFoundError(`inputBlob: blob ${job.inputBlob} is gone`);
    return decode(bytes, frameLimits);
  }

  /** A run's answer: the job succeeds, fails, or goes back to the queue; a stale answer is dropped. */
  async function settle(run: Job, node: string, answer: Outcome<CallAnswer>): Promise<void> {
    bump(node, -1);
    if (stopped) return;
    try {
      const stillRuns = () => {
        const cur = o.get(run.id);
        return cur?.state === 'running' && cur.attempts === run.attempts ? cur : undefined;
      };
      let cur = stillRuns();
      if (!cur) return; // cancelled meanwhile: the result is dropped
      if (answer.ok) {
        const bytes = encode(answer.value);
        const fields =
          bytes.byteLength > limits.resultBlobBytes
            ? { resultBlob: (await o.blobs.putBytes(bytes)).hash }
            : { result: answer.value };
        cur = stillRuns();
        if (!cur) return;
        return commit(cur, moveTo(cur, 'succeeded', { ...fields, node: answer.node }, o.now()));
      }
      const e = answer.error;
      const t = o.now();
      const reasons = withReason(
        cur,
        `run ${cur.attempts} on ${node.slice(0, 8)}: ${e.code} ${e.message}`,
      );
      if (cur.deadline !== undefined && t >= cur.deadline) {
        const late = new TimeoutError(
          `deadline: not done by its deadline (${cur.deadline - cur.created} ms after it was submitted)`,
        );
        return commit(cur, moveTo(cur, 'failed', { error: toWire(late), reasons }, t));
      }
      // The node's side (lost, busy, timed out, a Logic that crashed): another run may do it.
      const retry = httpStatus(e) >= 500 || e.code === 'E_LIMIT';
      if (retry && cur.attempts < limits.maxAttempts)
        return commit(cur, moveTo(cur, 'queued', { reasons }, t));
      commit(cur, moveTo(cur, 'failed', { error: toWire(e), reasons }, t));
    } catch (e) {
      // The relay's own side failed (a result blob not written): the job runs again.
      const cur = o.get(run.id);
      if (cur?.state !== 'running' || cur.attempts !== run.attempts) return;
      const why = `run ${cur.attempts}: the relay could not keep its answer: ${String(e)}`;
      o.log.warn(`jobs: ${cur.id}: ${why}`);
      const to = cur.attempts < limits.maxAttempts ? 'queued' : 'failed';
      commit(
        cur,
        moveTo(
          cur,
          to,
          { reasons: withReason(cur, why), ...(to === 'failed' && { error: toWire(e) }) },
          o.now(),
        ),
      );
    } finally {
      pump();
    }
  }

  /** Offers queued jobs to free nodes now (and once more after, when asked meanwhile). */
  function pump(): void {
    if (pumping) {
      again = true;
      return;
    }
    pumping = true;
    void pass()
      .catch((e: unknown) => o.log.warn(`jobs: dispatch failed: ${String(e)}`))
      .finally(() => {
        pumping = false;
        if (again) {
          again = false;
          pump();
        }
      });
  }

  return {
    pump,
    start(everyMs: number): void {
      timer = setInterval(pump, everyMs);
      timer.unref?.();
    },
    stop(): void {
      stopped = true;
      clearInterval(timer);
    },
    /** Free slots on the nodes that may take jobs now, together. */
    free(): number {
      let n = 0;
      for (const f of freeSlots(hub.nodes()).free.values()) n += f;
      return n;
    },
    /** Why a queued job waits. */
    waiting(job: Job): string | undefined {
      if (job.state !== 'queued') return undefined;
      return reasons.get(job.id) ?? (stalled || 'waiting for a node with a free slot');
    },
  };
}
