// Federated sites for the federation tests (relay/federation/): in-process relays on real
// loopback ports, each with its own data directory and admin token, each the peer of all the
// others with one shared key; and the JSON request a caller or a peer makes to one of them.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRelay, type Relay, type RelayLogger, type RelayOptions } from '../relay/server';
import { freePort } from './free-port';

/** A logger that says nothing: the tests read state, not logs. */
export const silent: RelayLogger = { info() {}, warn() {}, error() {} };
/** The admin tokens of site 1 and site 2. */
export const TOKEN1 = 'admin-token-site-1-0123456789abcdef';
export const TOKEN2 = 'admin-token-site-2-0123456789abcdef';

/** One site to start. */
export interface SiteSpec {
  /** Its name in `federation.site`. */
  site: string;
  token: string;
  /** Whether it runs its cloud node. */
  cloud?: boolean;
  /** Ports of peers beyond the other sites (e.g. one that never answers). */
  morePeers?: number[];
  /** Any other relay options (e.g. `jobs`). */
  extra?: RelayOptions;
}

/** The options of a federated relay on `port` whose peers listen on `peers`, all with `key`. */
export function siteOptions(
  key: string,
  port: number,
  peers: number[],
  dataDir: string,
  spec: SiteSpec,
): RelayOptions {
  return {
    ...spec.extra,
    port,
    dataDir,
    adminToken: spec.token,
    logger: silent,
    cloudNode: spec.cloud ?? false,
    federation: {
      site: spec.site,
      peers: peers.map((p) => ({ url: `http://127.0.0.1:${p}`, key })),
      pingMs: 200,
    },
  };
}

export interface Sites {
  /** The relays, in the order of the specs. */
  relays: Relay[];
  ports: number[];
  /** Their data directories, in the same order; `close` removes them. */
  dirs: string[];
  /** Makes a fresh data directory that `close` removes too. */
  dir(site: string): Promise<string>;
  /** Closes every relay started and removes every directory. */
  close(): Promise<void>;
}

/** Starts one relay per spec, each the peer of all the others, sharing `key`. */
export async function startSites(key: string, specs: SiteSpec[]): Promise<Sites> {
  const ports: number[] = [];
  for (const _ of specs) ports.push(await freePort());
  const relays: Relay[] = [];
  const dirs: string[] = [];
  const made: string[] = [];
  const sites: Sites = {
    relays,
    ports,
    dirs,
    async dir(site) {
      const d = await mkdtemp(join(tmpdir(), `brume-${site}-`));
      made.push(d);
      return d;
    },
    async close() {
      for (const r of relays) await r.close();
      for (const d of made) await rm(d, { recursive: true, force: true });
    },
  };
  try {
    for (const [i, spec] of specs.entries()) {
      const dir = await sites.dir(spec.site);
      dirs.push(dir);
      const peers = [...ports.filter((_, j) => j !== i), ...(spec.morePeers ?? [])];
      relays.push(await createRelay(siteOptions(key, ports[i]!, peers, dir, spec)));
    }
  } catch (e) {
    await sites.close();
    throw e;
  }
  return sites;
}

/**
 * A JSON request to `relay` with `Bearer <credential>` (an admin token, an API key or the
 * federation key), cut short after `timeoutMs` when given.
 */
export async function call(
  relay: Relay,
  credential: string,
  method: string,
  path: string,
  body?: unknown,
  timeoutMs?: number,
) {
  const res = await fetch(`${relay.url}${path}`, {
    method,
    headers: {
      authorization: `Bearer ${credential}`,
      ...(body !== undefined && { 'content-type': 'application/json' }),
    },
    ...(body !== undefined && { body: JSON.stringify(body) }),
    ...(timeoutMs !== undefined && { signal: AbortSignal.timeout(timeoutMs) }),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : undefined };
}
