/**
 * The job queue of a cluster (issue 17; relay/jobs/queue.ts JobQueue) in Redis, so that several
 * relays run each job once and take over the jobs of a relay that died.
 *
 * Keys (after the link's prefix):
 *   jobs           hash   id → the job's whole state, MessagePack (as relay/cluster/jobs.ts)
 *   jobs:meta      hash   id → "<state> <attempts> <holder relay or -> <stream entry> <rev>"
 *   jobs:idem      hash   "<owner>\0<idempotency key>" → id
 *   jobs:queue     stream one entry { id } per job accepted; consumer group `relays`
 *   jobs:changed   channel "<rev> <relay> " + the job's MessagePack after each change (a relay
 *                  skips its own: its tables have them, and an echo may come after a newer one)
 *
 * A submit writes the job, its meta, its key and its stream entry in one script. A relay reads
 * new entries with XREADGROUP (it becomes their consumer: it holds those jobs) only as many as it
 * may run soon; every state change is one script that checks the meta first: the state and
 * attempts the relay saw, and — for a job queued or running — that the relay holds it (a cancel
 * may force that); a final state is never left. A final state acknowledges and deletes the entry.
 * A relay refreshes its entries every `heartbeatMs` (XCLAIM to itself, idle time back to 0); an
 * entry idle for 3 heartbeats belongs to a relay that stopped, and the next relay to `take`
 * claims it (XAUTOCLAIM) and holds its job: the jobs layer (relay/jobs/index.ts) runs it again,
 * attempts bounded as on one relay. A relay that restarts under the same id first takes back its
 * own pending entries.
 *
 * What Redis holds is hostile: an entry naming no job, a meta or a state that does not parse is
 * skipped with a warning (an entry is acknowledged and deleted), never a crash. Bounds: `maxJobs`
 * jobs kept (a submit past it is E_LIMIT), TAKE_MAX entries per read.
 * @example const queue = await openJobQueue(link, { relayId: 'r1', warn: log.warn });
 *          const jobs = await openJobs({ queue, blobs, hub, manifest, log });
 */
import type { Redis } from 'ioredis';
import { encode } from '../../core/codec';
import { InputError, LimitError } from '../../core/errors';
import { isJobId } from '../jobs/ids';
import type { Job } from '../jobs/job';
import type { JobQueue } from '../jobs/queue';
import { parseRecord } from '../jobs/store';
import type { RedisLink } from './redis';

export const jobQueueDefaults = { heartbeatMs: 1000, maxJobs: 25_000 };
/** Entries read or claimed in one take at most. */
const TAKE_MAX = 256;
/** Entries held idle this many heartbeats belong to a relay that stopped. */
const DEAD_BEATS = 3;
const GROUP = 'relays';
const RELAY_ID = /^[A-Za-z0-9_.-]{1,64}$/;
const META =
  /^(queued|running|succeeded|failed|cancelled) (\d{1,4}) (\S{1,64}) (\S{1,40}) (\d{1,16})$/;

/** A Lua pattern for the meta, shared by the scripts. */
const LUA_META = `local function meta(m)
  if not m then return nil end
  local s, a, h, e, r = string.match(m, '^(%l+) (%d+) (%S+) (%S+) (%d+)$')
  if not s then return nil end
  return { s = s, a = a, h = h, e = e, r = tonumber(r) }
end
`;

/** Adds a job: {0, id} its key names a job, {-1} full, {1} added. */
const ADD = `${LUA_META}
if ARGV[3] ~= '' then
  local same = redis.call('HGET', KEYS[3], ARGV[3])
  if same then return { 0, same } end
end
if redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[4]) then return { -1 } end
local entry = redis.call('XADD', KEYS[4], '*', 'id', ARGV[1])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[1], 'queued 0 - ' .. entry .. ' 1')
if ARGV[3] ~= '' then redis.call('HSET', KEYS[3], ARGV[3], ARGV[1]) end
redis.call('PUBLISH', KEYS[5], '1 ' .. ARGV[5] .. ' ' .. ARGV[2])
return { 1 }`;

