/**
 * `brume token`: where a data directory keeps the relay's admin token, or, with --redis, the
 * token the relays of a cluster share in Redis (relay/cluster/admin.ts). The token is shown only
 * when asked for (--reveal): a terminal's scrollback, a screen share or a CI log keep what is
 * printed. --rotate makes a new one: a single relay takes it when restarted, a cluster's relays
 * at once.
 */
import { rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { loadAdmin } from '../admin';
import { readSharedToken, rotateSharedToken } from '../cluster/admin';
import { openRedis } from '../cluster/redis';
import { type Invocation, noPositionals } from './args';

export async function token({ positionals, values, flag }: Invocation): Promise<number> {
  noPositionals(positionals);
  // --data named on the command line wins over a BRUME_REDIS set in the environment.
  const redis = flag('redis') ?? (flag('data') === undefined ? process.env.BRUME_REDIS : undefined);
  if (redis !== undefined) return shared(redis, values);
  const data = resolve(flag('data') ?? process.env.BRUME_DATA ?? '.brume');
  const file = join(data, 'admin-token');
  if (values.rotate) await rm(file, { force: true });
  // Reads the token, or makes one (and the directory, 0700) as a first start would.
  const admin = await loadAdmin(data);
  if (values.reveal) {
    console.log(admin.token);
  } else {
    console.log(`the admin token ${admin.created ? 'was made and saved' : 'is'} in ${file}`);
    console.log(`print it with: brume token --data ${data} --reveal`);
  }
  if (values.rotate) console.error('new token written; restart the relay to use it');
  return 0;
}

/** The cluster's token in Redis: read (made if none, as a first relay would), or rotated. */
async function shared(url: string, values: Record<string, unknown>): Promise<number> {
  const redis = await openRedis(url, { connectTimeoutMs: 5000 });
  try {
    const token = values.rotate
      ? await rotateSharedToken(redis)
      : (await readSharedToken(redis, true)).token!;
    if (values.reveal) console.log(token);
    else
      console.log(`the admin token is kept in Redis at ${redis.location}, shared by the cluster`);
    if (!values.reveal)
      console.log(`print it with: brume token --redis ${redis.location} --reveal`);
    if (values.rotate) console.error('new token written; every relay of the cluster uses it now');
    return 0;
  } finally {
    await redis.close();
  }
}
