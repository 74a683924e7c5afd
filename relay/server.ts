/**
 * The relay: one HTTP port that serves the web app and the app API (relay/http/), the node
 * WebSocket hub and PeerJS signalling (relay/fabric-http.ts, relay/hub.ts), API keys
 * (relay/keys-http.ts), and optionally a cloud node in the same process. This file wires them.
 *
 * @example
 * const relay = await createRelay({ port: 0, dataDir: '/tmp/brume', webRoot: 'dist/web' });
 * await fetch(`${relay.url}/api/health`);
 * await relay.close();
 */
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { join, resolve } from 'node:path';
import rateLimit from '@fastify/rate-limit';
import Fastify, { type FastifyInstance } from 'fastify';
import { InternalError, RateLimitError } from '../core/errors';
import { type Admin, ensureDataDir, loadAdmin } from './admin';
import { type Apps, type DeployResult, openApps } from './apps';
import { createAuth } from './auth';
import { collectEvery, withBlobs } from './blob-refs';
import type { Cluster } from './cluster/cluster';
import { openClusterContext } from './cluster/context';
import { openJobQueue } from './cluster/job-queue';
import { joinCluster, wireShared } from './cluster/parts';
import { redisPeerDirectory } from './cluster/signal';
import { openContext, type RelayContext } from './context';
import { mountFabric } from './fabric-http';
import { createFederation, type Federation } from './federation';
import { hostAllowList } from './hosts';
import { BUNDLE_TYPES, mountApps } from './http/apps';
import { mountBlobs } from './http/blobs';
import { forgetNamespace } from './http/context';
import { mountJobs } from './http/jobs';
import { mountObjects } from './http/objects';
import { mountObserve, probe } from './http/observe';
import { errorText, mountSite } from './http/site';
import { createHub, type Hub } from './hub';
import type { HubCluster } from './hub/cluster';
import type { LogStore } from './hub/log-store';
import { openJobs } from './jobs';
import { openJobLog } from './jobs/store';
import { type KeyStore, openKeys } from './keys';
import { mountKeys } from './keys-http';
import { loggerOptions, type RelayLogger } from './log';
import { createMetrics, type RelayMetrics } from './metrics';
import { openProjects, type Projects } from './projects';
import type { Relay, RelayOptions } from './relay-types';
import { createStore, type Store } from './store';

export type { DeployResult } from './apps';
export type { BlobLimits } from './blob-refs';

/** How long `close` waits for HTTP requests still open before it cuts their sockets. */
const CLOSE_GRACE_MS = 5_000;

export type { LogFields, RelayLogger } from './log';

export type { Relay, RelayOptions } from './relay-types';

const MiB = 1024 * 1024;

