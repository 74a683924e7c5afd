// A whole cluster as real processes (issue 17): one redis-server (AOF, fsync always), N relays
// started by `brume start --redis <url> --blob-dir <shared dir>`, each on its own port and data
// directory, and HAProxy in front of them. Tests talk to `url` (the balancer) as users would, and
// kill or restart a relay (same port, same data directory) to see the others carry on.
import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './free-port';
import { type HaproxyProcess, startHaproxy } from './haproxy-process';
import { type RedisProcess, startRedis } from './redis-process';
import { type RelayProcess, startRelay } from './relay-process';

export interface ClusterProcess {
  /** The balancer's URL: where users and nodes go. */
  url: string;
  /** The admin token every relay uses (given to each as BRUME_ADMIN_TOKEN). */
  token: string;
  redis: RedisProcess;
  balancer: HaproxyProcess;
  /** The relays, by index; `relays[i]` is replaced by `restart(i)`. HAProxy names them r0, r1... */
  relays: RelayProcess[];
  /** The directory every relay keeps blob bytes in (`--blob-dir`). */
  blobDir: string;
  /** HAProxy's name for relay `i`. */
  name(i: number): string;
  /** SIGKILL relay `i` (a crash), and waits for it to exit. */
  kill(i: number): Promise<void>;
  /** Starts relay `i` again on its port and data directory; resolves once HAProxy sees it up. */
  restart(i: number): Promise<RelayProcess>;
  /** Stops everything and removes the directories. */
  stop(): Promise<void>;
}

/**
 * Starts Redis, `relays` relays (default 3) and the balancer; resolves once HAProxy sees every
 * relay up. `args` and `env` go to every relay (e.g. `['--no-cloud']`); without `--no-cloud` in
 * them each relay runs its cloud node, which takes a while on this machine. Every relay allows
 * the balancer's origin (`--origin`), so tabs opened at `url` join the fabric.
 */
export async function startCluster(
  options: { relays?: number; args?: string[]; env?: Record<string, string> } = {},
): Promise<ClusterProcess> {
  const count = options.relays ?? 3;
  const token = randomBytes(24).toString('base64url');
  const blobDir = mkdtempSync(join(tmpdir(), 'brume-cluster-blobs-'));
  const dataDirs = Array.from({ length: count }, () =>
    mkdtempSync(join(tmpdir(), 'brume-cluster-relay-')),
  );
  // The balancer's port is chosen first: pages served through it open node sockets from its
  // origin, which every relay is told to allow (`--origin`).
  const balancerPort = await freePort();
  const balancerUrl = `http://127.0.0.1:${balancerPort}`;
  const redis = await startRedis();
  const relays: RelayProcess[] = [];
  let balancer: HaproxyProcess | undefined;
  const launch = (i: number, port?: number) =>
    startRelay({
      dataDir: dataDirs[i]!,
      token,
      ...(port !== undefined && { port }),
      ...(options.env && { env: options.env }),
      args: [
        '--redis',
        redis.url,
        '--blob-dir',
        blobDir,
        // Behind the balancer the Host header names HAProxy's port, not the relay's.
        '--allow-host',
        '127.0.0.1',
        '--origin',
        balancerUrl,
        ...(options.args ?? []),
      ],
    });
  const name = (i: number) => `r${i}`;
  const stop = async () => {
    await balancer?.stop();
    await Promise.all(relays.map((r) => r.stop()));
    await redis.close();
    await Promise.all([blobDir, ...dataDirs].map((d) => rm(d, { recursive: true, force: true })));
  };
  try {
    // One after the other: relays starting together on two cores each take longer than in turn.
    for (let i = 0; i < count; i++) relays.push(await launch(i));
    balancer = await startHaproxy({
      port: balancerPort,
      backends: relays.map((r, i) => ({ name: name(i), host: '127.0.0.1', port: r.port })),
    });
    for (let i = 0; i < count; i++) await balancer.untilUp(name(i));
  } catch (e) {
    await stop();
    throw e;
  }
  const lb = balancer;
  return {
    url: lb.url,
    token,
    redis,
    balancer: lb,
    relays,
    blobDir,
    name,
    kill: (i) => relays[i]!.kill(),
    async restart(i) {
      const old = relays[i]!;
      await old.kill();
      relays[i] = await launch(i, old.port);
      await lb.untilUp(name(i));
      return relays[i]!;
    },
    stop,
  };
}
