// The Redis stores (relay/cluster/) where Redis itself misbehaves, on a real redis-server
// (tests/redis-process.ts): killed with SIGKILL mid-writes and restarted from its append-only
// file, it has every write that was acknowledged; down, every operation fails at once with
// E_UNAVAILABLE naming Redis, and the same objects work again once it is back; garbage written
// under the stores' keys is refused on read with a typed error. Plus the URL's checks, the
// bounds, and a key revoked on one relay no longer found on another.
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { encode } from '../../core/codec';
import {
  InputError,
  InternalError,
  LimitError,
  QuotaError,
  UnavailableError,
} from '../../core/errors';
import { redisJobs } from '../../relay/cluster/jobs';
import { redisKeys } from '../../relay/cluster/keys';
import { openRedis, parseRedisUrl, type RedisLink } from '../../relay/cluster/redis';
import { redisStore } from '../../relay/cluster/store';
import { startRedis } from '../redis-process';
import { useRedis } from '../redis-suite';
import { job, manifest } from '../store-contracts';
import { until } from '../until';

const shared = useRedis();

const { closers } = shared;
async function link(prefix = shared.prefix('t')): Promise<RedisLink> {
  const l = await openRedis(shared.redis.url, { prefix });
  closers.push(() => l.close());
  return l;
}
const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
const jobId = (i: number) => i.toString(36).padStart(24, '0');
const errorOf = (p: Promise<unknown>) =>
  p.then(
    () => undefined,
    (e: unknown) => e,
  );
/** Until the link answers again (it reconnects by itself). */
const back = (l: RedisLink) =>
  until(() => l.run('ping', (c) => c.ping()).catch(() => false), 'the link to answer again');