/** Starts a relay; resolves once it listens and any seed apps are deployed. */
export async function createRelay(options: RelayOptions = {}): Promise<Relay> {
  const startedAt = performance.now();
  // Fastify first: its logger is the relay's.
  const app = Fastify({
    ...(options.logger ? { logger: false } : { logger: loggerOptions(options.log) }),
    return503OnClosing: true,
    // Public keys (base64url SPKI, 124 characters) travel in paths: DELETE /api/trust/:publicKey.
    routerOptions: { maxParamLength: 512 },
  });
  const log: RelayLogger = options.logger ?? app.log;
  const metrics = createMetrics();
  metrics.collectDefault();
  const bodyLimit = options.bodyLimit ?? 256 * MiB;
  const webRoot = resolve(options.webRoot ?? 'dist/web');
  const dataDir = options.dataDir ?? '.brume';
  await ensureDataDir(dataDir);
  const warn = (m: string) => log.warn(m);
  const { cluster, shared } = await joinCluster(options, warn); // relay/cluster/parts.ts
  const files = withBlobs(
    options.store ?? shared?.store ?? (await createStore(dataDir)),
    options.blobs,
    options.blobClock,
  );
  const { store, blobs } = files;
  const admin = shared?.admin ?? (await loadAdmin(dataDir, warn, options.adminToken));
  const ownKeyStore = shared?.keys ?? (await openKeys(dataDir, warn, { keys: options.maxKeys }));
  const ownProjects = await openProjects(dataDir, warn, {}, shared?.projects);
  // The context log: a Redis Stream every relay of the cluster appends to and reads, or a file.
  const contextOptions = {
    ...options.context,
    trusted: (key: string) => admin.trusted(key),
    warn,
    metrics,
  };
  const sharedContext =
    cluster &&
    (await openClusterContext(cluster.redis, { ...contextOptions, relayId: cluster.relayId }));
  const ownContext = sharedContext || (await openContext(dataDir, contextOptions));
  const ownApps = openApps(store, {
    bodyLimit,
    stored: (m) => files.apps.stored(Object.values(m.files)),
  });
  // Federation: deploys, global context changes, users, projects and keys pushed to peer sites.
  const federation =
    options.federation &&
    (await createFederation({
      ...options.federation,
      dataDir,
      store,
      log: { info: (m) => log.info(m), warn },
    }));
  const context = federation?.context(ownContext) ?? ownContext;
  const apps = federation?.apps(ownApps) ?? ownApps;
  const keys = federation?.keys(ownKeyStore) ?? ownKeyStore;
  const projects = federation?.projects(ownProjects) ?? ownProjects;
  const hubCluster = options.hubCluster ?? shared?.hub;
  const parts = {
    store,
    admin,
    keys,
    projects,
    context,
    apps,
    log,
    metrics,
    cluster,
    hubCluster,
    logs: shared?.logs,
    federation,
  };
  const { hub, net } = await buildServer(app, options, parts);
  // In a cluster: registered, and the other relays' nodes known, before anything is placed.
  await hub.started;
  // Context changes other relays accepted reach this relay's watchers.
  sharedContext?.onRemote((op, seq) => hub.publish(op, seq));
  federation?.mount(app, {
    apps: ownApps,
    context: ownContext,
    keys: ownKeyStore,
    projects: ownProjects,
    publish: (op, seq) => hub.publish(op, seq),
    blobs,
    hub,
    bodyLimit,
  });
  const jobs = await openJobs({
    // One queue for the whole cluster (a Redis Streams consumer group), or this relay's log.
    ...(cluster
      ? { queue: await openJobQueue(cluster.redis, { relayId: cluster.relayId, warn }) }
      : { store: await openJobLog(join(dataDir, 'jobs'), { warn }) }),
    blobs: federation?.jobBlobs(blobs, files.limits.maxBytes) ?? blobs,
    hub,
    ...(options.jobs && { limits: options.jobs }),
    manifest: (name) => apps.current(name),
    log: { info: (m) => log.info(m), warn: (m) => log.warn(m) },
  });
  metrics.watchJobs(() => jobs.counts());
  // A job's input and result blobs live as long as the job is kept.
  blobs.addReferrer('jobs', () => jobs.blobs());
  federation?.mountJobs(app, jobs);
  mountJobs(app, {
    jobs,
    auth: net.auth,
    anonymous: net.calls.anonymous,
    rate: net.calls,
    access: options.jobAccess ?? projects.access,
    draining: hub.draining,
    ...(federation && { elsewhere: federation.jobsElsewhere(blobs, files.limits.maxBytes) }),
  });
  // A deploy or a rollback that changes the current version reaches every node (§5.7), those of
  // the other relays of a cluster too; a trust change at another relay applies here.
  apps.onCurrent((name, version) => hub.announce(name, version));
  if (cluster && shared) wireShared(cluster, shared, { apps, hub, warn });
  await mountSite(app, {
    webRoot,
    bodyLimit,
    bundleTypes: BUNDLE_TYPES,
    log,
    version: packageVersion(),
    startedAt,
  });
  mountApps(app, { apps, store, auth: net.auth, projects, log, bodyLimit });
  mountObjects(app, {
    projects,
    keys,
    auth: net.auth,
    apps: { names: () => store.apps.names(), current: (name) => apps.current(name) },
    // The object is gone either way: keys left by a failed delete are unreachable, only kept.
    forget: (scope, namespace) =>
      forgetNamespace(context, scope, namespace).catch((e: unknown) =>
        log.warn(`the ${scope} keys of ${namespace} were not all deleted: ${errorText(e)}`),
      ),
    nodes: () => hub.nodes(),
  });
  mountBlobs(app, {
    blobs,
    isAppFile: files.apps.has,
    auth: net.auth,
    log,
    maxBytes: files.limits.maxBytes,
    registry: metrics.registry,
  });
  const checks = () => readiness(parts, hub, options.cloudNode === false ? undefined : net.ownKeys);
  mountObserve(app, { auth: net.auth, metrics, checks });
  await seed(options.appsToSeed, parts, app);
  const { url, port } = await listen(app, options, net);

  const cloud =
    options.cloudNode === false
      ? undefined
      : // Loaded only when used: onnxruntime-node alone is tens of MB a relay without it need not hold.
        await (await import('./cloud-node')).startCloudNode(
          url,
          hub.attach,
          (key) => net.ownKeys.add(key),
          (l) => log.warn(`cloud node: ${l}`),
          options.logicCaps,
        );

  const sweeper = collectEvery(blobs, files.limits.graceMs, log);
  let closing: Promise<void> | undefined;
  const close = () => {
    closing ??= (async () => {
      // First: answers of runs cut short by the close are not recorded; the jobs rerun at start.
      await jobs.close();
      await federation?.close();
      clearInterval(sweeper);
      cloud?.close();
      await hub.close();
      net.closePeers();
      // Requests still open a while after (a client that never finishes sending its body, or
      // never reads the answer) must not keep the relay from closing: their sockets are cut.
      const cut = setTimeout(() => app.server.closeAllConnections(), CLOSE_GRACE_MS);
      await app.close().finally(() => clearTimeout(cut));
      // After the HTTP requests in flight: a context write among them is on disk before this.
      await context.close();
      // Last: everything that writes to Redis has closed.
      await shared?.close();
      await cluster?.close();
    })();
    return closing;
  };
  return {
    url,
    port,
    store,
    blobs,
    hub,
    admin,
    keys,
    projects,
    context,
    jobs,
    log,
    metrics,
    cluster,
    deploy: (bytes) => apps.deploy(bytes),
    setCurrent: (name, version) => apps.setCurrent(name, version),
    async drain(ms) {
      // Runs in flight are not waited for: the jobs stay on disk as running and rerun at start.
      await jobs.close();
      const r = await hub.drain(ms);
      await close();
      return r;
    },
    close,
  };
}

