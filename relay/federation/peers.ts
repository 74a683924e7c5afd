/**
 * The sites this one is federated with (seed 003): each peer is a relay (or a cluster behind a
 * balancer) at a base URL, with a key both sides share. Requests to a peer carry it as a bearer
 * key; a request from a peer is let in only with one of the configured keys (compared in constant
 * time). The round trip to each peer is measured by pinging its `/api/health`, so a call placed
 * at another site can count the inter-site latency (relay/federation/index.ts `elsewhere`).
 * @example const peers = openPeers({ site: 'paris', peers: [{ url, key }], log });
 *          const res = await peers.request(peers.list()[0]!, '/api/federation/context', init);
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { AuthError, InputError, UnavailableError } from '../../core/errors';

/** A peer as configured: its base URL and the key shared with it. */
export interface PeerConfig {
  url: string;
  key: string;
}

export interface Peer {
  readonly url: string;
  /** A short stable name for logs and outbox folders: the URL's host and port. */
  readonly name: string;
  /** Smoothed round trip to its `/api/health`, in ms; undefined until one ping answered. */
  rttMs: number | undefined;
  /** Whether its last ping answered. */
  up: boolean;
}

export interface Peers {
  /** This site's name, as peers are told (`x-brume-site`) and answers say. */
  readonly site: string;
  list(): readonly Peer[];
  /** Peers that answered their last ping, nearest first. */
  nearest(): Peer[];
  /**
   * A request to `peer` with the shared key; E_UNAVAILABLE when it cannot be reached in time (or
   * `init.signal` aborts it first).
   */
  request(peer: Peer, path: string, init?: RequestInit, timeoutMs?: number): Promise<Response>;
  /** Throws AuthError unless `authorization` is `Bearer <a configured peer key>`. */
  authorize(authorization: string | undefined): void;
  /** Pings every peer once now (tests; the timer does it every `pingMs`). */
  ping(): Promise<void>;
  close(): void;
}

/** Peers configured at most: full mesh, every change is pushed to each. */
export const MAX_PEERS = 32;
/** A shared key is 16 to 512 characters (a `brume` key, or any long random string). */
const KEY_MIN = 16;
const KEY_MAX = 512;
/** How long a request to a peer may take by default (pushes, blob fetches are given their own). */
const REQUEST_TIMEOUT_MS = 30_000;
/** How long a ping may take before the peer counts as down. */
const PING_TIMEOUT_MS = 5_000;
/** Weight of a new ping in the smoothed round trip (as TCP's SRTT). */
const RTT_WEIGHT = 0.25;
/** Site names: what `--site` accepts. */
export const SITE = /^[a-z0-9][a-z0-9._-]{0,62}$/i;

/** Checks the CLI's or the caller's peer list; InputError naming the bad entry otherwise. */
export function checkPeers(site: string, configs: readonly PeerConfig[]): void {
  if (!SITE.test(site)) {
    throw new InputError(
      `site: 1 to 63 letters, digits, '.', '_' or '-' (got "${site.slice(0, 64)}")`,
    );
  }
  if (configs.length > MAX_PEERS) {
    throw new InputError(`peers: at most ${MAX_PEERS} (got ${configs.length})`);
  }
  configs.forEach((c, i) => {
    let url: URL;
    try {
      url = new URL(c.url);
    } catch {
      throw new InputError(`peers[${i}].url: not a URL ("${String(c.url).slice(0, 64)}")`);
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
      throw new InputError(`peers[${i}].url: http or https only (got ${url.protocol})`);
    }
    if (typeof c.key !== 'string' || c.key.length < KEY_MIN || c.key.length > KEY_MAX) {
      throw new InputError(`peers[${i}].key: ${KEY_MIN} to ${KEY_MAX} characters`);
    }
  });
}

const digest = (s: string) => createHash('sha256').update(s).digest();

export function openPeers(o: {
  site: string;
  peers: readonly PeerConfig[];
  /** Ping period; default 10 s. */
  pingMs?: number;
  log: { warn(m: string): void };
}): Peers {
  checkPeers(o.site, o.peers);
  const entries = o.peers.map((c) => {
    const url = c.url.replace(/\/+$/, '');
    const peer: Peer = { url, name: new URL(url).host, rttMs: undefined, up: false };
    return { peer, key: c.key, digest: digest(c.key) };
  });
  const keyOf = new Map(entries.map((e) => [e.peer, e.key]));

  async function request(peer: Peer, path: string, init: RequestInit = {}, timeoutMs?: number) {
    const headers = new Headers(init.headers);
    headers.set('authorization', `Bearer ${keyOf.get(peer)}`);
    headers.set('x-brume-site', o.site);
    try {
      return await fetch(`${peer.url}${path}`, {
        ...init,
        headers,
        // The caller's signal (a race another peer won) cuts it short too.
        signal: init.signal
          ? AbortSignal.any([init.signal, AbortSignal.timeout(timeoutMs ?? REQUEST_TIMEOUT_MS)])
          : AbortSignal.timeout(timeoutMs ?? REQUEST_TIMEOUT_MS),
      });
    } catch (e) {
      throw new UnavailableError(`peer ${peer.name}: ${(e as Error).message}`, { cause: e });
    }
  }

  async function pingOne(peer: Peer): Promise<void> {
    const start = performance.now();
    try {
      const res = await fetch(`${peer.url}/api/health`, {
        signal: AbortSignal.timeout(PING_TIMEOUT_MS),
      });
      await res.arrayBuffer();
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      const rtt = performance.now() - start;
      peer.rttMs = peer.rttMs === undefined ? rtt : peer.rttMs + RTT_WEIGHT * (rtt - peer.rttMs);
      if (!peer.up) peer.up = true;
    } catch (e) {
      if (peer.up)
        o.log.warn(`federation: peer ${peer.name} stopped answering: ${(e as Error).message}`);
      peer.up = false;
    }
  }
  const ping = async () => {
    await Promise.all(entries.map((e) => pingOne(e.peer)));
  };
  void ping();
  const timer = setInterval(() => void ping(), o.pingMs ?? 10_000);
  timer.unref();

  return {
    site: o.site,
    list: () => entries.map((e) => e.peer),
    nearest: () =>
      entries
        .map((e) => e.peer)
        .filter((p) => p.up)
        .sort((a, b) => (a.rttMs ?? Infinity) - (b.rttMs ?? Infinity)),
    request,
    authorize(authorization) {
      const m = /^Bearer (.{1,1024})$/.exec(authorization ?? '');
      if (m) {
        const given = digest(m[1]!);
        // Every key compared, whichever matches: the time says nothing of which one.
        let ok = false;
        for (const e of entries) ok = timingSafeEqual(given, e.digest) || ok;
        if (ok) return;
      }
      throw new AuthError(
        'federation routes need Authorization: Bearer <the key shared with this site>',
      );
    },
    ping,
    close: () => clearInterval(timer),
  };
}
