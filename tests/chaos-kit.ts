// The parts of the cluster chaos test (tests/unit/cluster-chaos.test.ts) that are not the test
// itself: a seeded random source, the schedule of faults it draws, how an HTTP answer is judged
// (a typed refusal, the balancer's own page, or an anomaly), and raw nodes that keep their
// identity and rejoin through the balancer whenever their socket closes.
import { type Identity, loadOrCreateIdentity, memoryKeyStore } from '../core/identity';
import { answerCall, joinRaw, onCalls, type RawNode } from './raw-node';

/** A small seeded generator (mulberry32): the same seed draws the same schedule. */
export function seeded(seed: number): { next(): number; int(lo: number, hi: number): number } {
  let s = seed >>> 0;
  const next = () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return { next, int: (lo, hi) => lo + Math.floor(next() * (hi - lo + 1)) };
}

/** One fault, then a pause (ms) of workload before the next. */
export type Step =
  | { do: 'kill-relay'; relay: number; pauseMs: number }
  | { do: 'restart-relay'; relay: number; pauseMs: number }
  /** Redis SIGKILLed, down `downMs`, restarted on its AOF. */
  | { do: 'redis-outage'; downMs: number; pauseMs: number }
  | { do: 'node-leave'; node: number; pauseMs: number }
  | { do: 'node-join'; node: number; pauseMs: number };

/**
 * Draws `steps` faults for a cluster of `relays` relays and `nodes` node slots (all up at the
 * start). At least one relay stays up, so the workload always has somewhere to go; Redis is always
 * back between steps, so a restarted relay can open its link.
 */
export function drawSchedule(
  seed: number,
  o: { steps: number; relays: number; nodes: number },
): Step[] {
  const rng = seeded(seed);
  const up = new Set(Array.from({ length: o.relays }, (_, i) => i));
  const online = new Set(Array.from({ length: o.nodes }, (_, i) => i));
  const steps: Step[] = [];
  const pick = (from: number[]) => from[rng.int(0, from.length - 1)]!;
  while (steps.length < o.steps) {
    const pauseMs = rng.int(200, 2000);
    const down = [...Array(o.relays).keys()].filter((i) => !up.has(i));
    const offline = [...Array(o.nodes).keys()].filter((i) => !online.has(i));
    const roll = rng.next();
    if (roll < 0.25 && up.size > 1) {
      const relay = pick([...up]);
      up.delete(relay);
      steps.push({ do: 'kill-relay', relay, pauseMs });
    } else if (roll < 0.45 && down.length > 0) {
      const relay = pick(down);
      up.add(relay);
      steps.push({ do: 'restart-relay', relay, pauseMs });
    } else if (roll < 0.6) {
      steps.push({ do: 'redis-outage', downMs: rng.int(300, 3000), pauseMs });
    } else if (roll < 0.8 && online.size > 1) {
      const node = pick([...online]);
      online.delete(node);
      steps.push({ do: 'node-leave', node, pauseMs });
    } else if (offline.length > 0) {
      const node = pick(offline);
      online.add(node);
      steps.push({ do: 'node-join', node, pauseMs });
    }
  }
  return steps;
}

/** What one request came to. */
export type Outcome =
  | { kind: 'ok'; status: number; body: unknown }
  /** A refusal with a typed error (`{ error: { code, message } }`). */
  | { kind: 'typed'; status: number; code: string }
  /** HAProxy's own page: the relay it chose died under the request (502/503/504). */
  | { kind: 'balancer'; status: number }
  /** The connection broke, or nothing came within the request's bound. */
  | { kind: 'network'; detail: string }
  /** Anything else: a 5xx without a code, E_INTERNAL, a body that is no typed error. */
  | { kind: 'anomaly'; status: number; detail: string };

/** A request that hangs longer than this during the chaos is given up (counted as `network`). */
export const REQUEST_BOUND_MS = 45_000;

/** Sends one request and judges the answer. */
export async function request(
  url: string,
  init: { method: string; token: string; body?: unknown },
): Promise<Outcome> {
  let res: Response;
  try {
    res = await fetch(url, {
      method: init.method,
      headers: {
        authorization: `Bearer ${init.token}`,
        ...(init.body !== undefined && { 'content-type': 'application/json' }),
      },
      ...(init.body !== undefined && { body: JSON.stringify(init.body) }),
      signal: AbortSignal.timeout(REQUEST_BOUND_MS),
    });
  } catch (e) {
    return { kind: 'network', detail: String((e as Error).cause ?? e) };
  }
  const text = await res.text().catch((e) => `<body lost: ${e}>`);
  const type = res.headers.get('content-type') ?? '';
  if (type.includes('text/html') && [502, 503, 504].includes(res.status))
    return { kind: 'balancer', status: res.status };
  let body: unknown;
  try {
    body = JSON.parse(text || 'null');
  } catch {
    return { kind: 'anomaly', status: res.status, detail: `not JSON: ${text.slice(0, 200)}` };
  }
  if (res.ok) return { kind: 'ok', status: res.status, body };
  const code = (body as { error?: { code?: unknown } } | null)?.error?.code;
  if (typeof code !== 'string' || code === 'E_INTERNAL')
    return { kind: 'anomaly', status: res.status, detail: text.slice(0, 300) };
  return { kind: 'typed', status: res.status, code };
}

/**
 * A raw node with a fixed identity that answers every call with `{ echo: input, node }`. While
 * wanted online it rejoins through `ws` (the balancer) whenever its socket closes: a relay killed
 * under it, as a real node's reconnect would.
 */
export interface ChurnNode {
  /** Joins (if not already) and keeps rejoining. */
  online(): void;
  /** Closes its socket and stays away. */
  offline(): void;
  /** Joined now. */
  joined(): boolean;
  /** Its node id once it has joined (the same on every relay). */
  id(): string | undefined;
}

export async function churnNode(ws: string, name: string, log: (m: string) => void) {
  const identity: Identity = await loadOrCreateIdentity(memoryKeyStore(), name);
  let wanted = false;
  let node: RawNode | undefined;
  let nodeId: string | undefined;
  let joining = false;
  const join = async () => {
    if (joining) return;
    joining = true;
    while (wanted && !node) {
      try {
        const joined = await joinRaw(ws, 'dew', {
          identity,
          keep: (f) => f.t === 'challenge' || f.t === 'welcome',
        });
        if (nodeId && joined.welcome.nodeId !== nodeId)
          log(`node ${name} rejoined as ${joined.welcome.nodeId}, was ${nodeId}`);
        nodeId = joined.welcome.nodeId;
        const n = joined.node;
        onCalls(n, (f) => answerCall(n, f, { echo: f.input, node: nodeId }));
        if (!wanted) {
          n.ws.close();
          break;
        }
        node = n;
        void n.closed.then(() => {
          node = undefined;
          if (wanted) void join();
        });
      } catch {
        // The relay the balancer chose is dying or Redis is away: again shortly.
        await new Promise((r) => setTimeout(r, 200));
      }
    }
    joining = false;
  };
  const me: ChurnNode = {
    online() {
      wanted = true;
      void join();
    },
    offline() {
      wanted = false;
      node?.ws.close();
    },
    joined: () => node !== undefined,
    id: () => nodeId,
  };
  return me;
}