interface Parts {
  store: Store;
  admin: Admin;
  keys: KeyStore;
  projects: Projects;
  context: RelayContext;
  apps: Apps;
  log: RelayLogger;
  metrics: RelayMetrics;
  cluster: Cluster | undefined;
  hubCluster: HubCluster | undefined;
  /** Where the hub keeps decisions, calls and events: the cluster's Redis, or (none) memory. */
  logs: LogStore | undefined;
  federation: Federation | undefined;
}

/** The Fastify app with its guards (Host, rate limits), the hub, the fabric's routes and keys. */
async function buildServer(app: FastifyInstance, options: RelayOptions, p: Parts) {
  const { admin, context, log } = p;
  const auth = createAuth(admin, p.keys);
  const hosts = hostAllowList(options.allowedHosts);
  // Before anything else reads the request: a foreign Host is a page that rebound a DNS name.
  app.addHook('onRequest', async (req) => hosts.check(req.headers.host));
  // Per-route limits (anonymous calls); answers 429 with Retry-After.
  const calls = {
    anonymous: options.anonymousCalls ?? true,
    max: options.anonymousCallLimit?.max ?? 600,
    windowMs: options.anonymousCallLimit?.windowMs ?? 60_000,
  };
  await app.register(rateLimit, {
    global: false,
    errorResponseBuilder: (_req, c) =>
      new RateLimitError(
        `anonymous calls: at most ${c.max} per ${calls.windowMs / 1000} s from one address; retry after ${c.after}, or send a key with the call scope`,
      ),
  });
  // Known once listening: the relay's own origins are always allowed to open sockets.
  const origins = new Set(options.origins ?? []);
  // Keys of the nodes this process runs itself (its cloud node).
  const ownKeys = new Set<string>();
  const hub = createHub({
    relayId: p.cluster?.relayId ?? crypto.randomUUID(),
    manifest: (name, range) => p.apps.resolve(name, range),
    trusted: (key) => admin.trusted(key) || ownKeys.has(key),
    context,
    origins: (origin) => origins.has(origin),
    log,
    metrics: p.metrics,
    ...(options.heartbeatMs !== undefined && { heartbeatMs: options.heartbeatMs }),
    ...(options.callTimeoutMs !== undefined && { callTimeoutMs: options.callTimeoutMs }),
    ...(options.frameRate !== undefined && { frameRate: options.frameRate }),
    ...(options.maxFrameBytes !== undefined && { maxFrameBytes: options.maxFrameBytes }),
    ...(options.limits && { limits: options.limits }),
    ...(options.verifyFraction !== undefined && { verifyFraction: options.verifyFraction }),
    ...(options.maxQuarantined !== undefined && { maxQuarantined: options.maxQuarantined }),
    ...(options.leaseMs !== undefined && { leaseMs: options.leaseMs }),
    ...(p.hubCluster && { cluster: p.hubCluster }),
    ...(p.logs && { logs: p.logs }),
  });
  const closePeers = mountFabric(app, {
    hub,
    admin,
    auth,
    context,
    log,
    origins: (origin) => origins.has(origin),
    ...(options.maxSignalBytes !== undefined && { maxSignalBytes: options.maxSignalBytes }),
    ...(p.cluster && {
      peerDirectory: redisPeerDirectory(p.cluster.redis, {
        relayId: p.cluster.relayId,
        warn: (m) => log.warn(m),
      }),
    }),
    hosts: (host) => hosts.check(host),
    deployed: async (name) => (await p.apps.current(name)) !== undefined,
    projects: p.projects,
    calls,
    ...(p.federation && { elsewhere: p.federation.elsewhere }),
  });
  mountKeys(app, p.keys, auth, p.projects.userExists);
  return { hub, net: { auth, hosts, origins, ownKeys, closePeers, calls } };
}

