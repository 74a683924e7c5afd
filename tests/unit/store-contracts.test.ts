// The relay's store interfaces, one body of tests each (tests/store-contracts.ts), run against
// the file implementations and the Redis ones (relay/cluster/) on a real redis-server
// (tests/redis-process.ts). A Redis "reopen" is a second connection: another relay, or this one
// restarted.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe } from 'vitest';
import { redisJobs } from '../../relay/cluster/jobs';
import { redisKeys } from '../../relay/cluster/keys';
import { openRedis, type RedisLink } from '../../relay/cluster/redis';
import { redisStore } from '../../relay/cluster/store';
import { openJobLog } from '../../relay/jobs/store';
import { openKeys } from '../../relay/keys';
import { createStore } from '../../relay/store';
import { useRedis } from '../redis-suite';
import {
  appStoreContract,
  blobStoreContract,
  jobStoreContract,
  keyStoreContract,
} from '../store-contracts';

const shared = useRedis();

const { closers } = shared;
/** A fresh directory, removed after the test once what was opened in it is closed. */
const tempDir = () => {
  const d = mkdtempSync(join(tmpdir(), 'brume-contract-'));
  closers.push(async () => rmSync(d, { recursive: true, force: true }));
  return d;
};
const quiet = () => {};

/** A file-backed part in a fresh directory; reopen opens the same directory again. */
function onFiles<T>(open: (dir: string) => Promise<T>) {
  let dir = '';
  return {
    open() {
      dir = tempDir();
      return open(dir);
    },
    reopen: () => open(dir),
  };
}

/** A Redis-backed part under a fresh key prefix; reopen is a second connection to the same keys. */
function onRedis<T>(open: (link: RedisLink, dir: string) => Promise<T>) {
  let prefix = '';
  let dir = '';
  const connect = async () => {
    const link = await openRedis(shared.redis.url, { prefix });
    closers.push(() => link.close());
    return link;
  };
  return {
    async open() {
      prefix = shared.prefix('contract');
      dir = tempDir();
      return open(await connect(), dir);
    },
    reopen: async () => open(await connect(), dir),
  };
}

describe('AppStore', () => {
  describe('in files', () => appStoreContract(onFiles(async (d) => (await createStore(d)).apps)));
  describe('in Redis', () => appStoreContract(onRedis(async (l) => (await redisStore(l)).apps)));
});

describe('BlobStore', () => {
  describe('in files', () =>
    blobStoreContract(
      onFiles(async (d) => (await createStore(d)).blobs),
      8192,
    ));
  // Blobs over 4 KiB go to the shared directory: the large one of the contract is one of them.
  describe('in Redis and a shared directory', () =>
    blobStoreContract(
      onRedis(async (l, d) => (await redisStore(l, { smallBlobBytes: 4096, blobDir: d })).blobs),
      8192,
    ));
});

describe('KeyStore', () => {
  describe('in a file', () => {
    let dir = '';
    keyStoreContract({
      open(limit) {
        dir = tempDir();
        return openKeys(dir, quiet, { keys: limit });
      },
      reopen: () => openKeys(dir, quiet),
    });
  });
  describe('in Redis', () => {
    let prefix = '';
    const connect = async (limit?: number) => {
      const link = await openRedis(shared.redis.url, { prefix });
      const keys = await redisKeys(link, quiet, { keys: limit });
      closers.push(async () => {
        await keys.close();
        await link.close();
      });
      return keys;
    };
    keyStoreContract({
      open: (limit) => {
        prefix = shared.prefix('contract');
        return connect(limit);
      },
      reopen: () => connect(),
    });
  });
});

describe('JobStore', () => {
  describe('in a file log', () => jobStoreContract(onFiles((d) => openJobLog(d, { warn: quiet }))));
  describe('in Redis', () => jobStoreContract(onRedis((l) => redisJobs(l))));
});
