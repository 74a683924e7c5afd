/**
 * Federation between sites (seed 003): a relay, or a cluster of them, linked to peer sites by a
 * shared key (relay/federation/peers.ts). What moves, and how:
 * - apps (functions) are pushed to every peer when deployed or made current here;
 * - context changes are pushed, except those written `local` (and node-scoped keys: nodes never
 *   move), through a durable outbox per peer (relay/federation/outbox.ts);
 * - a blob a job here needs and this site lacks is fetched from a peer then, and only then;
 * - a job read here that this site does not hold is asked of the peers then (relay/federation/
 *   jobs.ts), its result blob fetched with it; it still runs only where it was submitted;
 * - a call no node here can take (E_QOS, E_UNAVAILABLE) may be placed at the nearest peer whose
 *   round trip fits its latency budget, the budget shortened by that round trip (`elsewhere`);
 * - users, projects and API keys are pushed when they change (relay/federation/objects.ts: keys
 *   as hashes, users and projects whole with a version, applied only if newer);
 * - nodes never move: a peer's nodes are never listed or scheduled here.
 * @example
 * const fed = await createFederation({ site: 'paris', peers, dataDir, store, log });
 * const apps = fed.apps(openApps(store, o)); const context = fed.context(await openContext(dir));
 * const keys = fed.keys(rawKeys); const projects = fed.projects(rawProjects);
 * fed.mount(app, { apps: rawApps, context: rawContext, keys: rawKeys, projects: rawProjects, ... });
 * fed.mountJobs(app, jobs); mountJobs(app, { ..., elsewhere: fed.jobsElsewhere(blobs, maxBytes) });
 */
import { join } from 'node:path';
import { Readable } from 'node:stream';
import type { ReadableStream as WebReadable } from 'node:stream/web';
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { decode, encode } from '../../core/codec';
import type { ContextOp } from '../../core/context/replica';
import { UnavailableError } from '../../core/errors';
import { packBundle } from '../../core/manifest';
import { isSha256 } from '../../core/names';
import { frameLimits } from '../../core/protocol';
import type { Qos } from '../../core/scheduler';
import { traceparent } from '../../core/trace';
import type { Apps } from '../apps';
import type { Blobs } from '../blobs';
import type { RelayContext } from '../context';
import type { CallAnswer } from '../hub/forwarding';
import type { JobBlobs } from '../jobs/blobs';
import type { KeyStore } from '../keys';
import type { Projects } from '../projects';
import type { Store } from '../store';
import { findJob, type JobsElsewhere, type LocalJobs, mountFederatedJobs } from './jobs';
import { openObjects } from './objects';
import { type Outbox, type OutItem, openOutbox, Refused } from './outbox';
import { openPeers, type PeerConfig, type Peers } from './peers';
import { type FederationRoutesOptions, mountFederation } from './routes';

export type { SiteJob } from './jobs';
export type { PeerConfig } from './peers';

/** What `createRelay` takes to federate (RelayOptions.federation). */
export interface FederationOptions {
  /** This site's name, as answers placed here say. */
  site: string;
  peers: PeerConfig[];
  /** How often each peer's `/api/health` is pinged for its round trip; default 10 s. */
  pingMs?: number;
}

/** A call's answer from another site: which site ran it. */
export type SiteAnswer = CallAnswer & { site: string };

export interface Federation {
  readonly site: string;
  readonly peers: Peers;
  /** `apps` whose deploys and rollbacks are pushed to every peer. */
  apps(apps: Apps): Apps;
  /** `context` whose global changes are pushed to every peer. */
  context(context: RelayContext): RelayContext;
  /** `keys` whose creations and revocations are pushed to every peer (hashes, never secrets). */
  keys(keys: KeyStore): KeyStore;
  /** `projects` whose user and project changes are pushed to every peer, versioned. */
  projects(projects: Projects): Projects;
  /** `blobs` for jobs: a blob missing here is fetched from a peer when a job asks for it. */
  jobBlobs(blobs: Blobs, maxBytes: number): JobBlobs;
  /**
   * Runs a call at the nearest peer that can take it within `qos.latencyMs` (less the round
   * trip); undefined when no peer could (the caller answers its own refusal).
   */
  elsewhere(
    app: string,
    service: string,
    input: unknown,
    qos: Qos,
    rpc?: string,
    traceId?: string,
  ): Promise<SiteAnswer | undefined>;
  /**
   * Jobs this site does not hold, read at the peers (`GET /api/jobs/:id`); a result blob read
   * that way is fetched into `blobs` like a job's input blob.
   */
  jobsElsewhere(blobs: Blobs, maxBytes: number): JobsElsewhere;
  /** Mounts `GET /api/federation/jobs/:id` over this relay's own jobs (once they are open). */
  mountJobs(app: FastifyInstance, jobs: LocalJobs): void;
  /** Mounts `/api/federation/*` over the relay's own (unwrapped) parts. */
  mount(app: FastifyInstance, o: Omit<FederationRoutesOptions, 'peers' | 'objects'>): void;
  /** Resolves once every outbox is empty (tests). */
  drained(): Promise<void>;
  close(): Promise<void>;
}

