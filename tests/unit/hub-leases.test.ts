// Decision leases through a real relay (in this process, on a real port): a node reuses the
// relay's decision instead of asking each call; the relay revokes leases on a node that leaves,
// is paused or whose figures move, within one heartbeat; a call sent on a lease is never lost.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadOrCreateIdentity, memoryKeyStore } from '../../core/identity';
import type { BrumeNode } from '../../core/node/node';
import { encodeFrame, type ToNode, type ToRelay } from '../../core/protocol';
import { hopsApp } from '../apps';
import { type CallFrame, joinRaw, onCalls, type RawNode } from '../raw-node';
import { inProcessRelay } from '../relay-process';
import { testNode } from '../test-node';
import { until } from '../until';

const HEARTBEAT_MS = 2000;
type Server = Awaited<ReturnType<typeof inProcessRelay>>;
let server: Server;
/** A relay whose leases outlast any test: for the bound, which expiry would blur. */
let slow: Server;
beforeAll(async () => {
  server = await inProcessRelay({ heartbeatMs: HEARTBEAT_MS, apps: [await hopsApp()] });
  slow = await inProcessRelay({ heartbeatMs: 60_000, apps: [await hopsApp()] });
});
afterAll(async () => {
  await server?.close();
  await slow?.close();
});

/** What a node that can run the hops model reports, `over` changed. */
function beat(over: Partial<Extract<ToRelay, { t: 'heartbeat' }>> = {}): ToRelay {
  return {
    t: 'heartbeat',
    load: { queue: 0, maxConcurrency: 4 },
    apps: ['hops'],
    models: { 'hops/model': ['small', 'large'] },
    stats: {
      'hops/model/small@wasm': { count: 10, p50: 0.1 },
      'hops/model/large@wasm': { count: 10, p50: 0.1 },
    },
    paused: false,
    ...over,
  };
}

interface Target {
  node: RawNode;
  id: string;
  /** Inputs of the calls it got, in order, with when each came. */
  got: { n: number; at: number }[];
  paused: boolean;
}

/** A raw node that runs the hops model: answers `{ by, n }`, or refuses while paused. */
async function target(on = server): Promise<Target> {
  const { node, welcome } = await joinRaw(on.ws, 'dew', { keep: (f) => f.t !== 'call' });
  const t: Target = { node, id: welcome.nodeId, got: [], paused: false };
  node.send(beat());
  onCalls(node, (call: CallFrame) => {
    const n = (call.input as { n: number }).n;
    t.got.push({ n, at: performance.now() });
    if (node.ws.readyState !== node.ws.OPEN) return;
    node.ws.send(
      encodeFrame(
        t.paused
          ? { t: 'error', id: call.id, error: { code: 'E_UNAVAILABLE', message: 'paused' } }
          : { t: 'result', id: call.id, value: { by: t.id, n }, rpc: call.rpc, ms: 0.1 },
      ),
    );
  });
  await until(
    () => on.relay.hub.nodes().some((r) => r.id === t.id && r.apps.includes('hops')),
    'the target to report the hops app',
  );
  return t;
}

/** Closes raw nodes and waits until the relay has let them go (the next test places anew). */
async function leave(on: Server, ...nodes: { node: RawNode; id: string }[]) {
  for (const n of nodes) n.node.ws.close();
  const ids = new Set(nodes.map((n) => n.id));
  await until(() => !on.relay.hub.nodes().some((r) => ids.has(r.id)), 'the nodes to be gone');
}

/** A real node that cannot hold the model (no room): its calls to it always go elsewhere. */
async function holder(): Promise<BrumeNode> {
  const identity = await loadOrCreateIdentity(memoryKeyStore(), 'holder');
  const node = await testNode(server.ws, identity, { runtime: { maxModelBytes: 0 } });
  await node.whenJoined(10_000);
  return node;
}

/** Decisions the relay logged for `caller` (a leased call asks none). */
const asked = (caller: string) =>
  server.relay.hub.decisions().filter((d) => d.caller === caller && d.ok).length;

/**
 * Calls from `node`, `lanes` at a time, until `stop()`; every answer (or error) kept by input.
 */
function stream(node: BrumeNode, lanes: number, stop: () => boolean) {
  const answers = new Map<number, unknown[]>();
  let n = 0;
  const lane = async () => {
    while (!stop()) {
      const k = n++;
      const got = await node.call('hops', 'model', { n: k }).then(
        (r) => ({ by: (r.value as { by: string }).by, n: (r.value as { n: number }).n }),
        (e: unknown) => ({ error: (e as Error).message }),
      );
      answers.set(k, [...(answers.get(k) ?? []), got]);
    }
  };
  const done = Promise.all(Array.from({ length: lanes }, lane));
  return { answers, done, made: () => n };
}

/** Every call answered exactly once, with a value for its own input, by one of `by`. */
function answeredOnce(answers: Map<number, unknown[]>, made: number, by: string[]) {
  expect(answers.size).toBe(made);
  for (const [k, list] of answers) {
    expect(list, `call ${k}`).toHaveLength(1);
    const got = list[0] as { n?: number; by?: string; error?: string };
    expect(got.error, `call ${k}`).toBeUndefined();
    expect(got.n, `call ${k}`).toBe(k);
    expect(by, `call ${k}`).toContain(got.by);
  }
}

/** The node the holder's calls go to, and the other one. */
async function chosen(node: BrumeNode, a: Target, b: Target): Promise<[Target, Target]> {
  const r = await node.call('hops', 'model', { n: -1 });
  const by = (r.value as { by: string }).by;
  return by === a.id ? [a, b] : [b, a];
}

