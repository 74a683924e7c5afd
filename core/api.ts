/**
 * The shapes the relay's HTTP API answers with (PROTOCOL.md §6): shared by the relay that
 * produces them and the admin console that draws them.
 */
import type { ContextStorage } from './context/client';
import type { NodeView } from './placement';
import type { Capabilities, Role, SessionView } from './protocol';
import type { Qos } from './scheduler';

export interface NodeRecord extends NodeView {
  caps: Capabilities;
  /** A dew's parent fog, as given at join. */
  parent?: string;
  /** The relay its socket is on (issue 17: relays sharing a Redis); absent on a lone relay. */
  relay?: string;
  /**
   * In a cluster: sha256 (hex) of the peer token its relay gave it, so that any relay of the
   * cluster admits its PeerJS signalling socket (PROTOCOL.md §5.10). Never shown by the API.
   */
  peerKey?: string;
  joinedAt: number;
  lastSeen: number;
  /** Its context store, as its last heartbeat reported it. */
  context?: ContextStorage;
  /** A fog's open data channels (dews it passes context changes on to). */
  links?: string[];
  /** Logic workers per `app/service`, as its last heartbeat reported them. */
  workers?: Record<string, number>;
  /** Its pools' grow and shrink events, counted since it started. */
  scaled?: { grows: number; shrinks: number };
  /** Its workers over time (a sample at each change, the latest kept): the console's chart. */
  workersHistory?: WorkersSample[];
  /** Its exit heads' counts since it started, by `app/modelService` (its last heartbeat's). */
  exits?: Record<string, { calls: number; taken: number }>;
}

/** A node's workers at one time. */
export interface WorkersSample {
  at: number;
  /** Workers of every service together. */
  total: number;
  grows: number;
  shrinks: number;
}

/** Runs of a model service with an exit head on nodes of one role, since the relay started. */
export interface ExitRow {
  app: string;
  service: string;
  role: Role;
  calls: number;
  taken: number;
}

export interface DecisionRecord {
  at: number;
  app: string;
  service: string;
  qos: Qos;
  caller: string;
  node?: string;
  rpc?: string;
  estimateMs?: number;
  reason: string;
  ok: boolean;
  /** The relay that decided, in a cluster (`--redis`): its id. */
  relay?: string;
}

/** A call that went through the relay (HTTP clients, and nodes without a data channel). */
export interface CallRecord {
  at: number;
  app: string;
  service: string;
  /** The model variant that ran (from the trace), else the rpc. */
  variant: string;
  node: string;
  ms: number;
  ok: boolean;
  /** A pipeline's chosen quality level (PROTOCOL.md §5.8). */
  quality?: number;
  /** A pipeline's stages and the node each ran on (a fan-out: its branches' nodes). */
  stages?: { stage: string; nodes: string[] }[];
  /** The relay the call went through, in a cluster (`--redis`): its id. */
  relay?: string;
}

export interface HubEvent {
  at: number;
  kind:
    | 'joined'
    | 'left'
    | 'evicted'
    | 'refused'
    | 'closed'
    | 'quarantined'
    | 'released'
    | 'disagreed';
  node?: string;
  detail: string;
  /** The relay where it happened, in a cluster (`--redis`): its id. */
  relay?: string;
}

export interface AppSummary {
  name: string;
  version: string;
  description?: string;
  services: Record<string, ServiceSummary>;
  manifestSha256: string;
}

export type ServiceSummary =
  | { kind: 'logic'; rpcs: string[] }
  | {
      kind: 'model';
      task: string;
      variants: Record<
        string,
        { accuracy: number; latencyMs: number; params: number; weights: 'trained' | 'random' }
      >;
    };

/** A context key as the admin API lists it: never its value. */
export interface ContextKeyInfo {
  app: string;
  key: string;
  scope: 'app' | 'node' | 'project' | 'user';
  /** The node, user or project of a key of that scope (PROTOCOL.md §5.5). */
  owner?: string;
  deleted: boolean;
  expiresAt?: number;
  privacy?: string[];
  bytes: number;
  stamp: { wall: number; count: number; node: string };
}

/** How the relay's context changes reached nodes (`GET /api/context/fanout`). */
export interface ContextFanout {
  direct: number;
  viaFog: number;
  unsent: number;
}

/** Why a node was quarantined: its answer against another node's (relay/verify.ts). */
export interface QuarantineEvidence {
  /** The node quarantined. */
  node: string;
  at: number;
  app: string;
  service: string;
  rpc: string;
  /** Its answer, cut to 200 characters, and the SHA-256 (16 hex) of its MessagePack. */
  answer: string;
  digest: string;
  /** The node it disagreed with, and whether that one is trusted. */
  other: string;
  otherTrusted: boolean;
  otherAnswer: string;
  otherDigest: string;
  /** The first difference, e.g. `value.label: 3 ≠ 7`. */
  where: string;
  /** Decided by a trusted node's answer, or by a majority of three untrusted ones. */
  by: 'trusted' | 'majority';
}

/** A quarantined node (`GET /api/quarantine`): never placed until the admin releases it. */
export interface QuarantineEntry {
  node: string;
  since: number;
  evidence: QuarantineEvidence;
}

/** A session as the relay keeps it and `GET /api/sessions` lists it. */
export interface SessionRecord extends SessionView {
  caller: string;
  rpc: string;
  fps: number;
  energyBudgetMj?: number;
  frameBytes: number;
  localMs?: number;
  stateKey?: string;
  openedAt: number;
  /** Times it was placed again. */
  moves: number;
  /** The node told to load the app as the session's next node (`session-warm`), if any. */
  standby?: string;
  /** Its network part (Lt) on its node when placed: the look-ahead of later sessions reads it. */
  netMs: number;
}

/** A session moved from one node to another (`GET /api/sessions` `migrations`). */
export interface MigrationRecord {
  at: number;
  session: string;
  app: string;
  service: string;
  from: string;
  to: string;
  why: 'lost' | 'left' | 'figures' | 'asked';
  /** Bytes of the session's state in the context store when it moved, when it names a key. */
  stateBytes?: number;
  /** From the relay hearing of the loss or the leaving to the caller told, ms. */
  handOverMs: number;
}

/** `GET /api/sessions` (PROTOCOL.md §5.9). */
export interface SessionsAnswer {
  sessions: SessionRecord[];
  migrations: MigrationRecord[];
  /** Nodes leaving their sessions now, with why. */
  leaving: Record<string, string>;
}

/** A relay of the cluster as `GET /api/relays` lists it (PROTOCOL.md §5.10). */
export interface RelayRecord {
  /** The relay's id (a node record's and a decision's `relay`). */
  id: string;
  /** The relay that answered. */
  self: boolean;
  /** Nodes whose socket is on it, as the answering relay knows them. */
  nodes: number;
  /** When it last registered in Redis (every heartbeat period), ms since the epoch. */
  lastHeard: number;
}

/** `GET /api/relays`: the cluster's relays (a lone relay: itself only), and Redis from here. */
export interface RelaysAnswer {
  relays: RelayRecord[];
  /**
   * Redis as the answering relay reaches it; not ok: `relays` is what it last heard. A lone
   * relay: ok, `not configured`.
   */
  redis: { ok: boolean; detail: string };
}
