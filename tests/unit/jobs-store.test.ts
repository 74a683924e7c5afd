// The job log and the parts of a job that need no relay: ids that sort by time, the queue order,
// the state machine (a job succeeds at most once), and the log on real files — records durable
// and read back, a torn tail cut off, compaction keeping only live records, forgotten jobs gone.
import { appendFile, mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { isJobId, jobIds } from '../../relay/jobs/ids';
import { before, moveTo } from '../../relay/jobs/job';
import { openJobLog, readJobLog } from '../../relay/jobs/store';
import { job } from '../store-contracts';

const dirs: string[] = [];
afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});
const tempDir = async () => {
  const d = await mkdtemp(join(tmpdir(), 'brume-jobs-'));
  dirs.push(d);
  return d;
};

describe('job ids', () => {
  it('are fixed-width and sort in the order they were made, even within one millisecond and when the clock goes back', () => {
    let t = 1_700_000_000_000;
    const clock = [t, t, t, t - 5, t + 1];
    const ids = jobIds(() => clock.shift() ?? ++t);
    const made = Array.from({ length: 5000 }, () => ids.next());
    for (const id of made) expect(isJobId(id)).toBe(true);
    expect([...made].sort()).toEqual(made);
    expect(new Set(made).size).toBe(made.length);
  });

  it('made after a restart sort after the ones kept, whatever the clock says', () => {
    const first = jobIds(() => 2_000_000_000_000).next();
    const later = jobIds(() => 1_000_000_000_000);
    later.after(first);
    expect(later.next() > first).toBe(true);
  });
});

describe('job order and states', () => {
  it('orders by priority (higher first), then deadline (sooner first, none last), then id', () => {
    const a = job('a'.repeat(24), { priority: 1 });
    const b = job('b'.repeat(24), { deadline: 10 });
    const c = job('c'.repeat(24), { deadline: 5 });
    const d = job('d'.repeat(24));
    const e = job('0'.repeat(24));
    expect([d, e, c, b, a].sort(before).map((j) => j.id[0])).toEqual(['a', 'c', 'b', '0', 'd']);
  });

  it('succeeds at most once: nothing moves a finished job, and its input is dropped', () => {
    const running = moveTo(job('a'.repeat(24)), 'running', { attempts: 1 });
    const done = moveTo(running, 'succeeded', { result: 42 });
    expect(done.input).toBeUndefined();
    expect(done.finished).toBeTypeOf('number');
    for (const to of ['succeeded', 'queued', 'running', 'failed', 'cancelled'] as const)
      expect(() => moveTo(done, to, { result: 7 })).toThrow(/E_CONFLICT|cannot become/);
    expect(() => moveTo(job('b'.repeat(24)), 'succeeded')).toThrow(/queued: it cannot become/);
  });
});

describe('the job log', () => {
  it('reads back the last state of each job after a reopen, without the jobs forgotten', async () => {
    const dir = await tempDir();
    const log = await openJobLog(dir, { warn: () => {} });
    expect(await log.load()).toEqual([]);
    const a = job('a'.repeat(24), { input: new Uint8Array([1, 2, 3]) });
    const b = job('b'.repeat(24));
    await Promise.all([log.put(a), log.put(b)]);
    await log.put(moveTo(a, 'running', { attempts: 1, node: 'f'.repeat(32) }));
    await log.forget([b.id]);
    await log.close();

    const again = await openJobLog(dir, { warn: () => {} });
    const kept = await again.load();
    expect(kept.map((j) => [j.id, j.state])).toEqual([[a.id, 'running']]);
    expect(kept[0]!.input).toEqual(new Uint8Array([1, 2, 3]));
    await again.close();
  });

  it('cuts a torn tail (a crash mid-append) and keeps every record before it', async () => {
    const dir = await tempDir();
    const log = await openJobLog(dir, { warn: () => {} });
    await log.put(job('a'.repeat(24)));
    await log.close();
    const path = join(dir, 'jobs.log');
    const good = (await stat(path)).size;
    await appendFile(path, Buffer.from([0, 0, 1, 0, 9, 9])); // a record announced, never written
    const warnings: string[] = [];
    const again = await openJobLog(dir, { warn: (m) => warnings.push(m) });
    expect((await again.load()).map((j) => j.id)).toEqual(['a'.repeat(24)]);
    expect(warnings.join()).toMatch(/incomplete record/);
    expect((await stat(path)).size).toBe(good);
    await again.put(job('b'.repeat(24)));
    await again.close();
    expect((await readJobLog(dir)).map((r) => r.id)).toEqual(['a'.repeat(24), 'b'.repeat(24)]);
  });

  it('compacts once it is over twice what is live: the file shrinks and the live jobs stay', async () => {
    const dir = await tempDir();
    const log = await openJobLog(dir, { warn: () => {}, compactFloorBytes: 4096 });
    let a = job('a'.repeat(24), { input: 'x'.repeat(1000) });
    await log.put(a);
    for (let i = 0; i < 50; i++) {
      a = { ...a, reasons: [`change ${i}`] };
      await log.put(a);
    }
    const { logBytes, liveBytes } = log.size();
    expect(logBytes).toBeLessThan(2 * liveBytes + 4096 + 2000);
    await log.close();
    const bytes = await readFile(join(dir, 'jobs.log'));
    expect(bytes.length).toBeLessThan(51 * 1000);
    const again = await openJobLog(dir, { warn: () => {} });
    expect((await again.load())[0]!.reasons).toEqual(['change 49']);
    await again.close();
  });
});
