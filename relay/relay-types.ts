/**
 * What `createRelay` (relay/server.ts) takes and gives: its options and the running relay. Kept
 * apart from the wiring so that modules the wiring imports can name the options without a cycle.
 */
import type { Admin } from './admin';
import type { DeployResult } from './apps';
import type { BlobLimits } from './blob-refs';
import type { Blobs } from './blobs';
import type { LogicCaps } from './cloud-node';
import type { Cluster } from './cluster/cluster';
import type { ContextOptions, RelayContext } from './context';
import type { FederationOptions } from './federation';
import type { JobAccess } from './http/jobs';
import type { Hub } from './hub';
import type { HubCluster } from './hub/cluster';
import type { JobLimits, Jobs } from './jobs';
import type { KeyStore } from './keys';
import type { HubLimits } from './limits';
import type { LogOptions, RelayLogger } from './log';
import type { RelayMetrics } from './metrics';
import type { Projects } from './projects';
import type { Store } from './store';

export interface RelayOptions {
  /** Interface to listen on; default 127.0.0.1 (this machine only). */
  host?: string;
  /** Default 8787; 0 picks a free port (read it back from `Relay.port`). */
  port?: number;
  /** Storage directory, default `.brume`; ignored when `store` is given. */
  dataDir?: string;
  /** A ready store (e.g. Redis-backed) instead of the file system under `dataDir`. */
  store?: Store;
  /**
   * `redis://host:port[/db]`: this relay is one of a cluster sharing that Redis (apps, keys,
   * admin token, trust list, users and projects there; relay/cluster/). Needs `blobDir`.
   */
  redis?: string;
  /** The other relays' nodes and channels instead of the ones `redis` opens (tests: other bounds). */
  hubCluster?: HubCluster;
  /** With `redis`: the directory every relay of the cluster shares for blob bytes and app files. */
  blobDir?: string;
  /** The admin token to use instead of the one kept in the data directory (never written there). */
  adminToken?: string;
  /** The built web app, default `dist/web`. */
  webRoot?: string;
  /** `.brume` files deployed, in order, when the store holds no app yet. */
  appsToSeed?: string[];
  /** Largest bundle accepted by `POST /api/apps`, in bytes; default 256 MiB. */
  bodyLimit?: number;
  /**
   * Where relay events go instead of the relay's own logger (then Fastify logs no request
   * lines); default Fastify's logger (pino) as `log` sets it up.
   */
  logger?: RelayLogger;
  /** The relay's own logger: level, JSON lines or pino-pretty (relay/log.ts). */
  log?: LogOptions;
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
  /** How long a call the relay runs on a node may take before its caller gets E_TIMEOUT; default 30 000 ms. */
  callTimeoutMs?: number;
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
  /** Blobs: largest upload (1 GiB), collection grace (24 h), uploads at once (16); a clock. */
  blobs?: Partial<BlobLimits>;
  blobClock?: () => number;
  /**
   * How long a node may reuse a scheduling decision (a lease, PROTOCOL.md §5.3.2); 0: nodes ask
   * the relay every call. Default and most: the heartbeat period.
   */
  leaseMs?: number;
  /** Bounds on jobs: queued or running, input bytes, attempts, result-blob threshold... */
  jobs?: Partial<JobLimits>;
  /**
   * Who may read or submit/cancel an app's jobs, beyond the `jobs` scope; default: the app's
   * project decides (relay/projects.ts `access`), an app in no project is open to `jobs`.
   */
  jobAccess?: JobAccess;
  /** Links to peer sites (relay/federation/): apps and global context pushed, calls placed there. */
  federation?: FederationOptions;
}

export interface Relay {
  /** Base URL to open in a browser, e.g. `http://127.0.0.1:8787`. */
  readonly url: string;
  readonly port: number;
  readonly store: Store;
  /** Blobs streamed in and out, their referrers and their collection (relay/blobs.ts). */
  readonly blobs: Blobs;
  /** The WebSocket hub: connected nodes, scheduling decisions, events. */
  readonly hub: Hub;
  /** The admin token and the fog trust list. */
  readonly admin: Admin;
  /** The API keys the admin made. */
  readonly keys: KeyStore;
  /** Users, projects, and who may read, write or deploy an app (`projects.access`). */
  readonly projects: Projects;
  /** The durable context store. */
  readonly context: RelayContext;
  /** Asynchronous jobs (relay/jobs/). */
  readonly jobs: Jobs;
  /** Where the relay logs (pino's shape). */
  readonly log: RelayLogger;
  /** Its Prometheus registry and metrics, as `GET /metrics` shows them. */
  readonly metrics: RelayMetrics;
  /** Its cluster (relay id, Redis link, channels) when started with `redis`. */
  readonly cluster: Cluster | undefined;
  /** Verifies and stores a bundle, as `POST /api/apps` does (without a credential check). */
  deploy(bundle: Uint8Array): Promise<DeployResult>;
  /** Makes a deployed version current, as `POST /api/apps/:name/current` does. */
  setCurrent(name: string, version: string): Promise<{ name: string; version: string }>;
  /**
   * Graceful shutdown: refuses new calls (HTTP 503 with Retry-After, nodes E_UNAVAILABLE), tells
   * the nodes, lets calls in flight finish for up to `ms` and fails the rest with E_UNAVAILABLE,
   * then closes as `close` does (the context log flushed). Answers how many were in flight and
   * how many the deadline failed.
   */
  drain(ms: number): Promise<{ inFlight: number; failed: number }>;
  /** Stops listening, waits for requests in flight and flushes the context log; idempotent. */
  close(): Promise<void>;
}