/** Peers a call is offered to at most before its own refusal is answered. */
const MAX_CALL_PEERS = 3;
/** How long a call placed at another site may take. */
const CALL_TIMEOUT_MS = 60_000;
/** How long pushing one item may take. */
const PUSH_TIMEOUT_MS = 60_000;
/** How long fetching one blob may take. */
const BLOB_FETCH_TIMEOUT_MS = 120_000;
/** Blob fetches from peers running at once at most. */
const MAX_BLOB_FETCHES = 8;

/** The part of an answer from another site kept: what a local answer has, and the site. */
const siteAnswer = z.object({
  value: z.unknown(),
  rpc: z.string().max(256),
  ms: z.number().nonnegative(),
  node: z.string().max(64),
  version: z.string().max(64).optional(),
  site: z.string().max(64),
});

export async function createFederation(
  o: FederationOptions & {
    /** Outboxes live in `<dataDir>/federation/<peer>/`. */
    dataDir: string;
    /** Where pushed bundles are read back from. */
    store: Store;
    log: { warn(m: string): void; info(m: string): void };
  },
): Promise<Federation> {
  const peers = openPeers({
    site: o.site,
    peers: o.peers,
    ...(o.pingMs !== undefined && { pingMs: o.pingMs }),
    log: o.log,
  });
  const outboxes: Outbox[] = [];
  for (const peer of peers.list()) {
    const dir = join(o.dataDir, 'federation', peer.name.replace(/[^a-zA-Z0-9.-]/g, '_'));
    outboxes.push(
      await openOutbox(dir, {
        name: peer.name,
        log: o.log,
        deliver: async (item) => answered(await peers.request(peer, ...(await push(item)))),
      }),
    );
  }
  const pushAll = (item: OutItem) => {
    for (const box of outboxes) box.push(item);
  };
  const objects = await openObjects({
    dataDir: o.dataDir,
    site: o.site,
    push: pushAll,
    warn: (m) => o.log.warn(m),
  });

  /** The request that pushes `item`: path and init. */
  async function push(item: OutItem): Promise<[string, RequestInit, number]> {
    if (item.kind === 'context') {
      return [
        '/api/federation/context',
        { method: 'POST', headers: msgpack, body: bodyOf(encode({ op: item.op })) },
        PUSH_TIMEOUT_MS,
      ];
    }
    if (
      item.kind === 'key' ||
      item.kind === 'revoke' ||
      item.kind === 'user' ||
      item.kind === 'project'
    ) {
      return [
        '/api/federation/objects',
        {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify(item),
        },
        PUSH_TIMEOUT_MS,
      ];
    }
    if (item.kind === 'current') {
      return [
        `/api/federation/apps/${item.name}/current`,
        {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ version: item.version }),
        },
        PUSH_TIMEOUT_MS,
      ];
    }
    const manifest = await o.store.apps.get(item.name, item.version);
    if (!manifest) throw new Refused(`${item.name}@${item.version} is no longer stored here`);
    const files: Record<string, Uint8Array> = {};
    for (const [path, entry] of Object.entries(manifest.files)) {
      const bytes = await o.store.blobs.get(entry.sha256);
      if (!bytes) throw new Refused(`${item.name}@${item.version}: file ${path} is missing here`);
      files[path] = bytes;
    }
    return [
      '/api/federation/apps',
      {
        method: 'POST',
        headers: { 'content-type': 'application/octet-stream' },
        body: bodyOf(packBundle(manifest, files)),
      },
      PUSH_TIMEOUT_MS,
    ];
  }

  const fetching = new Map<string, Promise<boolean>>();
  /** Fetches blob `hash` from the first peer that has it; whether one did. */
  function fetchBlob(blobs: Blobs, hash: string, maxBytes: number): Promise<boolean> {
    const running = fetching.get(hash);
    if (running) return running;
    if (fetching.size >= MAX_BLOB_FETCHES) {
      throw new UnavailableError(
        `${fetching.size} blobs are being fetched from peer sites (limit ${MAX_BLOB_FETCHES}); try again`,
      );
    }
    const run = (async () => {
      // Nearest first, then those whose ping has not answered (they may answer this).
      const all = peers.list();
      const order = [...peers.nearest(), ...all.filter((p) => !p.up)];
      for (const peer of order) {
        try {
          const res = await peers.request(
            peer,
            `/api/federation/blobs/${hash}`,
            {},
            BLOB_FETCH_TIMEOUT_MS,
          );
          if (!res.ok || !res.body) {
            await res.body?.cancel();
            continue;
          }
          await blobs.putStream(Readable.fromWeb(res.body as WebReadable), maxBytes, hash);
          o.log.info(`federation: blob ${hash.slice(0, 12)} fetched from ${peer.name}`);
          return true;
        } catch (e) {
          o.log.warn(
            `federation: blob ${hash.slice(0, 12)} from ${peer.name}: ${(e as Error).message}`,
          );
        }
      }
      return false;
    })().finally(() => fetching.delete(hash));
    fetching.set(hash, run);
    return run;
  }

  return {
    site: o.site,
    peers,
    apps: (apps) => ({
      ...apps,
      async deploy(bundle, may) {
        const r = await apps.deploy(bundle, may);
        if (r.created) pushAll({ kind: 'app', name: r.name, version: r.version });
        return r;
      },
      async setCurrent(name, version) {
        const r = await apps.setCurrent(name, version);
        pushAll({ kind: 'current', name, version });
        return r;
      },
    }),
    context: (context) => ({
      ...context,
      async accept(op: ContextOp, from: string) {
        const seq = await context.accept(op, from);
        // Local changes stay; node-scoped keys are their node's, and nodes never move.
        if (seq && !op.local && op.scope !== 'node') pushAll({ kind: 'context', op });
        return seq;
      },
    }),
    keys: objects.keys,
    projects: objects.projects,
    jobBlobs: (blobs, maxBytes) => ({
      putBytes: (bytes) => blobs.putBytes(bytes),
      async stat(hash) {
        const here = await blobs.stat(hash);
        if (here || !isSha256(hash)) return here;
        return (await fetchBlob(blobs, hash, maxBytes)) ? blobs.stat(hash) : undefined;
      },
      async get(hash) {
        const here = await blobs.get(hash);
        if (here || !isSha256(hash)) return here;
        return (await fetchBlob(blobs, hash, maxBytes)) ? blobs.get(hash) : undefined;
      },
    }),
    async elsewhere(app, service, input, qos, rpc, traceId) {
      const budget = qos.latencyMs;
      for (const peer of peers.nearest().slice(0, MAX_CALL_PEERS)) {
        const rtt = peer.rttMs ?? 0;
        // The inter-site round trip is spent before the peer's nodes start.
        if (budget !== undefined && rtt >= budget) continue;
        const q = budget === undefined ? qos : { ...qos, latencyMs: budget - rtt };
        try {
          const res = await peers.request(
            peer,
            `/api/federation/call/${encodeURIComponent(app)}/${encodeURIComponent(service)}`,
            {
              method: 'POST',
              headers: {
                ...msgpack,
                accept: 'application/msgpack',
                ...(traceId && { traceparent: traceparent(traceId) }),
              },
              body: bodyOf(encode({ input, qos: q, ...(rpc && { rpc }) })),
            },
            CALL_TIMEOUT_MS,
          );
          const bytes = new Uint8Array(await res.arrayBuffer());
          if (!res.ok) {
            o.log.warn(`federation: ${app}/${service} at ${peer.name}: HTTP ${res.status}`);
            continue;
          }
          const parsed = siteAnswer.safeParse(decode(bytes, frameLimits));
          if (parsed.success) return parsed.data as SiteAnswer;
          o.log.warn(`federation: ${peer.name} answered ${app}/${service} in an unknown shape`);
        } catch (e) {
          o.log.warn(`federation: ${app}/${service} at ${peer.name}: ${(e as Error).message}`);
        }
      }
      return undefined;
    },
    jobsElsewhere: (blobs, maxBytes) => ({
      find: (id) => findJob(peers, id, o.log),
      async fetchResult(hash) {
        if (!isSha256(hash) || (await blobs.stat(hash))) return;
        try {
          if (!(await fetchBlob(blobs, hash, maxBytes))) {
            o.log.warn(`federation: result blob ${hash.slice(0, 12)}: no peer had it`);
          }
        } catch (e) {
          // The view still answers: the blob is fetched at the next read.
          o.log.warn(`federation: result blob ${hash.slice(0, 12)}: ${(e as Error).message}`);
        }
      },
    }),
    mountJobs: (app, jobs) => mountFederatedJobs(app, { peers, jobs }),
    mount: (app, routes) =>
      mountFederation(app, {
        ...routes,
        peers,
        objects: { apply: (item) => objects.apply(item, routes) },
      }),
    drained: async () => {
      await Promise.all(outboxes.map((b) => b.drained()));
    },
    async close() {
      peers.close();
      await Promise.all(outboxes.map((b) => b.close()));
    },
  };
}

const msgpack = { 'content-type': 'application/msgpack' };
/** Bytes as a fetch body (copied into a Buffer of its own ArrayBuffer, as fetch types want). */
const bodyOf = (b: Uint8Array): Uint8Array<ArrayBuffer> => Buffer.from(b);

/** A peer's answer to a push: taken, refused for good (Refused), or to retry (anything else). */
async function answered(res: Response): Promise<void> {
  const text = await res.text().catch(() => '');
  if (res.ok) return;
  const why = `HTTP ${res.status}: ${text.slice(0, 300)}`;
  // 401/403: the keys disagree, a configuration fixed by a restart; 408/429: not now.
  const retry = res.status >= 500 || [401, 403, 408, 429].includes(res.status);
  throw retry ? new Error(why) : new Refused(why);
}
