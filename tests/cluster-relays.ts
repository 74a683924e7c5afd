// The start-up the cluster test files repeat: relays in this process on real ports sharing one
// real redis-server, either as a pair on a `redis` URL and one blob directory (the wiring the CLI
// does), or each on a hub cluster over a Redis link of the test's own (prefix, options).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll } from 'vitest';
import { type RedisClusterOptions, redisCluster } from '../relay/cluster/nodes';
import type { RedisLink } from '../relay/cluster/redis';
import type { HubCluster } from '../relay/hub/cluster';
import { hostileApp } from './apps';
import { type RedisProcess, startRedis } from './redis-process';
import { inProcessRelay } from './relay-process';

/** A relay in this process, as `inProcessRelay` starts it. */
export type Relay = Awaited<ReturnType<typeof inProcessRelay>>;
type RelayOptions = Parameters<typeof inProcessRelay>[0];

/** POSTs `input` to the hostile app's `echo` at `r` (the call the cluster tests place). */
export const echoCall = (r: Relay, input: unknown) =>
  fetch(`${r.relay.url}/api/call/hostile/echo`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ input }),
  });

/** Two relays on one redis-server and one blob directory: set once the file's `beforeAll` ran. */
export interface RelayPair {
  redis: RedisProcess;
  blobDir: string;
  a: Relay;
  b: Relay;
}

/**
 * Registers the file's hooks (call it at the top level or in a `describe`): a redis-server, a
 * blob directory named `brume-<tag>-`, relays A (with `shared` and `onlyA`) and B (`shared`),
 * both hubs started; closed after the tests, B first (after the file's own `afterAll` hooks
 * registered later: vitest runs them last registered first).
 */
export function useRelayPair(
  tag: string,
  shared: RelayOptions = {},
  onlyA: () => Promise<RelayOptions> = async () => ({}),
): RelayPair {
  const pair = {} as RelayPair;
  beforeAll(async () => {
    pair.redis = await startRedis();
    pair.blobDir = mkdtempSync(join(tmpdir(), `brume-${tag}-`));
    const options = { ...shared, redis: pair.redis.url, blobDir: pair.blobDir };
    pair.a = await inProcessRelay({ ...options, ...(await onlyA()) });
    pair.b = await inProcessRelay(options);
    await pair.a.relay.hub.started;
    await pair.b.relay.hub.started;
  }, 60_000);
  afterAll(async () => {
    await pair.b?.close();
    await pair.a?.close();
    await pair.redis?.close();
    if (pair.blobDir) rmSync(pair.blobDir, { recursive: true, force: true });
  });
  return pair;
}

/** A relay on a hub cluster over its own Redis link, with the hostile app deployed. */
export interface Member {
  server: Relay;
  link: RedisLink;
  cluster: HubCluster;
}

/**
 * Starts a relay whose hub is a Redis cluster on `link` (`cluster` tunes it), serving the hostile
 * app, its hub started; `closers` gets what closes it and then the link.
 */
export async function hubMember(
  link: RedisLink,
  closers: { close(): Promise<void> }[],
  relay: { heartbeatMs: number; callTimeoutMs: number },
  cluster: RedisClusterOptions,
): Promise<Member> {
  const hub = await redisCluster(link, cluster);
  const server = await inProcessRelay({ ...relay, hubCluster: hub, apps: [await hostileApp()] });
  await server.relay.hub.started;
  closers.push({
    close: async () => {
      await server.close();
      await link.close();
    },
  });
  return { server, link, cluster: hub };
}