/**
 * What `GET /api/ready` checks: the app store answers, the context log takes writes, the relay's
 * own cloud node (when it runs one: `ownKeys`) has joined, Redis answers PING (in a cluster).
 */
async function readiness(p: Parts, hub: Hub, ownKeys: Set<string> | undefined) {
  const { store, context } = p;
  return {
    storage: await probe(async () => `${(await store.apps.names()).length} apps`),
    context: await probe(async () => {
      // Its whole reason (with the path) is in the log; anyone may read this answer.
      if (context.failed()) throw new Error('writes refused until a restart: see the log');
      return `log at ${context.files().log} bytes`;
    }),
    ...(ownKeys && {
      cloud: await probe(async () => {
        const own = hub.nodes().find((n) => n.role === 'cloud' && ownKeys.has(n.publicKey));
        if (!own) throw new Error("the relay's own cloud node has not joined");
        return `joined as ${own.id}`;
      }),
    }),
    ...(p.cluster && { redis: await probe(() => pingRedis(p.cluster!)) }),
    ...(!p.cluster && {
      redis: { ok: true, detail: 'not configured: a single relay (no --redis)' },
    }),
  };
}

/** Redis's answer for `/api/ready`, which anyone may read: no address; the log says more. */
async function pingRedis(cluster: Cluster): Promise<string> {
  try {
    return `answers PING in ${(await cluster.ping()).toFixed(1)} ms`;
  } catch {
    throw new Error('Redis is unreachable: writes are refused until it is back (the log says why)');
  }
}

/** Deploys `files` in order when the store holds no app yet; a bad one stops the relay. */
async function seed(files: string[] | undefined, p: Parts, app: FastifyInstance): Promise<void> {
  if (!files?.length || (await p.store.apps.names()).length > 0) return;
  for (const file of files) {
    let result: DeployResult;
    try {
      result = await p.apps.deploy(await readFile(file));
    } catch (e) {
      await app.close();
      throw new InternalError(`cannot seed app from ${file}: ${errorText(e)}`, { cause: e });
    }
    p.log.info(
      { app: result.name, version: result.version, file },
      `seeded ${result.name}@${result.version} from ${file}`,
    );
  }
}

/** Listens, then lets the relay's own names in (Host checks) and its own origins (sockets). */
async function listen(
  app: FastifyInstance,
  options: RelayOptions,
  net: { hosts: ReturnType<typeof hostAllowList>; origins: Set<string> },
): Promise<{ url: string; port: number }> {
  try {
    await app.listen({ host: options.host ?? '127.0.0.1', port: options.port ?? 8787 });
  } catch (e) {
    await app.close();
    throw e;
  }
  const address = app.server.address() as AddressInfo;
  const host = urlHost(address.address);
  const url = `http://${host}:${address.port}`;
  net.hosts.listening(address.address, address.port);
  net.origins.add(url);
  if (host === '127.0.0.1' || host === 'localhost') {
    net.origins.add(`http://localhost:${address.port}`).add(`http://127.0.0.1:${address.port}`);
  }
  return { url, port: address.port };
}

function urlHost(address: string): string {
  // A wildcard address is not something a browser can open; this machine is.
  if (address === '0.0.0.0' || address === '::') return 'localhost';
  return address.includes(':') ? `[${address}]` : address;
}

function packageVersion(): string {
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
  return String(pkg.version);
}
