/**
 * `brume start`: the relay's options from its settings (flags, environment, config file), then
 * the relay itself, drained on SIGINT or SIGTERM.
 */

import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { InputError } from '../../core/errors';
import type { LogicCaps } from '../cloud-node';
import type { FederationOptions } from '../federation';
import type { JobLimits } from '../jobs/job';
import type { HubLimits } from '../limits';
import type { LogLevel } from '../log';
import { type BlobLimits, createRelay, type RelayOptions } from '../server';
import type { Config } from './config';

/** The options `start` runs with, from its settings (relay/cli/config.ts), in the relay's units. */
export function startOptions(config: Config): StartOptions {
  const v = config.values as unknown as Values;
  return {
    port: v.port,
    host: v.host,
    data: v.data,
    ...(v.redis !== undefined && { redis: v.redis }),
    ...(v.blobDir !== undefined && { blobDir: v.blobDir }),
    web: v.web,
    apps: v.apps,
    ...(v.adminToken !== undefined && { adminToken: v.adminToken }),
    bodyLimit: v.maxBundleMib * MiB,
    blobs: { maxBytes: v.maxBlobMib * MiB, graceMs: v.blobGraceMs, maxUploads: v.maxUploads },
    maxSignalBytes: v.maxSignalKib * 1024,
    origins: v.origins,
    cloud: v.cloud,
    logLevel: v.logLevel,
    context: {
      catchUpBytes: v.contextCatchupKib * 1024,
      compactFloorBytes: v.contextCompactMib * MiB,
      maxAgreements: v.contextAgreements,
    },
    logicCaps: {
      timeoutMs: v.logicTimeoutMs,
      memoryMiB: v.logicMemoryMib,
      heapMiB: v.logicHeapMib,
      ...(v.logicMaxWorkers > 0 && { maxWorkers: v.logicMaxWorkers }),
      ...(v.workerIdleMs > 0 && { workerIdleMs: v.workerIdleMs }),
    },
    allowedHosts: v.allowedHosts,
    callRate: v.callRate,
    anonymousCalls: v.anonymousCalls,
    frameRate: v.frameRate,
    limits: {
      callsPerNode: v.maxCallsPerNode,
      callsInFlight: v.maxCalls,
      callBytes: v.maxCallMib * MiB,
      nodeBufferedBytes: v.maxNodeBufferMib * MiB,
      joinTimeoutMs: v.joinTimeoutMs,
      connsPerAddress: v.maxConnsPerAddress,
      conns: v.maxConns,
      sessionsPerNode: v.maxSessionsPerNode,
      sessions: v.maxSessions,
      sessionsServed: v.maxSessionsServed,
    },
    verifyFraction: v.verifyFraction,
    maxQuarantined: v.maxQuarantined,
    leaseMs: v.leaseMs,
    drainMs: v.drainMs,
    ...(v.peers.length > 0 && { federation: federation(v) }),
    jobs: {
      maxActive: v.maxJobs,
      maxInputBytes: v.maxJobInputKib * 1024,
      maxAttempts: v.jobAttempts,
      resultBlobBytes: v.jobResultBlobKib * 1024,
      maxKept: v.jobsKept,
      runTimeoutMs: v.jobTimeoutMs,
    },
  };
}

const MiB = 2 ** 20;

/** The peers with their keys, paired in order; InputError when the counts differ. */
function federation(v: Values): FederationOptions {
  if (v.peerKeys.length !== v.peers.length) {
    throw new InputError(
      `peerKeys: one key per peer, in the same order (${v.peers.length} peers, ${v.peerKeys.length} keys; BRUME_PEER_KEYS or the file's "peerKeys")`,
    );
  }
  return { site: v.site, peers: v.peers.map((url, i) => ({ url, key: v.peerKeys[i]! })) };
}

