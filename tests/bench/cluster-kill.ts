// A relay of a cluster killed (SIGKILL) while HTTP calls flow through the balancer: its simulated
// nodes reconnect through the balancer with their identities (as real nodes do), and the bench
// times how long until the surviving relays list them again on a live relay, how long calls
// pinned to one of them fail, and how many calls failed in all.
import { answerCall, joinRaw, onCalls, type RawNode } from '../raw-node';
import { until } from '../until';
import { type ClusterBenchOptions, callOnce, listed, type Setup, wsOf } from './cluster-kit';
import { digitsHeartbeat, quantile } from './decisions';

export interface KillRun {
  relays: number;
  /** Simulated nodes in all, and those on the killed relay. */
  nodes: number;
  moved: number;
  /** From kill -9 until every surviving relay lists all the killed relay's nodes on a live one. */
  relistedS: number;
  /**
   * From kill -9 until the first success of a call started after it, pinned to a node of the
   * killed relay.
   */
  pinnedBackS: number;
  /** Unpinned calls through the balancer: in all (after the kill) and failed. */
  calls: number;
  callsFailed: number;
  /** Failed unpinned calls by why: an HTTP status, `timeout` (30 s) or `error` (no answer). */
  failures: Record<string, number>;
  /**
   * Of those, answered 502 or 504 by HAProxy: the call was on the killed relay's own socket, its
   * caller's connection went with it (the exactly-one-answer needs a caller still there).
   */
  lostWithRelay: number;
  /** From kill -9 until the end of the last failed unpinned call (0: none failed). */
  lastFailureS: number;
  p50BeforeMs: number;
  /** The slowest unpinned call that ended after the kill (re-placed calls wait). */
  slowestAfterMs: number;
}

/** Nodes that answer calls (each once: a second handler would answer twice). */
const serving = new WeakSet<RawNode>();

/** Has `node` answer every call it gets with its input. */
export function serve(node: RawNode): void {
  if (serving.has(node)) return;
  serving.add(node);
  onCalls(node, (f) => answerCall(node, f, f.input));
}

