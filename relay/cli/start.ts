/**
 * `brume start`: the relay's options from flags and environment, then the relay itself, closed
 * on SIGINT or SIGTERM.
 */
import { readdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { HubLimits } from '../limits';
import type { LogLevel } from '../log';
import { createRelay, type RelayOptions } from '../server';
import { type Flag, fraction, integer, logLevel, origin } from './args';

/** The options `start` runs with, from its flags (and env); `packageRoot` holds the builds. */
export function startOptions(
  values: Record<string, unknown>,
  flag: Flag,
  packageRoot: string,
): StartOptions {
  return {
    port: integer('--port', flag('port') ?? process.env.BRUME_PORT ?? '8787', 0, 65535),
    host: flag('host') ?? process.env.BRUME_HOST ?? '127.0.0.1',
    data: resolve(flag('data') ?? process.env.BRUME_DATA ?? '.brume'),
    // Build outputs belong to this package, so their defaults do not depend on the cwd.
    web: flag('web') ? resolve(flag('web')!) : join(packageRoot, 'dist/web'),
    apps: flag('apps') ? resolve(flag('apps')!) : join(packageRoot, 'dist/apps'),
    bodyLimit: integer('--max-bundle-mib', flag('max-bundle-mib') ?? '256', 1, 4096) * 2 ** 20,
    maxSignalBytes:
      integer(
        '--max-signal-kib',
        flag('max-signal-kib') ?? process.env.BRUME_MAX_SIGNAL_KIB ?? '64',
        1,
        16_384,
      ) * 1024,
    origins: [
      ...((values.origin as string[] | undefined) ?? []),
      ...(process.env.BRUME_ORIGINS?.split(',').filter(Boolean) ?? []),
    ].map(origin),
    cloud: !values['no-cloud'],
    logLevel: logLevel('--log-level', flag('log-level') ?? process.env.BRUME_LOG_LEVEL ?? 'info'),
    context: {
      catchUpBytes:
        integer('--context-catchup-kib', flag('context-catchup-kib') ?? '4096', 16, 12288) * 1024,
      compactFloorBytes:
        integer('--context-compact-mib', flag('context-compact-mib') ?? '1', 0, 65536) * 2 ** 20,
      maxAgreements: integer('--context-agreements', flag('context-agreements') ?? '10000', 0, 1e7),
    },
    logicCaps: {
      timeoutMs: integer('--logic-timeout-ms', flag('logic-timeout-ms') ?? '10000', 1, 600_000),
      memoryMiB: integer('--logic-memory-mib', flag('logic-memory-mib') ?? '256', 1, 4096),
      heapMiB: integer('--logic-heap-mib', flag('logic-heap-mib') ?? '64', 16, 4096),
    },
    allowedHosts: [
      ...((values['allow-host'] as string[] | undefined) ?? []),
      ...(process.env.BRUME_ALLOWED_HOSTS?.split(',').filter(Boolean) ?? []),
    ],
    callRate: integer(
      '--call-rate',
      flag('call-rate') ?? process.env.BRUME_CALL_RATE ?? '600',
      1,
      1_000_000,
    ),
    anonymousCalls: !values['no-anonymous-calls'] && process.env.BRUME_ANONYMOUS_CALLS !== 'off',
    ...hubLimits(flag),
    verifyFraction: fraction(
      '--verify-fraction',
      flag('verify-fraction') ?? process.env.BRUME_VERIFY_FRACTION ?? '0',
    ),
    maxQuarantined: integer('--max-quarantined', flag('max-quarantined') ?? '1000', 1, 1e6),
    // At most the heartbeat period (2000 ms), which `start` does not change.
    leaseMs: integer(
      '--lease-ms',
      flag('lease-ms') ?? process.env.BRUME_LEASE_MS ?? '2000',
      0,
      2000,
    ),
  };
}

export interface StartOptions {
  port: number;
  host: string;
  data: string;
  web: string;
  apps: string;
  bodyLimit: number;
  maxSignalBytes: number;
  origins: string[];
  cloud: boolean;
  logLevel: LogLevel;
  context: NonNullable<RelayOptions['context']>;
  logicCaps: { timeoutMs: number; memoryMiB: number; heapMiB: number };
  allowedHosts: string[];
  callRate: number;
  anonymousCalls: boolean;
  frameRate?: number;
  limits: Partial<HubLimits>;
  verifyFraction: number;
  maxQuarantined: number;
  leaseMs: number;
}

/** The hub's bounds from `start`'s flags (and env): only those given, the rest default. */
function hubLimits(flag: Flag) {
  const given = (name: string, env?: string) => flag(name) ?? (env && process.env[env]);
  const n = (name: string, min: number, max: number, env?: string) => {
    const text = given(name, env);
    return text === undefined || text === '' ? undefined : integer(`--${name}`, text, min, max);
  };
  const mib = (name: string) => {
    const v = n(name, 1, 65536);
    return v === undefined ? undefined : v * 2 ** 20;
  };
  const limits: Partial<HubLimits> = {
    callsPerNode: n('max-calls-per-node', 1, 1_000_000),
    callsInFlight: n('max-calls', 1, 10_000_000),
    callBytes: mib('max-call-mib'),
    nodeBufferedBytes: mib('max-node-buffer-mib'),
    joinTimeoutMs: n('join-timeout-ms', 100, 3_600_000),
    connsPerAddress: n('max-conns-per-address', 1, 1_000_000, 'BRUME_MAX_CONNS_PER_ADDRESS'),
    conns: n('max-conns', 1, 10_000_000, 'BRUME_MAX_CONNS'),
  };
  for (const k of Object.keys(limits) as (keyof HubLimits)[])
    if (limits[k] === undefined) delete limits[k];
  const frameRate = n('frame-rate', 1, 1_000_000);
  return { limits, ...(frameRate !== undefined && { frameRate }) };
}

export async function start(o: StartOptions): Promise<number> {
  const seeds = (await readdir(o.apps).catch(() => []))
    .filter((f) => f.endsWith('.brume'))
    .sort()
    .map((f) => join(o.apps, f));
  const relay = await createRelay({
    host: o.host,
    port: o.port,
    dataDir: o.data,
    webRoot: o.web,
    appsToSeed: seeds,
    bodyLimit: o.bodyLimit,
    maxSignalBytes: o.maxSignalBytes,
    origins: o.origins,
    cloudNode: o.cloud,
    log: { level: o.logLevel },
    context: o.context,
    logicCaps: o.logicCaps,
    allowedHosts: o.allowedHosts,
    anonymousCalls: o.anonymousCalls,
    anonymousCallLimit: { max: o.callRate, windowMs: 60_000 },
    limits: o.limits,
    ...(o.frameRate !== undefined && { frameRate: o.frameRate }),
    verifyFraction: o.verifyFraction,
    maxQuarantined: o.maxQuarantined,
    leaseMs: o.leaseMs,
  });
  const { log } = relay;
  log.info(
    { url: relay.url },
    `Brume relay listening on ${relay.url} — open it in a browser to join`,
  );
  // Never the token itself: logs are kept, shipped and read by others (brume token prints it).
  const tokenFile = join(o.data, 'admin-token');
  log.info(
    { file: tokenFile },
    `admin token: ${relay.admin.created ? 'made and saved in' : 'in'} ${tokenFile} (brume token --data ${o.data} prints it)`,
  );
  log.info({ data: relay.store.location }, `data: ${relay.store.location}`);

  return new Promise<number>((done) => {
    let stopping = false;
    const stop = (signal: NodeJS.Signals) => {
      if (stopping) {
        log.error({ signal }, `${signal} again: exiting without waiting`);
        process.exit(1);
      }
      stopping = true;
      log.info({ signal }, `${signal}: closing (requests in flight finish first)`);
      relay.close().then(
        () => done(0),
        (e: unknown) => {
          log.error(`error while closing: ${(e as Error).message}`);
          done(1);
        },
      );
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
}
