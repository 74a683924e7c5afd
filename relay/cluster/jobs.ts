/**
 * The job store (relay/jobs/store.ts: JobStore) in Redis, for relays that share their jobs: hash
 * `jobs` (after the link's prefix) maps a job's id to its whole state, MessagePack-encoded as the
 * file log's records are. `put` resolves once Redis has acknowledged the write, which with
 * `appendfsync always` (relay/cluster/redis.ts) means it is on Redis's disk; `forget` deletes in
 * one command. A put of a job not yet there is refused past `maxJobs` (default 25,000: more than
 * the jobs a relay keeps active and finished together by default), checked and written in one
 * script so relays putting at once cannot pass it.
 *
 * `load` reads the hash in pages (HSCAN) and parses each value with the file log's parseRecord: a
 * value that is not a job, a tombstone, or a job stored under another id is refused with an
 * InternalError naming the key and the field, rather than a job silently dropped.
 * `size()` counts what this process wrote and read (there is no log to compact: both figures are
 * the live bytes it knows of).
 * @example const store = await redisJobs(redis); for (const j of await store.load()) …
 *          await store.put(job); // acknowledged by Redis now
 */
import { encode } from '../../core/codec';
import { InternalError, LimitError } from '../../core/errors';
import { isJobId } from '../jobs/ids';
import type { Job } from '../jobs/job';
import { type JobStore, parseRecord } from '../jobs/store';
import type { RedisLink } from './redis';

export const redisJobDefaults = { maxJobs: 25_000 };

/** Writes a job; refuses a new one when the hash holds `max`: 1 written, -1 full. */
const PUT = `
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 and redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[3]) then
  return -1
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1`;

export async function redisJobs(redis: RedisLink, o: { maxJobs?: number } = {}): Promise<JobStore> {
  const hash = redis.key('jobs');
  const maxJobs = o.maxJobs ?? redisJobDefaults.maxJobs;
  const sizes = new Map<string, number>();
  let liveBytes = 0;
  let closed = false;
  const track = (id: string, bytes: number | undefined) => {
    liveBytes -= sizes.get(id) ?? 0;
    if (bytes === undefined) sizes.delete(id);
    else {
      sizes.set(id, bytes);
      liveBytes += bytes;
    }
  };
  const open = () => {
    if (closed) throw new InternalError('the job store is closed');
  };

  function parse(field: string, payload: Uint8Array): Job {
    let record: ReturnType<typeof parseRecord>;
    try {
      record = parseRecord(payload);
    } catch (e) {
      throw new InternalError(
        `stored job ${hash} ${field.slice(0, 40)} is unreadable: ${(e as Error).message}`,
        { cause: e },
      );
    }
    if ('gone' in record || record.id !== field)
      throw new InternalError(
        `stored job ${hash} ${field.slice(0, 40)} is not the job stored there`,
      );
    return record;
  }

  return {
    async load() {
      open();
      const jobs: Job[] = [];
      let cursor = '0';
      do {
        const [at, flat] = await redis.run('read the jobs', (c) =>
          c.hscanBuffer(hash, cursor, 'COUNT', 100),
        );
        cursor = at.toString();
        for (let i = 0; i + 1 < flat.length; i += 2) {
          const field = flat[i]!.toString('latin1');
          const payload = new Uint8Array(flat[i + 1]!);
          jobs.push(parse(field, payload));
          track(field, payload.byteLength);
        }
        if (jobs.length > maxJobs)
          throw new LimitError(`${hash} holds more than ${maxJobs} jobs (maxJobs): not loaded`);
      } while (cursor !== '0');
      return jobs;
    },
    async put(job) {
      open();
      if (!isJobId(job.id)) throw new InternalError(`"${job.id.slice(0, 40)}" is not a job id`);
      const payload = encode(job);
      const r = await redis.run(`store job ${job.id}`, (c) =>
        c.eval(PUT, 1, hash, job.id, Buffer.from(payload), maxJobs),
      );
      if (r !== 1)
        throw new LimitError(
          `Redis holds ${maxJobs} jobs already (maxJobs): job ${job.id} not stored`,
        );
      track(job.id, payload.byteLength);
    },
    async forget(ids) {
      open();
      if (ids.length === 0) return;
      await redis.run(`forget ${ids.length} jobs`, (c) => c.hdel(hash, ...ids));
      for (const id of ids) track(id, undefined);
    },
    size: () => ({ logBytes: liveBytes, liveBytes }),
    async close() {
      closed = true;
    },
  };
}