/** Joins through the balancer as `old` (same identity), heartbeats and serves; retried. */
async function rejoin(url: string, old: RawNode): Promise<RawNode> {
  for (let tries = 1; ; tries++) {
    try {
      // Served from its first frame: the relay may place a call on it right behind `welcome`
      // (serve() after joinRaw missed those, and each waited the relay's 30 s call timeout).
      const { node } = await joinRaw(wsOf(url), 'dew', {
        identity: old.identity,
        keep: (f) => f.t !== 'decision' && f.t !== 'error',
        onCall: (f, at) => answerCall(at, f, f.input),
      });
      serving.add(node);
      digitsHeartbeat(node);
      return node;
    } catch (e) {
      // The balancer may not have taken the dead relay out yet: a real node retries too.
      if (tries >= 50) throw e;
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}

/**
 * Kills the last relay of `s` with its nodes `byRelay` joined (replaced in place by their
 * reconnections, so the caller closes those) while `o.lanes` unpinned calls and one lane pinned to
 * a node of that relay run through the balancer.
 */
export async function killRun(
  s: Setup,
  byRelay: RawNode[][],
  o: ClusterBenchOptions,
): Promise<KillRun> {
  const dead = byRelay.length - 1;
  const moving = byRelay[dead]!;
  const ids = moving.map((n) => n.identity.id);
  for (const list of byRelay) for (const node of list) serve(node);
  const before = await listed(s.relays[0]!.url, s.token);
  const deadRelay = before.find((n) => n.id === ids[0])?.relay;
  if (!deadRelay) throw new Error('the killed relay is not named in the node listing');

  // Reconnections, 50 at a time, as sockets close.
  const queue: number[] = [];
  let pumping = 0;
  const pump = async () => {
    while (queue.length > 0) {
      const k = queue.shift()!;
      moving[k] = await rejoin(s.url, moving[k]!);
    }
  };
  for (const [k, node] of moving.entries()) {
    node.ws.once('close', () => {
      queue.push(k);
      if (pumping < 50) {
        pumping++;
        void pump()
          .catch((e: unknown) => console.error(`bench: a node did not rejoin: ${e}`))
          .finally(() => pumping--);
      }
    });
  }

  const done: { start: number; end: number; ok: boolean; why?: string }[] = [];
  let stop = false;
  let i = 0;
  const logged: Record<string, number> = {};
  const lane = async () => {
    while (!stop) {
      const start = performance.now();
      const { ms, why, body } = await callOnce(s.url, i++, { token: s.token });
      // The first few failures of each kind after the kill, with what they said.
      if (why && start > killedAt) {
        logged[why] = (logged[why] ?? 0) + 1;
        if (logged[why] <= 5)
          o.log(
            `  failed call (${why}) ${((start - killedAt) / 1000).toFixed(1)} s after the kill: ${(body ?? '').replace(/\s+/g, ' ')}`,
          );
      }
      done.push({ start, end: performance.now(), ok: ms !== undefined, ...(why && { why }) });
    }
  };
  let killedAt = Number.POSITIVE_INFINITY;
  let pinnedBackAt = Number.NaN;
  const pinned = async () => {
    while (!stop) {
      const start = performance.now();
      const ok = (await callOnce(s.url, i++, { pin: ids[0], token: s.token })).ms !== undefined;
      if (ok && start > killedAt && Number.isNaN(pinnedBackAt)) pinnedBackAt = performance.now();
      if (!ok) await new Promise((r) => setTimeout(r, 100));
    }
  };
  const lanes = [...Array.from({ length: o.lanes }, lane), pinned()];
  try {
    await until(() => done.length >= 200, '200 calls before the kill', 60_000);
    killedAt = performance.now();
    await s.kill!(dead);
    o.log(`  killed relay ${dead} of ${byRelay.length} (${moving.length} nodes on it)`);
    const survivors = s.relays.filter((_, k) => k !== dead);
    for (const relay of survivors) {
      await until(
        async () => {
          const where = new Map((await listed(relay.url, s.token)).map((n) => [n.id, n.relay]));
          return ids.every((id) => where.has(id) && where.get(id) !== deadRelay);
        },
        "the killed relay's nodes listed on live relays",
        180_000,
        250,
      );
    }
    const relistedAt = performance.now();
    await until(() => !Number.isNaN(pinnedBackAt), 'a pinned call to succeed again', 120_000);
    // A while longer: calls placed on stale records before the relisting have time to fail.
    const tail = done.length;
    await until(() => done.length >= tail + 200, '200 calls after the relisting', 60_000);
    stop = true;
    await Promise.all(lanes);
    const after = done.filter((c) => c.end > killedAt);
    const failedEnds = after.filter((c) => !c.ok).map((c) => c.end);
    const failures: Record<string, number> = {};
    for (const c of after) if (!c.ok) failures[c.why!] = (failures[c.why!] ?? 0) + 1;
    return {
      relays: byRelay.length,
      nodes: byRelay.reduce((a, l) => a + l.length, 0),
      moved: moving.length,
      relistedS: (relistedAt - killedAt) / 1000,
      pinnedBackS: (pinnedBackAt - killedAt) / 1000,
      calls: after.length,
      callsFailed: failedEnds.length,
      failures,
      lostWithRelay: (failures['502'] ?? 0) + (failures['504'] ?? 0),
      lastFailureS: failedEnds.length ? (Math.max(...failedEnds) - killedAt) / 1000 : 0,
      p50BeforeMs: quantile(
        done.filter((c) => c.end <= killedAt && c.ok).map((c) => c.end - c.start),
        0.5,
      ),
      slowestAfterMs: Math.max(0, ...after.filter((c) => c.ok).map((c) => c.end - c.start)),
    };
  } finally {
    stop = true;
    await Promise.all(lanes);
    // Closed by the caller; wait for reconnections still under way, so none is left open.
    await until(() => queue.length === 0 && pumping === 0, 'reconnections to finish', 120_000);
  }
}
