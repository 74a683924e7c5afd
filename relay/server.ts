/**
 * The relay's HTTP side: serves the web app (cross-origin isolated, so tabs get SharedArrayBuffer
 * and threaded wasm), and the app API: deploy `.brume` bundles, list apps, fetch files by hash.
 *
 * @example
 * const relay = await createRelay({ port: 0, dataDir: '/tmp/brume', webRoot: 'dist/web' });
 * await fetch(`${relay.url}/api/health`);
 * await relay.close();
 */
import { existsSync, readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { relative, resolve, sep } from 'node:path';
import rateLimit from '@fastify/rate-limit';
import fastifyStatic from '@fastify/static';
import Fastify, { type FastifyError, type FastifyReply, type FastifyRequest } from 'fastify';
import type { AppSummary, ServiceSummary } from '../core/api';
import {
  BrumeError,
  ConflictError,
  ForbiddenError,
  httpStatus,
  InputError,
  InternalError,
  NotFoundError,
  RateLimitError,
  toWire,
} from '../core/errors';
import { type Manifest, manifestSha256, type Service, unpackBundle } from '../core/manifest';
import { type Admin, ensureDataDir, loadAdmin } from './admin';
import { createAuth } from './auth';
import type { LogicCaps } from './cloud-node';
import { type ContextOptions, openContext, type RelayContext } from './context';
import { mountFabric } from './fabric-http';
import { hostAllowList } from './hosts';
import { createHub, type Hub } from './hub';
import { type KeyStore, openKeys } from './keys';
import { mountKeys } from './keys-http';
import type { HubLimits } from './limits';
import { compareSemver, createStore, type Store } from './store';

export interface RelayLogger {
  info(message: string): void;
  warn(message: string): void;
  error(message: string): void;
}

export interface RelayOptions {
  /** Interface to listen on; default 127.0.0.1 (this machine only). */
  host?: string;
  /** Default 8787; 0 picks a free port (read it back from `Relay.port`). */
  port?: number;
  /** Storage directory, default `.brume`; ignored when `store` is given. */
  dataDir?: string;
  /** A ready store (e.g. Redis-backed) instead of the file system under `dataDir`. */
  store?: Store;
  /** The built web app, default `dist/web`. */
  webRoot?: string;
  /** `.brume` files deployed, in order, when the store holds no app yet. */
  appsToSeed?: string[];
  /** Largest bundle accepted by `POST /api/apps`, in bytes; default 256 MiB. */
  bodyLimit?: number;
  /** Where relay events go; default the console. */
  logger?: RelayLogger;
  /** Page origins allowed to open node sockets, besides the relay's own. */
  origins?: string[];
  /** Node heartbeat period; a node silent for 3 periods is evicted. Default 2000 ms. */
  heartbeatMs?: number;
  /** Frames per second one node socket may send (burst: twice that). Default 500. */
  frameRate?: number;
  /** Largest frame a node socket may send, in bytes. Default 16 MiB. */
  maxFrameBytes?: number;
  /** Largest PeerJS signalling message a node may send, in bytes. Default 64 KiB. */
  maxSignalBytes?: number;
  /** Bounds on calls in flight, bytes held, sockets and join time (defaults: relay/limits.ts). */
  limits?: Partial<HubLimits>;
  /** Run a `cloud` node in this process (onnxruntime-node); default true. */
  cloudNode?: boolean;
  /** Context store limits: catch-up frame bytes, log compaction floor, agreement keys kept. */
  context?: Pick<ContextOptions, 'catchUpBytes' | 'compactFloorBytes' | 'maxAgreements' | 'limits'>;
  /** The cloud node's caps on Logics, whatever manifests ask (relay/cloud-node.ts). */
  logicCaps?: LogicCaps;
  /**
   * Host header values accepted besides the relay's own names (`name` on any port, `name:port`;
   * `*` accepts any Host). Anything else is refused with 421 (DNS rebinding).
   */
  allowedHosts?: string[];
  /** HTTP calls and schedules without a credential; default true. Off: they need `call`. */
  anonymousCalls?: boolean;
  /** Anonymous calls per client address per window; default 600 per 60 s. */
  anonymousCallLimit?: { max: number; windowMs: number };
  /** API keys the relay holds at most; default 1000. */
  maxKeys?: number;
  /**
   * Fraction (0–1) of calls placed on untrusted nodes that also run on a second node, answers
   * compared (relay/verify.ts). Default 0: `qos.verify` calls are checked regardless.
   */
  verifyFraction?: number;
  /** Nodes kept in quarantine at most (the oldest is released when full). Default 1000. */
  maxQuarantined?: number;
}

export interface DeployResult {
  name: string;
  version: string;
  manifestSha256: string;
  /** false when this exact version was already deployed. */
  created: boolean;
  /** Whether it is now the current version: a deploy never makes an older version current. */
  current: boolean;
  /** The app's current version after the deploy. */
  currentVersion: string;
}

export interface Relay {
  /** Base URL to open in a browser, e.g. `http://127.0.0.1:8787`. */
  readonly url: string;
  readonly port: number;
  readonly store: Store;
  /** The WebSocket hub: connected nodes, scheduling decisions, events. */
  readonly hub: Hub;
  /** The admin token and the fog trust list. */
  readonly admin: Admin;
  /** The API keys the admin made. */
  readonly keys: KeyStore;
  /** The durable context store. */
  readonly context: RelayContext;
  /** Verifies and stores a bundle, as `POST /api/apps` does (without a credential check). */
  deploy(bundle: Uint8Array): Promise<DeployResult>;
  /** Makes a deployed version current, as `POST /api/apps/:name/current` does. */
  setCurrent(name: string, version: string): Promise<{ name: string; version: string }>;
  /** Stops listening and waits for requests in flight; idempotent. */
  close(): Promise<void>;
}

const MiB = 1024 * 1024;
const BUNDLE_TYPES = ['application/vnd.brume.bundle', 'application/octet-stream'];
const SHA256 = /^[0-9a-f]{64}$/;

// The admin console holds the admin token: no other page may frame it (clickjacking).
const NO_FRAMING = {
  'content-security-policy': "frame-ancestors 'none'",
  'x-frame-options': 'DENY',
};

// Cross-origin isolation: without it browsers withhold SharedArrayBuffer (threaded wasm, ort-web).
const ISOLATION_HEADERS = {
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-embedder-policy': 'require-corp',
  'cross-origin-resource-policy': 'same-origin',
};

/** Starts a relay; resolves once it listens and any seed apps are deployed. */
export async function createRelay(options: RelayOptions = {}): Promise<Relay> {
  const startedAt = performance.now();
  const log = options.logger ?? consoleLogger;
  const bodyLimit = options.bodyLimit ?? 256 * MiB;
  const webRoot = resolve(options.webRoot ?? 'dist/web');
  const dataDir = options.dataDir ?? '.brume';
  await ensureDataDir(dataDir);
  const store = options.store ?? (await createStore(dataDir));
  const admin = await loadAdmin(dataDir, (m) => log.warn(m));
  const keys = await openKeys(dataDir, (m) => log.warn(m), { keys: options.maxKeys });
  const auth = createAuth(admin, keys);
  const hosts = hostAllowList(options.allowedHosts);
  const context = await openContext(dataDir, {
    ...options.context,
    trusted: (key) => admin.trusted(key),
    warn: (m) => log.warn(m),
  });
  const relayVersion = packageVersion();

  // Deploys one at a time, so two uploads of one version cannot both pass the conflict check.
  let deploys: Promise<unknown> = Promise.resolve();
  function serialized<T>(fn: () => Promise<T>): Promise<T> {
    const run = deploys.then(fn);
    deploys = run.catch(() => undefined); // the caller gets the error through `run`
    return run;
  }
  const deploy = (bytes: Uint8Array, may?: (name: string) => void) =>
    serialized(() => deployNow(bytes, may));

  async function deployNow(bytes: Uint8Array, may?: (name: string) => void): Promise<DeployResult> {
    const { manifest, files } = await unpackBundle(bytes, {
      maxBytes: bodyLimit,
      maxBinLength: bodyLimit,
    });
    const { name, version } = manifest;
    may?.(name); // the app's name is known only once the bundle is read
    const sha = await manifestSha256(manifest);
    const existing = await store.apps.get(name, version);
    if (existing && (await manifestSha256(existing)) !== sha) {
      throw new ConflictError(
        `${name}@${version} is already deployed with different content: bump the version to deploy a change`,
      );
    }
    // Blobs before the manifest: a recorded manifest never names a file the store lacks.
    for (const [path, entry] of Object.entries(manifest.files)) {
      await store.blobs.put(entry.sha256, files[path]!);
    }
    // Only a newer (or the same) version becomes current: rolling back is an admin's decision.
    const before = await store.apps.current(name);
    const current = !before || compareSemver(version, before.version) >= 0;
    await store.apps.put(manifest, { current });
    manifests.delete(name);
    const currentVersion = current ? version : before!.version;
    return { name, version, manifestSha256: sha, created: !existing, current, currentVersion };
  }

  function setCurrent(name: string, version: string) {
    return serialized(async () => {
      const valid = validName(name) && /^\d+\.\d+\.\d+$/.test(version);
      const manifest = valid ? await store.apps.get(name, version) : undefined;
      if (!manifest) {
        throw new NotFoundError(
          `no version ${version.slice(0, 32)} of app "${name}" (GET /api/apps/${name}/versions)`,
        );
      }
      await store.apps.put(manifest);
      manifests.delete(name);
      return { name, version };
    });
  }

  // Public keys (base64url SPKI, 124 characters) travel in paths: DELETE /api/trust/:publicKey.
  // Current manifests, read once per deploy: the hub asks for one on every scheduling decision.
  const manifests = new Map<string, Promise<Manifest | undefined>>();
  function currentManifest(name: string): Promise<Manifest | undefined> {
    let m = manifests.get(name);
    if (!m) {
      m = store.apps.current(name).catch(() => undefined);
      manifests.set(name, m);
      // Only apps that exist are remembered: names from the network are not a way to fill memory.
      void m.then((found) => found || manifests.delete(name));
    }
    return m;
  }

  const app = Fastify({
    logger: false,
    return503OnClosing: true,
    routerOptions: { maxParamLength: 512 },
  });
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
  const allowedOrigins = new Set(options.origins ?? []);
  // Keys of the nodes this process runs itself (its cloud node).
  const ownKeys = new Set<string>();
  const hub = createHub({
    relayId: crypto.randomUUID(),
    manifest: currentManifest,
    trusted: (key) => admin.trusted(key) || ownKeys.has(key),
    context,
    origins: (origin) => allowedOrigins.has(origin),
    log,
    ...(options.heartbeatMs !== undefined && { heartbeatMs: options.heartbeatMs }),
    ...(options.frameRate !== undefined && { frameRate: options.frameRate }),
    ...(options.maxFrameBytes !== undefined && { maxFrameBytes: options.maxFrameBytes }),
    ...(options.limits && { limits: options.limits }),
    ...(options.verifyFraction !== undefined && { verifyFraction: options.verifyFraction }),
    ...(options.maxQuarantined !== undefined && { maxQuarantined: options.maxQuarantined }),
  });
  const closePeers = mountFabric(app, {
    hub,
    admin,
    auth,
    context,
    log,
    origins: (origin) => allowedOrigins.has(origin),
    ...(options.maxSignalBytes !== undefined && { maxSignalBytes: options.maxSignalBytes }),
    hosts: (host) => hosts.check(host),
    deployed: async (name) => (await currentManifest(name)) !== undefined,
    calls,
  });
  mountKeys(app, keys, auth);

  app.addHook('onSend', async (req, reply, payload) => {
    reply.headers(ISOLATION_HEADERS);
    const path = req.url.split('?')[0];
    if (path === '/admin' || path === '/admin.html') reply.headers(NO_FRAMING);
    if (req.url.split('?')[0] === '/brume.js') {
      // The embed script is loaded by other sites' pages, with Subresource Integrity (CORS).
      reply.header('cross-origin-resource-policy', 'cross-origin');
      reply.header('access-control-allow-origin', '*');
      reply.header('cache-control', 'no-cache');
    }
    return payload;
  });

  app.setErrorHandler((error: FastifyError, req, reply) => {
    const { status, body } = httpError(error, bodyLimit);
    if (status >= 500) log.error(`${req.method} ${req.url}: ${errorText(error)}`);
    return reply.code(status).send(body);
  });

  app.setNotFoundHandler((req, reply) => {
    if (!req.url.startsWith('/api/') && !existsSync(webRoot)) return webNotBuilt(req, reply);
    const err = new NotFoundError(`nothing at ${req.method} ${req.url.split('?')[0]}`);
    return reply.code(404).send({ error: toWire(err) });
  });

  function webNotBuilt(req: FastifyRequest, reply: FastifyReply) {
    const message = `web app not built: run npm run build (looked in ${webRoot})`;
    reply.code(503);
    if (req.headers.accept?.includes('text/html')) {
      return reply.type('text/html; charset=utf-8').send(`<!doctype html><title>Brume</title>
<p>Brume relay is running, but the ${escapeHtml(message)}.</p>`);
    }
    return reply.send({ error: { code: 'E_UNAVAILABLE', message } });
  }

  app.addContentTypeParser(BUNDLE_TYPES, { parseAs: 'buffer' }, (_req, body, done) => {
    done(null, body);
  });

  // Static files; a missing file (or a missing webRoot) falls through to the not-found handler.
  await app.register(fastifyStatic, {
    root: webRoot,
    prefix: '/',
    suppressWarning: true,
    setHeaders(reply, path) {
      // Vite names built assets by content hash, so they never change under one name.
      if (relative(webRoot, path).startsWith(`assets${sep}`)) {
        reply.header('cache-control', 'public, max-age=31536000, immutable');
      }
    },
  });

  // The admin console; its data comes from the admin API, which checks the token.
  app.get('/admin', (_req, reply) => reply.sendFile('admin.html'));

  app.get('/api/health', async () => ({
    ok: true,
    version: relayVersion,
    uptimeS: Math.round(performance.now() - startedAt) / 1000,
  }));

  app.get('/api/apps', async () => {
    const out: AppSummary[] = [];
    for (const name of await store.apps.names()) {
      const manifest = await store.apps.current(name);
      if (manifest) out.push(await summarize(manifest));
    }
    return out;
  });

  app.get<{ Params: { name: string } }>('/api/apps/:name', async (req) => {
    const manifest = await findApp(req.params.name);
    return manifest;
  });

  app.get<{ Params: { name: string } }>('/api/apps/:name/versions', async (req) => {
    await findApp(req.params.name);
    return store.apps.versions(req.params.name);
  });

  app.get<{ Params: { name: string; version: string } }>(
    '/api/apps/:name/versions/:version',
    async (req) => {
      const { name, version } = req.params;
      const valid = validName(name) && /^\d+\.\d+\.\d+$/.test(version);
      const manifest = valid ? await store.apps.get(name, version) : undefined;
      if (!manifest) throw new NotFoundError(`no version ${version} of app "${name}"`);
      return manifest;
    },
  );

  app.get<{ Params: { sha256: string } }>('/api/blobs/:sha256', async (req, reply) => {
    const { sha256 } = req.params;
    if (!SHA256.test(sha256)) {
      throw new InputError(`"${sha256}" is not a sha256: expected 64 lowercase hex digits`);
    }
    const etag = `"${sha256}"`;
    reply.header('cache-control', 'public, max-age=31536000, immutable').header('etag', etag);
    if (req.headers['if-none-match'] === etag) return reply.code(304).send();
    const bytes = await store.blobs.get(sha256);
    if (!bytes) throw new NotFoundError(`no file with sha256 ${sha256} on this relay`);
    return reply
      .type('application/octet-stream')
      .send(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
  });

  // Read no bundle from someone who may deploy nothing; the app's own name is checked once read.
  app.post('/api/apps', { bodyLimit, onRequest: auth.hook('deploy') }, async (req, reply) => {
    if (!(req.body instanceof Uint8Array)) {
      const err = new InputError(
        `unsupported content-type ${req.headers['content-type'] ?? '(none)'}: send the bundle as ${BUNDLE_TYPES.join(' or ')}`,
      );
      return reply.code(415).send({ error: toWire(err) });
    }
    const may = (name: string) => {
      if (!auth.allows(auth.principal(req), 'deploy', name)) {
        throw new ForbiddenError(`this key may not deploy app "${name}" (it needs deploy:${name})`);
      }
    };
    const result = await deploy(req.body, may).catch((e: unknown) => {
      log.warn(`deploy refused: ${errorText(e)}`);
      throw e;
    });
    const { name, version, currentVersion } = result;
    log.info(
      `deployed ${name}@${version}${result.created ? '' : ' (unchanged)'}${result.current ? '' : `, kept ${currentVersion} current`}`,
    );
    return reply.code(result.created ? 201 : 200).send({
      name,
      version,
      manifestSha256: result.manifestSha256,
      current: result.current,
      currentVersion,
      ...(!result.current && {
        note: `stored ${name}@${version}, but ${currentVersion} stays current: a deploy never makes an older version current (an admin can: POST /api/apps/${name}/current { version }, or brume current ${name} ${version})`,
      }),
    });
  });

  // Making an older version current again (a rollback) is the admin's decision, never a deploy's.
  app.post<{ Params: { name: string }; Body: { version?: unknown } }>(
    '/api/apps/:name/current',
    { onRequest: auth.hook('admin') },
    async (req) => {
      const version = req.body?.version;
      if (typeof version !== 'string') throw new InputError('version: send { version: "1.2.3" }');
      const result = await setCurrent(req.params.name, version);
      log.info(`made ${result.name}@${result.version} current`);
      return result;
    },
  );

  async function findApp(name: string): Promise<Manifest> {
    const manifest = validName(name) ? await store.apps.current(name) : undefined;
    if (!manifest) throw new NotFoundError(`no app named "${name}" (GET /api/apps lists them)`);
    return manifest;
  }

  if (options.appsToSeed?.length && (await store.apps.names()).length === 0) {
    for (const file of options.appsToSeed) {
      let result: DeployResult;
      try {
        result = await deploy(await readFile(file));
      } catch (e) {
        await app.close();
        throw new InternalError(`cannot seed app from ${file}: ${errorText(e)}`, { cause: e });
      }
      log.info(`seeded ${result.name}@${result.version} from ${file}`);
    }
  }

  try {
    await app.listen({ host: options.host ?? '127.0.0.1', port: options.port ?? 8787 });
  } catch (e) {
    await app.close();
    throw e;
  }
  const address = app.server.address() as AddressInfo;
  const url = `http://${urlHost(address.address)}:${address.port}`;
  hosts.listening(address.address, address.port);
  allowedOrigins.add(url);
  if (urlHost(address.address) === '127.0.0.1' || urlHost(address.address) === 'localhost') {
    allowedOrigins.add(`http://localhost:${address.port}`).add(`http://127.0.0.1:${address.port}`);
  }

  const cloud =
    options.cloudNode === false
      ? undefined
      : // Loaded only when used: onnxruntime-node alone is tens of MB a relay without it need not hold.
        await (await import('./cloud-node')).startCloudNode(
          url,
          (key) => ownKeys.add(key),
          (l) => log.warn(`cloud node: ${l}`),
          options.logicCaps,
        );

  let closing: Promise<void> | undefined;
  return {
    url,
    port: address.port,
    store,
    hub,
    admin,
    keys,
    context,
    deploy: (bytes) => deploy(bytes),
    setCurrent,
    close() {
      cloud?.close();
      hub.close();
      void context.close();
      closePeers();
      closing ??= app.close();
      return closing;
    },
  };
}

/** HTTP status and `{ error: { code, message } }` for anything a handler threw. */
function httpError(error: unknown, bodyLimit: number): { status: number; body: unknown } {
  if (error instanceof BrumeError) {
    return { status: httpStatus(error), body: { error: toWire(error) } };
  }
  const fe = error as Partial<FastifyError>;
  const status = typeof fe.statusCode === 'number' ? fe.statusCode : 500;
  if (status >= 500) {
    return { status, body: { error: toWire(new InternalError(errorText(error))) } };
  }
  let message = fe.message ?? 'bad request';
  if (fe.code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
    message = `request body is larger than the relay's limit of ${Math.floor(bodyLimit / MiB)} MiB`;
  } else if (fe.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') {
    message = `unsupported content-type: send bundles as ${BUNDLE_TYPES.join(' or ')}`;
  }
  return { status, body: { error: { code: 'E_INPUT', message } } };
}

async function summarize(manifest: Manifest): Promise<AppSummary> {
  const services: Record<string, ServiceSummary> = {};
  for (const [name, s] of Object.entries(manifest.services)) services[name] = summarizeService(s);
  return {
    name: manifest.name,
    version: manifest.version,
    ...(manifest.description !== undefined && { description: manifest.description }),
    services,
    manifestSha256: await manifestSha256(manifest),
  };
}

function summarizeService(s: Service): ServiceSummary {
  if (s.kind === 'logic') return { kind: 'logic', rpcs: s.rpcs };
  const variants: Extract<ServiceSummary, { kind: 'model' }>['variants'] = {};
  for (const [id, v] of Object.entries(s.variants)) {
    variants[id] = {
      accuracy: v.accuracy,
      latencyMs: v.latencyMs,
      params: v.params,
      weights: v.weights,
    };
  }
  return { kind: 'model', task: s.task, variants };
}

function validName(name: string): boolean {
  return /^[a-z][a-z0-9-]{0,63}$/.test(name);
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

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

function escapeHtml(s: string): string {
  return s.replace(/[&<>"]/g, (c) => `&#${c.charCodeAt(0)};`);
}

const consoleLogger: RelayLogger = {
  info: (m) => console.log(m),
  warn: (m) => console.warn(m),
  error: (m) => console.error(m),
};
