// A cluster as users see it (issue 17 "Done when"): a real redis-server (AOF), three relay
// processes started with --redis, and a real HAProxy in front. Nodes joined to chosen relays are
// listed at every relay and serve calls asked at another; a context write at one relay reaches
// watchers on the other two; a relay killed with SIGKILL while calls run loses none of them (each
// answered once, by a node of another relay), and its real nodes rejoin another relay through the
// balancer under the same ids; the jobs a killed relay held are claimed and finished by another.
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decode } from '../../core/codec';
import { loadOrCreateIdentity, memoryKeyStore } from '../../core/identity';
import { buildManifest, packBundle } from '../../core/manifest';
import type { BrumeNode } from '../../core/node/node';
import type { Role } from '../../core/protocol';
import { wasm } from '../apps';
import { type ClusterProcess, startCluster } from '../cluster-process';
import { jobsApi, jobWhen, submitJob } from '../jobs-http';
import { answerCall, type CallFrame, joinRaw, onCalls, type RawNode } from '../raw-node';
import { deploy } from '../relay-process';
import { closeNodes, testNode } from '../test-node';
import { until } from '../until';

const APP = 'spread';
let cluster: ClusterProcess;
/** Each relay's id in the cluster (what `GET /api/nodes` gives as a node's `relay`), by index. */
const relayIds: string[] = [];
const opened: { close(): void }[] = [];

/** An app whose `work` service any dew runs and whose `far` service runs on fog nodes only. */
async function spreadApp(): Promise<Uint8Array> {
  const files = { 'echo.wasm': wasm('echo') };
  const manifest = await buildManifest(
    {
      brume: 1,
      name: APP,
      version: '1.0.0',
      services: {
        work: {
          kind: 'logic',
          file: 'echo.wasm',
          rpcs: ['echo', 'spin'],
          limits: { timeoutMs: 60_000, memoryMiB: 16 },
        },
        far: { kind: 'logic', file: 'echo.wasm', rpcs: ['echo'], tiers: ['fog'] },
      },
    },
    files,
  );
  return packBundle(manifest, files);
}

const wsOf = (url: string) => `${url.replace('http', 'ws')}/ws`;
const relayUrl = (i: number) => cluster.relays[i]!.url;

interface TestNode {
  node: RawNode;
  id: string;
  /** The cluster id of the relay it joined. */
  relay: string;
  /** Every call it was sent, in order. */
  calls: CallFrame[];
  /** Keeps the calls from now on unanswered until `release`. */
  hold(): void;
  /** Answers the calls held, and the next ones at once. */
  release(): void;
  close(): void;
}

/** A raw node joined to `url` that answers each call `{ by: name, input }` (unless holding). */
async function rawNode(url: string, name: string, role: Role = 'dew'): Promise<TestNode> {
  const { node, welcome, challenge } = await joinRaw(wsOf(url), role);
  const calls: CallFrame[] = [];
  let held: CallFrame[] | undefined;
  const answer = (c: CallFrame) => answerCall(node, c, { by: name, input: c.input });
  onCalls(node, (c) => {
    calls.push(c);
    if (held) held.push(c);
    else answer(c);
  });
  const t: TestNode = {
    node,
    id: welcome.nodeId,
    relay: challenge.relayId,
    calls,
    hold: () => {
      held ??= [];
    },
    release() {
      const waiting = held ?? [];
      held = undefined;
      for (const c of waiting) answer(c);
    },
    close: () => node.ws.close(),
  };
  opened.push(t);
  return t;
}

/** `GET /api/nodes` at `url`, with the cluster's admin token. */
async function nodesAt(url: string): Promise<{ id: string; relay?: string }[]> {
  const res = await fetch(`${url}/api/nodes`, {
    headers: { authorization: `Bearer ${cluster.token}` },
  });
  expect(res.status).toBe(200);
  return (await res.json()) as { id: string; relay?: string }[];
}