describe('the Redis URL', () => {
  it('is checked before anything connects, refusals naming `redis` and what is wrong', () => {
    expect(parseRedisUrl('redis://10.0.0.2:6380/3')).toMatchObject({
      host: '10.0.0.2',
      port: 6380,
      db: 3,
      location: 'redis://10.0.0.2:6380/3',
    });
    expect(parseRedisUrl('redis://:s3cret@cache').location).toBe('redis://cache/0');
    for (const [bad, why] of [
      ['http://127.0.0.1:6379', /scheme must be redis/],
      ['redis://127.0.0.1:6379/16', /database must be a number from 0 to 15/],
      ['redis://127.0.0.1:6379/x', /database/],
      ['redis://127.0.0.1:6379/?a=1', /no query/],
      ['not a url', /not a URL/],
      [`redis://${'a'.repeat(3000)}`, /at most 2048/],
      [42, /not a redis:\/\//],
    ] as const) {
      const e = (() => {
        try {
          parseRedisUrl(bad);
        } catch (err) {
          return err;
        }
      })();
      expect(e).toBeInstanceOf(InputError);
      expect((e as Error).message).toMatch(/^redis: /);
      expect((e as Error).message).toMatch(why);
    }
  });

  it('of a Redis nobody serves fails to open with E_UNAVAILABLE naming it', async () => {
    const dead = await startRedis();
    await dead.close();
    const e = await errorOf(openRedis(dead.url));
    expect(e).toBeInstanceOf(UnavailableError);
    expect((e as Error).message).toMatch(
      `Redis at redis://127.0.0.1:${dead.port}/0 is unreachable`,
    );
  });
});

describe('Redis restarting', () => {
  it('loses no acknowledged write when killed with SIGKILL mid-writes and restarted from its AOF', async () => {
    const l = await link();
    const jobs = await redisJobs(l);
    const { apps, blobs } = await redisStore(l);
    const acked: string[] = [];
    const blobAcked: string[] = [];
    const failures: unknown[] = [];
    // Four writers, each writing until a write fails: the kill lands with writes in flight.
    const writer = async (w: number) => {
      for (let i = 0; i < 2000; i++) {
        try {
          if (i % 4 === 3) {
            const bytes = new Uint8Array(randomBytes(2000));
            await blobs.put(sha(bytes), bytes);
            blobAcked.push(sha(bytes));
          } else {
            await jobs.put(job(jobId(w * 10_000 + i), { input: randomBytes(500) }));
            acked.push(jobId(w * 10_000 + i));
          }
        } catch (e) {
          failures.push(e);
          return;
        }
      }
    };
    const writers = Promise.all([0, 1, 2, 3].map(writer));
    await until(() => acked.length >= 40, 'some writes acknowledged', 20_000, 1);
    await shared.redis.kill();
    await writers;
    expect(failures).toHaveLength(4);
    for (const e of failures) expect(e).toBeInstanceOf(UnavailableError);

    await shared.redis.restart();
    await back(l);
    const kept = new Set((await jobs.load()).map((j) => j.id));
    for (const id of acked) expect(kept.has(id), `acknowledged job ${id}`).toBe(true);
    for (const h of blobAcked) expect(await blobs.has(h), `acknowledged blob ${h}`).toBe(true);
    // And it takes writes again, through the same objects.
    await apps.put(await manifest('after', '1.0.0'));
    expect((await apps.current('after'))?.version).toBe('1.0.0');
  });
});

describe('Redis down', () => {
  it('fails every operation at once with E_UNAVAILABLE naming Redis; the same objects work once it is back', async () => {
    const l = await link();
    const { apps, blobs } = await redisStore(l);
    const jobs = await redisJobs(l);
    const keys = await redisKeys(l, () => {});
    closers.push(() => keys.close());
    const made = await keys.create(['call'], 'before');
    await shared.redis.stop();
    await until(() => l.client.status !== 'ready', 'the link to see Redis gone');
    const bytes = new Uint8Array([1, 2, 3]);
    // commandTimeoutMs is 10 s: each of these failing within the test's time did not wait on it.
    for (const op of [
      () => apps.names(),
      async () => apps.put(await manifest('down', '1.0.0')),
      () => blobs.put(sha(bytes), bytes),
      () => blobs.get(sha(bytes)),
      () => jobs.put(job(jobId(1))),
      () => jobs.load(),
      () => keys.create(['call'], 'during'),
      () => keys.revoke(made.key.id),
      () => redisKeys(l, () => {}), // a second relay's keys cannot open either
    ]) {
      const e = await errorOf(op());
      expect(e).toBeInstanceOf(UnavailableError);
      expect((e as Error).message).toMatch(
        /^Redis at redis:\/\/127\.0\.0\.1:\d+\/0 is unreachable: (its connection closed|.*ECONNREFUSED)/,
      );
    }
    expect(keys.find(made.secret)?.id).toBe(made.key.id); // the copy in memory still answers

    await shared.redis.restart();
    await back(l);
    await apps.put(await manifest('down', '1.0.0'));
    await jobs.put(job(jobId(1)));
    expect((await jobs.load()).map((j) => j.id)).toEqual([jobId(1)]);
    expect(await keys.revoke(made.key.id)).toBe(true);
    expect(keys.list()).toEqual([]);
  });
});

describe('Redis hung', () => {
  it('fails a command unanswered within commandTimeoutMs with E_UNAVAILABLE, and answers again once it runs', async () => {
    // A bound long enough for a healthy command on a loaded machine; only the frozen one meets it.
    const prefix = shared.prefix('t');
    const l = await openRedis(shared.redis.url, { prefix, commandTimeoutMs: 2000 });
    closers.push(() => l.close());
    const jobs = await redisJobs(l);
    shared.redis.pause();
    try {
      const e = await errorOf(jobs.put(job(jobId(1))));
      expect(e).toBeInstanceOf(UnavailableError);
      expect((e as Error).message).toMatch(/is unreachable: Command timed out/);
    } finally {
      shared.redis.resume();
    }
    // Not acknowledged, yet it may have been applied: a put is idempotent, written again. Redis
    // first works through what waited while it was frozen: the same client, with no tight bound.
    const after = await openRedis(shared.redis.url, { prefix });
    closers.push(() => after.close());
    const again = await redisJobs(after);
    await again.put(job(jobId(1), { priority: 3 }));
    expect((await again.load()).map((j) => [j.id, j.priority])).toEqual([[jobId(1), 3]]);
    // The first link answers again too once Redis runs.
    await until(
      () =>
        jobs.put(job(jobId(1), { priority: 3 })).then(
          () => true,
          () => false,
        ),
      'the first link back',
    );
  });
});

describe('garbage under the keys', () => {
  it('is refused on read with E_INTERNAL naming the key, and the process runs on', async () => {
    const l = await link();
    const c = l.client;
    const { apps, blobs } = await redisStore(l);
    const jobs = await redisJobs(l);
    const good = await manifest('greet', '1.0.0');
    await apps.put(good);

    await c.hset(l.key('apps'), 'greet', '{"not": "a manifest"');
    await expect(apps.current('greet')).rejects.toThrow(
      /stored manifest .*apps greet is unreadable/,
    );
    await c.hset(l.key('app', 'greet'), '1.0.0', JSON.stringify(await manifest('other', '1.0.0')));
    await expect(apps.get('greet', '1.0.0')).rejects.toThrow(/is other@1\.0\.0, not the one/);
    await c.hset(l.key('app', 'greet'), '2.0.0', JSON.stringify(good));
    await expect(apps.get('greet', '2.0.0')).rejects.toBeInstanceOf(InternalError);

    const bytes = new Uint8Array(randomBytes(32));
    await c.set(l.key('blob', sha(bytes)), 'not those bytes');
    const damaged = await errorOf(blobs.get(sha(bytes)));
    expect(damaged).toBeInstanceOf(InternalError);
    expect((damaged as Error).message).toMatch(/stored blob .*blob:[0-9a-f]{64} is damaged/);

    await c.hset(l.key('jobs'), jobId(7), Buffer.from([0xc1, 0xff]));
    await expect(jobs.load()).rejects.toThrow(/stored job .*jobs 0+7 is unreadable/);
    await c.hset(l.key('jobs'), jobId(7), Buffer.from(encode(job(jobId(8)))));
    await expect(jobs.load()).rejects.toThrow(/is not the job stored there/);

    // A key of the wrong type: Redis refuses the command, typed.
    await c.del(l.key('apps'));
    await c.set(l.key('apps'), 'a string');
    const wrong = await errorOf(apps.names());
    expect(wrong).toBeInstanceOf(InternalError);
    expect((wrong as Error).message).toMatch(/Redis refused list apps: WRONGTYPE/);
    await c.set(l.key('blobs', 'bytes'), 'many');
    const fresh = new Uint8Array(randomBytes(32));
    await expect(blobs.put(sha(fresh), fresh)).rejects.toThrow(/blobs:bytes is not a number/);

    expect(await c.ping()).toBe('PONG');
  });

  it('under the keys hash leaves that entry out with a warning: it grants nothing, the others still work', async () => {
    const l = await link();
    const keys = await redisKeys(l, () => {});
    closers.push(() => keys.close());
    const good = await keys.create(['call'], 'good');
    const forged = { ...good.key, id: 'ffffffffffffffff', scopes: ['root'] };
    await l.client.hset(l.key('keys'), forged.id, JSON.stringify(forged));
    await l.client.hset(l.key('keys'), 'x', '[1, 2');
    const warnings: string[] = [];
    const other = await redisKeys(await link(l.prefix), (m) => warnings.push(m));
    closers.push(() => other.close());
    expect(other.list().map((k) => k.id)).toEqual([good.key.id]);
    expect(other.find(good.secret)?.id).toBe(good.key.id);
    expect(warnings.join('\n')).toMatch(
      /ffffffffffffffff is not a key \(scope "root" is not one of/,
    );
    expect(warnings.join('\n')).toMatch(/keys x is not a key/);
  });
});

describe('two relays on one Redis', () => {
  it('see a key made on one found on the other, and a key revoked on one refused on the other', async () => {
    const a = await redisKeys(await link('shared-keys:'), () => {});
    const b = await redisKeys(await link('shared-keys:'), () => {});
    closers.push(
      () => a.close(),
      () => b.close(),
    );
    const { key, secret } = await a.create(['admin'], 'ops');
    await until(() => b.find(secret), 'relay b to know the new key');
    expect(await a.revoke(key.id)).toBe(true);
    await until(() => b.find(secret) === undefined, 'relay b to forget the revoked key');
    expect(b.list()).toEqual([]);
  });

  it('catch up on a change made while the subscription was cut (re-read when it reconnects)', async () => {
    const aLink = await link('cut-keys:');
    const a = await redisKeys(aLink, () => {});
    const b = await redisKeys(await link('cut-keys:'), () => {});
    closers.push(
      () => a.close(),
      () => b.close(),
    );
    // Every subscriber connection is cut; the create is published while b's reconnects.
    await aLink.run('cut', (c) => c.client('KILL', 'TYPE', 'pubsub'));
    const made = await a.create(['call'], 'while cut');
    await until(() => b.find(made.secret), 'relay b to know the key made while it was cut off');
  });

  it('hear each other again after Redis restarts (the subscription comes back and re-reads)', async () => {
    const a = await redisKeys(await link('restart-keys:'), () => {});
    const bLink = await link('restart-keys:');
    const b = await redisKeys(bLink, () => {});
    closers.push(
      () => a.close(),
      () => b.close(),
    );
    const before = await a.create(['call'], 'before');
    await until(() => b.find(before.secret), 'relay b to know the first key');
    await shared.redis.kill();
    await shared.redis.restart();
    await back(bLink);
    const after = await until(
      () => a.create(['call'], 'after').catch(() => undefined),
      'relay a to create a key once Redis is back',
    );
    await until(() => b.find(after.secret), 'relay b to hear of the key made after the restart');
    expect(await a.revoke(before.key.id)).toBe(true);
    await until(() => b.find(before.secret) === undefined, 'relay b to forget the revoked key');
  });
});

describe('databases', () => {
  it('keep apart what the same prefix holds in db 0 and db 1', async () => {
    const zero = await redisStore(await link('db-test:'));
    const oneLink = await openRedis(`${shared.redis.url}/1`, { prefix: 'db-test:' });
    closers.push(() => oneLink.close());
    const one = await redisStore(oneLink);
    await one.apps.put(await manifest('only-one', '1.0.0'));
    expect(await one.apps.names()).toEqual(['only-one']);
    expect(await zero.apps.names()).toEqual([]);
  });
});

describe('bounds', () => {
  it('keeps small blobs in Redis up to its byte bound (E_QUOTA past it) and refuses large ones without a shared directory (E_LIMIT)', async () => {
    const l = await link();
    const { blobs } = await redisStore(l, { smallBlobBytes: 1000, maxRedisBlobBytes: 2500 });
    const one = new Uint8Array(randomBytes(1000));
    const two = new Uint8Array(randomBytes(1000));
    const three = new Uint8Array(randomBytes(1000));
    await blobs.put(sha(one), one);
    await blobs.put(sha(two), two);
    await blobs.put(sha(one), one); // present: counts nothing again
    const over = await errorOf(blobs.put(sha(three), three));
    expect(over).toBeInstanceOf(QuotaError);
    expect((over as Error).message).toMatch(/2500 bytes of blobs at most/);
    expect(await blobs.has(sha(three))).toBe(false);
    const big = new Uint8Array(randomBytes(1001));
    const limit = await errorOf(blobs.put(sha(big), big));
    expect(limit).toBeInstanceOf(LimitError);
    expect((limit as Error).message).toMatch(
      /over the 1000 bytes kept in Redis, and no shared blob directory/,
    );
  });

  it('puts large blobs in the shared directory, where another relay reads them', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'brume-shared-blobs-'));
    closers.push(async () => rmSync(dir, { recursive: true, force: true }));
    const a = await redisStore(await link('shared-blobs:'), { smallBlobBytes: 100, blobDir: dir });
    const b = await redisStore(await link('shared-blobs:'), { smallBlobBytes: 100, blobDir: dir });
    const big = new Uint8Array(randomBytes(5000));
    await a.blobs.put(sha(big), big);
    expect(Buffer.from((await b.blobs.get(sha(big)))!)).toEqual(Buffer.from(big));
  });

  it('hold against two relays creating keys and jobs at once: exactly the bound is kept', async () => {
    const [la, lb] = [await link('race:'), await link('race:')];
    const a = await redisKeys(la, () => {}, { keys: 3 });
    const b = await redisKeys(lb, () => {}, { keys: 3 });
    closers.push(
      () => a.close(),
      () => b.close(),
    );
    const made = await Promise.allSettled(
      Array.from({ length: 10 }, (_, i) => (i % 2 ? a : b).create(['call'], `k${i}`)),
    );
    expect(made.filter((r) => r.status === 'fulfilled')).toHaveLength(3);
    for (const r of made.filter((r) => r.status === 'rejected'))
      expect((r as PromiseRejectedResult).reason).toBeInstanceOf(LimitError);
    expect(await la.client.hlen(la.key('keys'))).toBe(3);

    const [ja, jb] = [await redisJobs(la, { maxJobs: 5 }), await redisJobs(lb, { maxJobs: 5 })];
    const put = await Promise.allSettled(
      Array.from({ length: 12 }, (_, i) => (i % 2 ? ja : jb).put(job(jobId(i)))),
    );
    expect(put.filter((r) => r.status === 'fulfilled')).toHaveLength(5);
    expect(await ja.load()).toHaveLength(5);
  });

  it('refuses a new job past maxJobs (E_LIMIT) but still takes changes to the jobs it holds', async () => {
    const jobs = await redisJobs(await link(), { maxJobs: 2 });
    await jobs.put(job(jobId(1)));
    await jobs.put(job(jobId(2)));
    const over = await errorOf(jobs.put(job(jobId(3))));
    expect(over).toBeInstanceOf(LimitError);
    expect((over as Error).message).toMatch(/2 jobs already \(maxJobs\)/);
    await jobs.put(job(jobId(2), { priority: 5 }));
    expect((await jobs.load()).map((j) => j.id).sort()).toEqual([jobId(1), jobId(2)]);
  });
});
