// The set-up every test file on one shared redis-server repeats (tests/redis-process.ts): the
// server started before the file's tests and closed after them, what a test opened closed after
// it, and a key prefix of its own for each test so they never see each other's keys.
import { afterAll, afterEach, beforeAll } from 'vitest';
import { type RedisProcess, startRedis } from './redis-process';

export interface RedisSuite {
  /** The file's redis-server: set once its `beforeAll` ran. */
  redis: RedisProcess;
  /** Run after each test, the last added first: connections, directories. */
  closers: (() => Promise<void>)[];
  /** A key prefix no other call in this file got: `<tag><n>:`. */
  prefix(tag: string): string;
}

/** Registers the file's hooks (call it at the top level of a test file) and returns its suite. */
export function useRedis(): RedisSuite {
  let made = 0;
  const suite: RedisSuite = {
    redis: undefined as unknown as RedisProcess,
    closers: [],
    prefix: (tag) => `${tag}${++made}:`,
  };
  beforeAll(async () => {
    suite.redis = await startRedis();
  });
  afterAll(async () => {
    await suite.redis?.close();
  });
  afterEach(async () => {
    for (const close of suite.closers.splice(0).reverse()) await close();
  });
  return suite;
}