/** `POST /api/call/spread/:service` at `url`: the status and the body. */
async function call(url: string, service: string, input: unknown, rpc?: string) {
  const res = await fetch(`${url}/api/call/${APP}/${service}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ input, ...(rpc && { rpc }) }),
  });
  return {
    status: res.status,
    body: (await res.json()) as {
      value?: unknown;
      node?: string;
      error?: { code: string; message: string };
    },
  };
}

/** Resolves once every relay in `at` lists every node of `nodes` on the relay given. */
async function listedEverywhere(at: number[], nodes: { id: string; relay: string }[]) {
  for (const i of at) {
    await until(async () => {
      const listed = await nodesAt(relayUrl(i));
      return nodes.every((n) => listed.some((l) => l.id === n.id && l.relay === n.relay));
    }, `relay ${i} to list every node on its relay`);
  }
}

beforeAll(async () => {
  cluster = await startCluster({ relays: 3, args: ['--no-cloud'] });
  const res = await deploy({ url: cluster.url, token: cluster.token }, await spreadApp());
  expect(res.status).toBe(201);
  // Each relay's cluster id, from the challenge it sends a joining node.
  for (let i = 0; i < 3; i++) {
    const { node, challenge } = await joinRaw(wsOf(relayUrl(i)));
    relayIds.push(challenge.relayId);
    node.ws.close();
  }
}, 120_000);

afterAll(async () => {
  for (const o of opened) o.close();
  await cluster?.stop();
});

describe('a cluster of three relays behind HAProxy', () => {
  it('lists every node at every relay; a call at B runs on the only node able, on A, once', async () => {
    const fog = await rawNode(relayUrl(0), 'fog-a', 'fog');
    const dews = [await rawNode(relayUrl(1), 'dew-b'), await rawNode(relayUrl(2), 'dew-c')];
    const all = [fog, ...dews];
    expect(all.map((n) => n.relay)).toEqual(relayIds);
    await listedEverywhere([0, 1, 2], all);
    // Only a fog node may run `far`: the one on relay A.
    const res = await call(relayUrl(1), 'far', 'hello');
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    expect(res.body).toMatchObject({ value: { by: 'fog-a', input: 'hello' }, node: fog.id });
    expect(fog.calls).toHaveLength(1);
    for (const d of dews) expect(d.calls).toHaveLength(0);
    // And through the balancer, whichever relay takes it.
    for (let i = 0; i < 3; i++) {
      const again = await call(cluster.url, 'far', i);
      expect(again.body).toMatchObject({ value: { by: 'fog-a', input: i }, node: fog.id });
    }
    expect(fog.calls).toHaveLength(4);
    for (const n of all) n.close();
  }, 60_000);

  it('a context write through A reaches the watchers on B and on C', async () => {
    const watchers = [await rawNode(relayUrl(1), 'watch-b'), await rawNode(relayUrl(2), 'watch-c')];
    for (const w of watchers) {
      w.node.send({ t: 'ctx-sync', cursor: 0, apps: [APP] });
      await w.node.next('ctx-catchup', 20_000);
    }
    const put = await fetch(`${relayUrl(0)}/api/context/${APP}/colour`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${cluster.token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ value: 'teal' }),
    });
    expect(put.status, await put.clone().text()).toBe(200);
    const got = [];
    for (const w of watchers) {
      const f = await w.node.next('ctx-op', 20_000);
      expect(f.op).toMatchObject({ app: APP, key: 'colour', kind: 'put' });
      expect(decode(f.op.value!)).toBe('teal');
      got.push(f.seq);
    }
    // One log: the same position at every relay.
    expect(got[0]).toBe(got[1]);
    for (let i = 0; i < 3; i++) {
      const read = await fetch(`${relayUrl(i)}/api/context/${APP}/colour`, {
        headers: { authorization: `Bearer ${cluster.token}` },
      });
      expect(((await read.json()) as { value: unknown }).value).toBe('teal');
    }
    for (const w of watchers) w.close();
  }, 60_000);

  it('kill -9 of A while calls run: each answered once, its nodes rejoin B or C as themselves', async () => {
    // Real nodes (core/node, reconnecting with backoff) join through the balancer while B and C
    // take no new connection: they land on A.
    await cluster.balancer.setState(cluster.name(1), 'drain');
    await cluster.balancer.setState(cluster.name(2), 'drain');
    const real: BrumeNode[] = [];
    try {
      for (const name of ['real-1', 'real-2']) {
        const identity = await loadOrCreateIdentity(memoryKeyStore(), name);
        const n = await testNode(wsOf(cluster.url), identity, {
          maxConcurrency: 2,
          maxQueued: 32,
          runtime: { logicWorkers: 2 },
          backoff: { initialMs: 100, maxMs: 1000 },
        });
        real.push(n);
        await n.whenJoined(30_000);
      }
    } finally {
      await cluster.balancer.setState(cluster.name(1), 'ready');
      await cluster.balancer.setState(cluster.name(2), 'ready');
    }
    // Closed however the test ends: left joined, they would take the next test's jobs.
    try {
      const ids = real.map((n) => n.runtime.id);
      await listedEverywhere(
        [1, 2],
        ids.map((id) => ({ id, relay: relayIds[0]! })),
      );
      // 30 calls, asked at B and at C, each with its own n: an answer tells which call it is.
      // Only A's nodes can take them now.
      const base = 400_000_000;
      const calls = Array.from({ length: 30 }, (_, i) =>
        call(relayUrl(1 + (i % 2)), 'work', { n: base + i }, 'spin'),
      );
      const atA = () => real.reduce((s, n) => s + n.busy + n.waiting, 0);
      await until(() => atA() >= 10, 'calls running and waiting on the nodes of A', 60_000);
      // A node on B, to take what A had: its calls run again there (or on A's nodes, back).
      const onB = await rawNode(relayUrl(1), 'raw-b');
      await listedEverywhere([2], [onB]);
      expect(atA()).toBeGreaterThan(0);
      await cluster.kill(0);
      const answers = await Promise.all(calls);
      for (const [i, a] of answers.entries()) {
        expect(a.status, JSON.stringify(a.body)).toBe(200);
        // The raw node echoes its input; a real one answers spin's { n, x }.
        const value = a.body.value as { n?: number; input?: { n: number } };
        expect(value.n ?? value.input?.n).toBe(base + i);
        expect([...ids, onB.id]).toContain(a.body.node);
      }
      // The raw node never lost its socket: no call reached it twice.
      const seen = onB.calls.map((c) => (c.input as { n: number }).n);
      expect(new Set(seen).size).toBe(seen.length);

      // A's nodes rejoined through the balancer, on B or C, under the same ids.
      await cluster.balancer.untilDown(cluster.name(0));
      for (const n of real) await until(() => n.status === 'joined', 'a node of A to rejoin');
      expect(real.map((n) => n.runtime.id)).toEqual(ids);
      const listed = await until(async () => {
        const l = await nodesAt(relayUrl(2));
        const mine = ids.map((id) => l.find((x) => x.id === id));
        return mine.every((m) => m && m.relay !== relayIds[0]) && mine;
      }, 'the nodes of A listed on B or C');
      for (const m of listed) expect([relayIds[1], relayIds[2]]).toContain(m!.relay);
      // With the raw node gone, calls through the balancer run on them, once they are through the
      // runs A had placed (they ran on, their answers for nobody: that relay is gone).
      onB.close();
      await until(() => atA() === 0, 'the nodes of A through what A had placed', 60_000);
      await until(async () => {
        const l = await nodesAt(relayUrl(1));
        return !l.some((x) => x.id === onB.id);
      }, 'the raw node gone');
      for (let i = 0; i < 4; i++) {
        const a = await call(cluster.url, 'work', `after ${i}`, 'echo');
        expect(a.status, JSON.stringify(a.body)).toBe(200);
        expect(a.body.value).toBe(`after ${i}`);
        expect(ids).toContain(a.body.node);
      }
    } finally {
      closeNodes(real);
    }
  }, 120_000);

  it('the jobs a relay held when killed are claimed and finished by another', async () => {
    // A is dead (the test before); B and C each get a node that holds its calls.
    const nodes = [await rawNode(relayUrl(1), 'job-b'), await rawNode(relayUrl(2), 'job-c')];
    for (const n of nodes) n.hold();
    await listedEverywhere([1, 2], nodes);
    const at = { url: cluster.url, token: cluster.token };
    const ids: string[] = [];
    for (let i = 0; i < 8; i++) {
      ids.push(await submitJob(at, { app: APP, service: 'work', rpc: 'echo', input: { job: i } }));
    }
    // Runs reach the nodes, which hold them (a node's slots full, the other jobs wait queued).
    const redis = new Redis(cluster.redis.url);
    const meta = await until(
      async () => {
        const m = await redis.hgetall('brume:jobs:meta');
        const running = ids.filter((id) => m[id]?.startsWith('running ')).length;
        const held = nodes.reduce((s, n) => s + n.calls.length, 0);
        return running >= 2 && held >= 2 && m;
      },
      'two jobs running, their runs held at the nodes',
      60_000,
    ).finally(() => redis.disconnect());
    // Which relay holds each job (running, or read from the queue): the queue's record in Redis.
    const holder = new Map(ids.map((id) => [id, meta[id]?.split(' ')[2]]));
    const count = (r: string) => ids.filter((id) => holder.get(id) === r).length;
    const victim = count(relayIds[1]!) >= count(relayIds[2]!) ? 1 : 2;
    const survivor = 3 - victim;
    const lost = ids.filter((id) => holder.get(id) === relayIds[victim]);
    expect(lost.length).toBeGreaterThan(0);
    await cluster.kill(victim);
    nodes[survivor - 1]!.release();
    const views = () =>
      Promise.all(
        ids.map((id) =>
          jobsApi(relayUrl(survivor), 'GET', `/api/jobs/${id}`, at).then((r) => r.body),
        ),
      );
    for (const id of ids) {
      const done = await jobWhen({ url: relayUrl(survivor), token: cluster.token }, id, [
        'succeeded',
        'failed',
      ]).catch(async (e: Error) => {
        throw new Error(`${e.message}; jobs: ${JSON.stringify(await views())}; lost: ${lost}`);
      });
      expect(done.state, JSON.stringify(done)).toBe('succeeded');
      if (lost.includes(id)) {
        // A run the dead relay started counts; a job it had only read from the queue did not run.
        if (meta[id]?.startsWith('running ')) expect(done.attempts).toBeGreaterThanOrEqual(2);
        expect(done.result).toMatchObject({ by: `job-${'bc'[survivor - 1]}` });
      }
    }
    // Read through the balancer too: the same final state.
    const one = await jobsApi(cluster.url, 'GET', `/api/jobs/${lost[0]}`, { token: cluster.token });
    expect(one.body.state).toBe('succeeded');
  }, 120_000);
});
