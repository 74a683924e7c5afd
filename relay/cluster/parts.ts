/**
 * What a relay with `--redis` keeps in Redis instead of its data directory, opened in one place
 * for createRelay (relay/server.ts): apps and blob metadata, API keys, the admin token and trust
 * list, users and projects; and the news of a deploy (an app's current version changed) that
 * reaches the nodes of every relay. Blob bytes live in the shared `blobDir`, which every relay
 * of the cluster mounts: the streaming blob API (relay/blobs.ts) works on its files. The hub's
 * decisions, calls and events are kept in Redis Streams too, so every relay shows the cluster's.
 * @example const cluster = await openCluster(url, { warn });
 *          const parts = await clusterParts(cluster, { blobDir, warn });
 */

import { InputError } from '../../core/errors';
import { isAppName, isAppVersion } from '../../core/names';
import type { Apps } from '../apps';
import type { Hub } from '../hub';
import type { HubCluster } from '../hub/cluster';
import type { LogStore } from '../hub/log-store';
import { emptyProjects, type ProjectsState, projectsSchema } from '../projects';
import type { Store } from '../store';
import { type SharedAdmin, sharedAdmin } from './admin';
import { type Cluster, openCluster } from './cluster';
import { openDoc, type SharedDoc } from './doc';
import { type RedisKeyStore, redisKeys } from './keys';
import { redisLogs } from './logs';
import { redisCluster } from './nodes';
import { clusterStore } from './store';

/** The users-and-projects document's stored size at most (1000 projects of 100 apps and members). */
const MAX_PROJECTS_BYTES = 32 * 1024 * 1024;
/** The channel on which a relay tells the others that an app's current version changed. */
const CURRENT = 'apps:current';

export interface ClusterParts {
  store: Store;
  admin: SharedAdmin;
  keys: RedisKeyStore;
  projects: SharedDoc<ProjectsState>;
  /** The node registry and call forwarding across relays (relay/cluster/nodes.ts), for the hub. */
  hub: HubCluster;
  /** Decisions, calls and events in Redis Streams (relay/cluster/logs.ts), for the hub. */
  logs: LogStore;
  /** Tells the other relays that `name`'s current version is now `version`. */
  announceCurrent(name: string, version: string): Promise<void>;
  /** Calls `fn` when another relay made a version current. */
  onCurrent(fn: (name: string, version: string) => void): () => void;
  /** Stops their listening (the cluster's link stays open: it closes last). */
  close(): Promise<void>;
}

export async function clusterParts(
  cluster: Cluster,
  o: { blobDir?: string; adminToken?: string; maxKeys?: number; warn: (m: string) => void },
): Promise<ClusterParts> {
  if (o.blobDir === undefined) {
    throw new InputError(
      'blobDir: a relay with --redis needs --blob-dir, a directory every relay of the cluster shares (app files and blobs live there)',
    );
  }
  const { redis } = cluster;
  // Apps in Redis; every blob's bytes a file in the shared directory (relay/cluster/store.ts).
  const store = await clusterStore(redis, o.blobDir);
  const admin = await sharedAdmin(cluster, o.warn, o.adminToken);
  const keys = await redisKeys(redis, o.warn, { keys: o.maxKeys }, cluster);
  const projects = await openDoc(cluster, 'projects', {
    schema: projectsSchema,
    empty: emptyProjects,
    maxBytes: MAX_PROJECTS_BYTES,
    warn: o.warn,
  });
  const hub = await redisCluster(redis, { warn: o.warn });
  const logs = redisLogs(redis, { relayId: cluster.relayId, warn: o.warn });
  const currents = new Set<(name: string, version: string) => void>();
  const stop = cluster.listen(CURRENT, (message) => {
    // From Redis: hostile until checked, and one's own news is heard too.
    const m = parseCurrent(message);
    if (!m) return o.warn(`cluster: a message on ${CURRENT} that is not {relay, name, version}`);
    if (m.relay === cluster.relayId) return;
    for (const fn of currents) fn(m.name, m.version);
  });
  return {
    store,
    admin,
    keys,
    projects,
    hub,
    logs,
    announceCurrent: (name, version) =>
      cluster.publish(CURRENT, JSON.stringify({ relay: cluster.relayId, name, version })),
    onCurrent(fn) {
      currents.add(fn);
      return () => currents.delete(fn);
    },
    async close() {
      stop();
      currents.clear();
      projects.close();
      admin.close();
      await keys.close();
      await logs.close();
    },
  };
}

/** With `redis`: the cluster's link and the parts kept in Redis (for createRelay). */
export async function joinCluster(
  // createRelay's options of the same names (relay/server.ts RelayOptions).
  options: { redis?: string; blobDir?: string; adminToken?: string; maxKeys?: number },
  warn: (m: string) => void,
): Promise<{ cluster?: Cluster; shared?: ClusterParts }> {
  if (options.redis === undefined) return {};
  const cluster = await openCluster(options.redis, { warn });
  try {
    const shared = await clusterParts(cluster, {
      ...(options.blobDir !== undefined && { blobDir: options.blobDir }),
      ...(options.adminToken !== undefined && { adminToken: options.adminToken }),
      ...(options.maxKeys !== undefined && { maxKeys: options.maxKeys }),
      warn,
    });
    return { cluster, shared };
  } catch (e) {
    await cluster.close();
    throw e;
  }
}

/** Deploys and trust changes made at one relay of a cluster reach the others' nodes. */
export function wireShared(
  cluster: Cluster,
  shared: ClusterParts,
  { apps, hub, warn }: { apps: Apps; hub: Hub; warn: (m: string) => void },
): void {
  apps.onCurrent((name, version) => {
    shared.announceCurrent(name, version).catch((e: Error) => {
      warn(`the other relays were not told of ${name}@${version}: ${e.message}`);
    });
  });
  shared.onCurrent((name, version) => {
    apps.forget(name);
    hub.announce(name, version);
  });
  shared.admin.onChange(() => hub.retrust());
  // News missed while Redis was away: the current manifests are read again when next asked.
  cluster.onReconnect(() => apps.forget());
}

function parseCurrent(
  message: string,
): { relay: string; name: string; version: string } | undefined {
  try {
    const { relay, name, version } = JSON.parse(message) as Record<string, unknown>;
    if (
      typeof relay === 'string' &&
      relay.length <= 64 &&
      typeof name === 'string' &&
      typeof version === 'string' &&
      isAppName(name) &&
      isAppVersion(version)
    )
      return { relay, name, version };
  } catch {}
  return undefined;
}