describe('decision leases', () => {
  it('reuse the relay decision instead of asking it each call', async () => {
    const [a, b] = [await target(), await target()];
    const node = await holder();
    try {
      const t0 = performance.now();
      const calls = 30;
      for (let k = 0; k < calls; k++) await node.call('hops', 'model', { n: k });
      const elapsed = performance.now() - t0;
      // A lease lasts one heartbeat: asked at most once per period, not once per call.
      const n = asked(node.nodeId);
      expect(n).toBeGreaterThanOrEqual(1);
      expect(n).toBeLessThanOrEqual(1 + Math.ceil(elapsed / HEARTBEAT_MS));
      expect(n).toBeLessThan(calls);
      expect(server.relay.hub.leases().granted).toBeGreaterThanOrEqual(1);
    } finally {
      node.close();
      node.runtime.close();
      await leave(server, a, b);
    }
  });

  it('a paused node stops getting leased calls within one heartbeat, and no call is lost', async () => {
    const [a, b] = [await target(), await target()];
    const node = await holder();
    try {
      const [first, other] = await chosen(node, a, b);
      let stop = false;
      const s = stream(node, 4, () => stop);
      await until(() => first.got.length >= 20, 'calls on the lease');
      first.paused = true;
      const pausedAt = performance.now();
      first.node.send(beat({ paused: true }));
      await until(() => other.got.filter((g) => g.at > pausedAt).length >= 40, 'calls moved');
      stop = true;
      await s.done;
      answeredOnce(s.answers, s.made(), [a.id, b.id]);
      const late = first.got.filter((g) => g.at > pausedAt);
      // Only calls already on their way when it paused reach it (and are placed again).
      expect(late.length).toBeLessThanOrEqual(8);
      for (const g of late) expect(g.at - pausedAt).toBeLessThan(HEARTBEAT_MS);
    } finally {
      node.close();
      node.runtime.close();
      await leave(server, a, b);
    }
  });

  it('a node that leaves mid-call: its calls run elsewhere, every one answered once', async () => {
    const [a, b] = [await target(), await target()];
    const node = await holder();
    try {
      const [first, other] = await chosen(node, a, b);
      let stop = false;
      const s = stream(node, 4, () => stop);
      await until(() => first.got.length >= 20, 'calls on the lease');
      // It takes calls and leaves without answering them.
      first.paused = true;
      first.node.ws.terminate();
      const leftAt = performance.now();
      await until(() => other.got.filter((g) => g.at > leftAt).length >= 40, 'calls moved');
      stop = true;
      await s.done;
      answeredOnce(s.answers, s.made(), [a.id, b.id]);
    } finally {
      node.close();
      node.runtime.close();
      await leave(server, a, b);
    }
  });
});

describe('the relay revokes leases', () => {
  /** A raw node that asks for decisions with a lease. */
  async function asker(on = server) {
    const { node, welcome } = await joinRaw(on.ws, 'dew');
    let id = 1;
    return {
      node,
      id: welcome.nodeId,
      async decide(qos: { latencyMs?: number } = {}) {
        // As a node asks after its own QoS miss: not itself.
        const frame = { app: 'hops', service: 'model', qos, exclude: [welcome.nodeId] };
        node.send({ t: 'schedule', id: id++, ...frame, lease: true });
        return node.next('decision');
      },
      /** Answered only once the relay has handled everything this node sent before. */
      async sentinel() {
        node.send({ t: 'ctx-keys', id: id++, keys: [] });
        await node.next('ctx-keys');
      },
    };
  }
  const revokes = (n: RawNode) => n.frames.filter((f) => f.t === 'lease-revoke');

  it('to a node that leaves, is paused, or whose load rises: within one heartbeat', async () => {
    for (const change of ['leave', 'pause', 'load'] as const) {
      const t = await target();
      const holderNode = await asker();
      try {
        const d = await holderNode.decide();
        expect(d.node).toBe(t.id);
        expect(d.lease).toMatchObject({ ms: HEARTBEAT_MS, app: 'hops', service: 'model' });
        if (change === 'leave') t.node.ws.close();
        if (change === 'pause') t.node.send(beat({ paused: true }));
        if (change === 'load') t.node.send(beat({ load: { queue: 4, maxConcurrency: 4 } }));
        const r = await holderNode.node.next('lease-revoke', HEARTBEAT_MS);
        expect(r).toMatchObject({ node: t.id, ids: [d.lease!.id] });
      } finally {
        await leave(server, t, holderNode);
      }
    }
  });

  it('not when figures move a little, and not past the bound on leases per node', async () => {
    const t = await target(slow);
    const h = await asker(slow);
    try {
      const d = await h.decide();
      t.node.send(beat({ load: { queue: 1, maxConcurrency: 4 } }));
      await h.sentinel();
      expect(revokes(h.node)).toEqual([]);
      expect(d.lease).toBeDefined();
      // 256 keys (a latency budget each) get a lease, the rest a bare decision.
      const got: (ToNode & { t: 'decision' })[] = [];
      for (let k = 1; k <= 300; k++) got.push(await h.decide({ latencyMs: 1000 + k }));
      expect(got.filter((g) => g.lease).length).toBe(255); // and the first one's
      expect(got.slice(-10).every((g) => g.node === t.id && !g.lease)).toBe(true);
      expect(slow.relay.hub.leases()).toMatchObject({ held: 256, refused: 45 });
    } finally {
      await leave(slow, t, h);
    }
  });
});