/** The settings' values by key (relay/cli/settings.ts checked each). */
interface Values {
  port: number;
  host: string;
  data: string;
  redis?: string;
  blobDir?: string;
  web: string;
  apps: string;
  adminToken?: string;
  maxBundleMib: number;
  maxBlobMib: number;
  blobGraceMs: number;
  maxUploads: number;
  maxSignalKib: number;
  origins: string[];
  cloud: boolean;
  contextCatchupKib: number;
  contextCompactMib: number;
  contextAgreements: number;
  logicTimeoutMs: number;
  logicMemoryMib: number;
  logicHeapMib: number;
  logicMaxWorkers: number;
  workerIdleMs: number;
  allowedHosts: string[];
  callRate: number;
  anonymousCalls: boolean;
  frameRate: number;
  maxCallsPerNode: number;
  maxSessionsPerNode: number;
  maxSessions: number;
  maxSessionsServed: number;
  maxCalls: number;
  maxCallMib: number;
  maxNodeBufferMib: number;
  joinTimeoutMs: number;
  maxConnsPerAddress: number;
  maxConns: number;
  verifyFraction: number;
  maxQuarantined: number;
  leaseMs: number;
  drainMs: number;
  logLevel: LogLevel;
  maxJobs: number;
  maxJobInputKib: number;
  jobAttempts: number;
  jobResultBlobKib: number;
  jobsKept: number;
  jobTimeoutMs: number;
  site: string;
  peers: string[];
  peerKeys: string[];
}

export interface StartOptions {
  port: number;
  host: string;
  data: string;
  /** The cluster's Redis (relay/cluster/), and the blob directory its relays share. */
  redis?: string;
  blobDir?: string;
  web: string;
  apps: string;
  adminToken?: string;
  bodyLimit: number;
  blobs: BlobLimits;
  maxSignalBytes: number;
  origins: string[];
  cloud: boolean;
  logLevel: LogLevel;
  context: NonNullable<RelayOptions['context']>;
  logicCaps: LogicCaps;
  allowedHosts: string[];
  callRate: number;
  anonymousCalls: boolean;
  frameRate: number;
  limits: HubLimits;
  verifyFraction: number;
  maxQuarantined: number;
  leaseMs: number;
  /** On SIGTERM or SIGINT: how long calls in flight may finish (relay.drain). */
  drainMs: number;
  jobs: Partial<JobLimits>;
  /** Peer sites (relay/federation/); absent: none. */
  federation?: FederationOptions;
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
    ...(o.redis !== undefined && { redis: o.redis }),
    ...(o.blobDir !== undefined && { blobDir: o.blobDir }),
    ...(o.adminToken !== undefined && { adminToken: o.adminToken }),
    webRoot: o.web,
    appsToSeed: seeds,
    bodyLimit: o.bodyLimit,
    blobs: o.blobs,
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
    frameRate: o.frameRate,
    verifyFraction: o.verifyFraction,
    maxQuarantined: o.maxQuarantined,
    leaseMs: o.leaseMs,
    jobs: o.jobs,
    ...(o.federation && { federation: o.federation }),
  });
  const { log } = relay;
  log.info(
    { url: relay.url },
    `Brume relay listening on ${relay.url} — open it in a browser to join`,
  );
  // Never the token itself: logs are kept, shipped and read by others (brume token --reveal prints it).
  const tokenFile = join(o.data, 'admin-token');
  if (o.adminToken !== undefined) log.info('admin token: the one the configuration gives');
  else if (relay.cluster)
    log.info(
      { redis: relay.cluster.redis.location },
      `admin token: ${relay.admin.created ? 'made and kept' : 'the one kept'} in Redis at ${relay.cluster.redis.location}, shared by the cluster (brume token --redis <url> --reveal prints it)`,
    );
  else
    log.info(
      { file: tokenFile },
      `admin token: ${relay.admin.created ? 'made and saved in' : 'in'} ${tokenFile} (brume token --data ${o.data} --reveal prints it)`,
    );
  if (relay.cluster)
    log.info(
      { relayId: relay.cluster.relayId, redis: relay.cluster.redis.location, data: o.data },
      `cluster: relay ${relay.cluster.relayId} of those sharing ${relay.cluster.redis.location} (apps, keys, token, trust, projects, the context log, the job queue) and ${relay.store.location} (blobs); its own files in ${o.data}`,
    );
  else log.info({ data: relay.store.location }, `data: ${relay.store.location}`);

  return new Promise<number>((done) => {
    let stopping = false;
    const stop = (signal: NodeJS.Signals) => {
      if (stopping) {
        log.error({ signal }, `${signal} again: exiting without waiting`);
        process.exit(1);
      }
      stopping = true;
      log.info(
        { signal },
        `${signal}: draining (new calls refused; calls in flight have ${o.drainMs} ms)`,
      );
      relay.drain(o.drainMs).then(
        (r) => {
          log.info(
            r,
            `drained: ${r.inFlight - r.failed} of ${r.inFlight} calls in flight finished, ${r.failed} failed at the deadline; context log flushed; closed`,
          );
          done(0);
        },
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