/** Moves a job if it is as seen and held (or forced): its new rev, or 0 refused, -1 absent. */
const MOVE = `${LUA_META}
local m = meta(redis.call('HGET', KEYS[2], ARGV[1]))
if not m then return -1 end
if m.s ~= ARGV[2] or m.a ~= ARGV[3] then return 0 end
if m.s ~= 'queued' and m.s ~= 'running' then return 0 end
if m.h ~= ARGV[4] and ARGV[8] ~= '1' then return 0 end
local rev = m.r + 1
redis.call('HSET', KEYS[1], ARGV[1], ARGV[7])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[5] .. ' ' .. ARGV[6] .. ' ' .. m.h .. ' ' .. m.e .. ' ' .. rev)
if ARGV[5] ~= 'queued' and ARGV[5] ~= 'running' and m.e ~= '-' then
  redis.call('XACK', KEYS[3], ARGV[9], m.e)
  redis.call('XDEL', KEYS[3], m.e)
end
redis.call('PUBLISH', KEYS[4], rev .. ' ' .. ARGV[4] .. ' ' .. ARGV[7])
return rev`;

/** Holds the job of an entry this relay now consumes: its state, or false (no such job). */
const TAKE = `${LUA_META}
local m = meta(redis.call('HGET', KEYS[2], ARGV[1]))
if not m or m.e ~= ARGV[3] then return false end
redis.call('HSET', KEYS[2], ARGV[1], m.s .. ' ' .. m.a .. ' ' .. ARGV[2] .. ' ' .. m.e .. ' ' .. m.r)
return { redis.call('HGET', KEYS[1], ARGV[1]), tostring(m.r) }`;

/** Refreshes the entries still this relay's; answers those another relay took. */
const BEAT = `
local lost = {}
for i = 3, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if #p == 1 and p[1][2] == ARGV[2] then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
  else
    table.insert(lost, ARGV[i])
  end
end
return lost`;

/** A page of the jobs (HSCAN from ARGV[1]) as cursor, then id, job, meta ('' none) triples. */
const PAGE = `
local r = redis.call('HSCAN', KEYS[1], ARGV[1], 'COUNT', 200)
local out = { r[1] }
for i = 1, #r[2], 2 do
  out[#out + 1] = r[2][i]
  out[#out + 1] = r[2][i + 1]
  out[#out + 1] = redis.call('HGET', KEYS[2], r[2][i]) or ''
end
return out`;

/** Forgets final jobs (id, idempotency field pairs); a job not final is kept. */
const FORGET = `${LUA_META}
for i = 1, #ARGV, 2 do
  local m = meta(redis.call('HGET', KEYS[2], ARGV[i]))
  if not m or (m.s ~= 'queued' and m.s ~= 'running') then
    redis.call('HDEL', KEYS[1], ARGV[i])
    redis.call('HDEL', KEYS[2], ARGV[i])
    if ARGV[i + 1] ~= '' then redis.call('HDEL', KEYS[3], ARGV[i + 1]) end
  end
end
return 1`;

export interface JobQueueOptions {
  /** This relay's consumer name: letters, digits, `_.-`, at most 64; stable across restarts. */
  relayId: string;
  /** How often held entries are refreshed; 3 missed make them another relay's. Default 1 s. */
  heartbeatMs?: number;
  /** Jobs kept in Redis at most (queued, running and finished). Default 25,000. */
  maxJobs?: number;
  warn(m: string): void;
}

