// What the cluster bench's parts share (cluster.ts drives; cluster-kill.ts and cluster-context.ts
// measure): the options and figures they pass, a setup as they see it, and the HTTP and socket
// helpers. Imports go one way: from here, never back to cluster.ts.
import type { NodeRecord } from '../../core/api';

/** One relay process plays thousands of nodes from one address: the socket caps lifted. */
export const CAPS = ['--max-conns-per-address', '20000', '--max-conns', '20000'];

export interface ClusterBenchOptions {
  /** Relay counts with Redis; the baseline (one relay, no Redis) always runs first. */
  relays: number[];
  /** Simulated nodes in all, joined in turn (spread evenly over the relays). */
  sizes: number[];
  /** Decision rounds and their length (ms); medians. */
  rounds: number;
  ms: number;
  /** HTTP calls per path (same relay / another relay) per size. */
  calls: number;
  /** Context watchers (spread over the relays) and writes timed; 0 leaves context out. */
  watchers: number;
  writes: number;
  /** HTTP calls in flight during the kill run. */
  lanes: number;
  log: (line: string) => void;
}

export interface ContextFigures {
  watchers: number;
  p50Ms: number;
  p99Ms: number;
  allReachedP50Ms: number;
  writesPerSecond: number;
  /** Writes some watcher never saw within 10 s. */
  missed: number;
}

/** What a setup is to the bench: its relays' URLs and processes, and a way out. */
export interface Setup {
  label: string;
  redis: boolean;
  relays: { url: string; pid: number }[];
  /**
   * The admin token, sent with the bench's calls too: behind a balancer every call reaches the
   * relays from its one address, which the per-address anonymous call limit would refuse (429).
   */
  token: string;
  /** The balancer (a cluster) or the relay itself. */
  url: string;
  kill?(i: number): Promise<void>;
  stop(): Promise<void>;
}

export const wsOf = (url: string) => `${url.replace('http', 'ws')}/ws`;

/** The nodes relay `url` lists (admin API). */
export async function listed(url: string, token: string): Promise<NodeRecord[]> {
  const res = await fetch(`${url}/api/nodes`, { headers: { authorization: `Bearer ${token}` } });
  if (res.status !== 200) throw new Error(`GET ${url}/api/nodes: ${res.status}`);
  return (await res.json()) as NodeRecord[];
}

export interface CallOptions {
  /** Pins the call to this node (its id as qos.privacy). */
  pin?: string;
  /** Sent as a bearer token: the admin token is held to no per-address call limit. */
  token?: string;
  /** Given up after this long: counted as `timeout`. */
  timeoutMs?: number;
}

/** One HTTP call to hostile/echo at `url`: its ms when answered 200, else why not (and the answer's start). */
export async function callOnce(
  url: string,
  input: unknown,
  { pin, token, timeoutMs = 30_000 }: CallOptions = {},
): Promise<{ ms?: number; why?: string; body?: string }> {
  const t0 = performance.now();
  try {
    const res = await fetch(`${url}/api/call/hostile/echo`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        ...(token && { authorization: `Bearer ${token}` }),
      },
      body: JSON.stringify({ input, ...(pin && { qos: { privacy: pin } }) }),
      signal: AbortSignal.timeout(timeoutMs),
    });
    const text = await res.text();
    // A failure's answer says whose refusal it is (a relay's typed error or the balancer's page).
    return res.status === 200
      ? { ms: performance.now() - t0 }
      : { why: String(res.status), body: text.slice(0, 300) };
  } catch (e) {
    return { why: (e as Error).name === 'TimeoutError' ? 'timeout' : 'error' };
  }
}