export async function openJobQueue(link: RedisLink, o: JobQueueOptions): Promise<JobQueue> {
  if (!RELAY_ID.test(o.relayId))
    throw new InputError(
      `relayId: "${o.relayId.slice(0, 80)}" must be 1 to 64 letters, digits or _.-`,
    );
  const relayId = o.relayId;
  const heartbeatMs = o.heartbeatMs ?? jobQueueDefaults.heartbeatMs;
  const maxJobs = o.maxJobs ?? jobQueueDefaults.maxJobs;
  const k = {
    jobs: link.key('jobs'),
    meta: link.key('jobs', 'meta'),
    idem: link.key('jobs', 'idem'),
    stream: link.key('jobs', 'queue'),
    changed: link.key('jobs', 'changed'),
  };
  /** Entries this relay holds, and their jobs. */
  const held = new Map<string, string>();
  const entryOf = new Map<string, string>();
  /** The newest rev seen of each job: older changes are dropped. */
  const revs = new Map<string, number>();
  const lostIds: string[] = [];
  /** Own pending entries are read back first (a restart under the same id), after this entry. */
  let history: string | undefined = '0';
  let closed = false;
  let subscriber: Redis | undefined;

  const hold = (entry: string, id: string) => {
    held.set(entry, id);
    entryOf.set(id, entry);
  };
  const unhold = (id: string) => {
    const entry = entryOf.get(id);
    if (entry !== undefined) held.delete(entry);
    entryOf.delete(id);
  };
  const seen = (id: string, rev: number): boolean => {
    if ((revs.get(id) ?? 0) >= rev) return false;
    revs.set(id, rev);
    return true;
  };

  function parse(where: string, payload: Uint8Array): Job | undefined {
    try {
      const r = parseRecord(payload);
      if (!('gone' in r)) return r;
    } catch (e) {
      o.warn(`jobs: ${where} is not a job, skipped: ${(e as Error).message}`);
      return undefined;
    }
    o.warn(`jobs: ${where} is not a job, skipped`);
    return undefined;
  }

  async function ensureGroup(): Promise<void> {
    await link.run('create the job queue', async (c) => {
      try {
        await c.xgroup('CREATE', k.stream, GROUP, '0', 'MKSTREAM');
      } catch (e) {
        if (!/BUSYGROUP/.test((e as Error).message)) throw e;
      }
    });
  }
  await ensureGroup();

  async function drop(entry: string): Promise<void> {
    await link.run('drop a job queue entry', (c) =>
      c.multi().xack(k.stream, GROUP, entry).xdel(k.stream, entry).exec(),
    );
  }

  /** Holds the job of each entry read or claimed; skips and drops garbage. */
  async function takeEntries(entries: [string, string[] | null][]): Promise<Job[]> {
    const out: Job[] = [];
    for (const [entry, fields] of entries) {
      const id = fields?.[0] === 'id' ? fields[1] : undefined;
      if (id === undefined || !isJobId(id)) {
        o.warn(`jobs: queue entry ${entry.slice(0, 40)} names no job: dropped`);
        await drop(entry);
        continue;
      }
      const r = (await link.run(`take job ${id}`, (c) =>
        c.callBuffer('EVAL', TAKE, 2, k.jobs, k.meta, id, relayId, entry),
      )) as [Buffer | null, Buffer] | null;
      const job = r?.[0] ? parse(`job ${id}`, new Uint8Array(r[0])) : undefined;
      if (!job || job.id !== id || (job.state !== 'queued' && job.state !== 'running')) {
        if (!job) o.warn(`jobs: queue entry ${entry} names job ${id}, not kept: dropped`);
        await drop(entry);
        continue;
      }
      seen(id, Number(r![1].toString()));
      hold(entry, id);
      out.push(job);
    }
    return out;
  }

  const isNoGroup = (e: unknown) => /NOGROUP/.test((e as Error).message);

  async function beat(): Promise<void> {
    if (held.size === 0) return;
    const entries = [...held.keys()];
    const lost = (await link.run('refresh held jobs', (c) =>
      c.eval(BEAT, 1, k.stream, GROUP, relayId, ...entries),
    )) as string[];
    for (const entry of lost) {
      const id = held.get(entry);
      if (id === undefined) continue;
      unhold(id);
      lostIds.push(id);
    }
  }
  const timer = setInterval(() => {
    beat().catch((e: unknown) => o.warn(`jobs: heartbeat failed: ${(e as Error).message}`));
  }, heartbeatMs);
  timer.unref?.();

  return {
    relayId,
    async load() {
      const jobs: Job[] = [];
      let cursor = '0';
      do {
        // A page of jobs with their metas read at once: each job with the rev it is at.
        const [at, ...flat] = (await link.run('read the jobs', (c) =>
          c.callBuffer('EVAL', PAGE, 2, k.jobs, k.meta, cursor),
        )) as Buffer[];
        cursor = at!.toString();
        for (let i = 0; i + 2 < flat.length; i += 3) {
          const field = flat[i]!.toString('latin1');
          const job = parse(`${k.jobs} ${field.slice(0, 40)}`, new Uint8Array(flat[i + 1]!));
          const rev = Number(META.exec(flat[i + 2]?.toString('latin1') ?? '')?.[5] ?? 0);
          // A change heard since is newer than this page (the tables have it): never taken back.
          if (!job || job.id !== field || (rev > 0 && (revs.get(field) ?? 0) > rev)) continue;
          if (rev > 0) seen(field, rev);
          jobs.push(job);
        }
        if (jobs.length > maxJobs)
          throw new LimitError(`${k.jobs} holds more than ${maxJobs} jobs (maxJobs): not loaded`);
      } while (cursor !== '0');
      return jobs;
    },
    async add(job, idempotencyField = '') {
      const r = (await link.run(`submit job ${job.id}`, (c) =>
        c.eval(
          ADD,
          5,
          k.jobs,
          k.meta,
          k.idem,
          k.stream,
          k.changed,
          job.id,
          Buffer.from(encode(job)),
          idempotencyField,
          maxJobs,
          relayId,
        ),
      )) as [number, string?];
      if (r[0] === -1)
        throw new LimitError(`Redis holds ${maxJobs} jobs already (maxJobs): job not accepted`);
      if (r[0] === 0) return r[1];
      seen(job.id, 1);
      return undefined;
    },
    async move(prev, next, force = false) {
      const rev = (await link.run(`move job ${prev.id} to ${next.state}`, (c) =>
        c.eval(
          MOVE,
          4,
          k.jobs,
          k.meta,
          k.stream,
          k.changed,
          prev.id,
          prev.state,
          String(prev.attempts),
          relayId,
          next.state,
          String(next.attempts),
          Buffer.from(encode(next)),
          force ? '1' : '0',
          GROUP,
        ),
      )) as number;
      if (rev <= 0) return false;
      seen(next.id, rev);
      if (next.state !== 'queued' && next.state !== 'running') unhold(next.id);
      return true;
    },
    async get(id) {
      const bytes = await link.run(`read job ${id}`, (c) => c.hgetBuffer(k.jobs, id));
      return bytes ? parse(`job ${id}`, new Uint8Array(bytes)) : undefined;
    },
    async take(n) {
      if (closed || n <= 0) return [];
      const count = Math.min(n, TAKE_MAX);
      try {
        const taken: Job[] = [];
        // Entries of relays that stopped heartbeating first: they are the oldest work.
        const [, claimed] = (await link.run('claim stalled jobs', (c) =>
          c.xautoclaim(k.stream, GROUP, relayId, DEAD_BEATS * heartbeatMs, '0', 'COUNT', count),
        )) as [string, [string, string[] | null][]];
        taken.push(...(await takeEntries(claimed.filter((e) => !held.has(e[0])))));
        if (taken.length >= count) return taken;
        const read = async () =>
          (
            (await link.run('read the job queue', (c) =>
              c.xreadgroup(
                'GROUP',
                GROUP,
                relayId,
                'COUNT',
                count - taken.length,
                'STREAMS',
                k.stream,
                history ?? '>',
              ),
            )) as [string, [string, string[] | null][]][] | null
          )?.[0]?.[1] ?? [];
        const before = history;
        let entries = await read();
        if (before !== undefined) {
          // Its own entries from before a restart, a page at a time; then new ones.
          history = entries.at(-1)?.[0];
          if (history === undefined) entries = await read();
        }
        entries = entries.filter((e) => !held.has(e[0]));
        taken.push(...(await takeEntries(entries)));
        return taken;
      } catch (e) {
        // The stream or its group was deleted (a flushed Redis): made again for the next take.
        if (isNoGroup(e)) await ensureGroup();
        throw e;
      }
    },
    lost: () => lostIds.splice(0),
    release(id) {
      unhold(id);
    },
    async forget(ids, fields) {
      if (ids.length === 0) return;
      const args = ids.flatMap((id, i) => [id, fields[i] ?? '']);
      await link.run(`forget ${ids.length} jobs`, (c) =>
        c.eval(FORGET, 3, k.jobs, k.meta, k.idem, ...args),
      );
      for (const id of ids) revs.delete(id);
    },
    async listen(on) {
      const sub = link.duplicate();
      subscriber = sub;
      let ready = 0;
      sub.on('ready', () => {
        if (++ready > 1) on.resync(); // changes were missed while it was away
      });
      sub.on('messageBuffer', (_channel: Buffer, message: Buffer) => {
        const space = message.subarray(0, 20).indexOf(0x20);
        const rev = Number(message.subarray(0, Math.max(space, 0)).toString('latin1'));
        const end = message.subarray(space + 1, space + 66).indexOf(0x20) + space + 1;
        if (space <= 0 || !Number.isSafeInteger(rev) || end <= space) {
          o.warn('jobs: a change message without a rev and a relay: skipped');
          return;
        }
        // This relay's own changes are in its tables already; an echo may come after a newer one.
        if (message.subarray(space + 1, end).toString('latin1') === relayId) return;
        const job = parse('a change message', new Uint8Array(message.subarray(end + 1)));
        if (job && seen(job.id, rev)) on.change(job);
      });
      await link.run("hear other relays' job changes", async () => {
        await sub.connect();
        await sub.subscribe(k.changed);
      });
    },
    async close() {
      closed = true;
      clearInterval(timer);
      subscriber?.disconnect();
    },
  };
}
