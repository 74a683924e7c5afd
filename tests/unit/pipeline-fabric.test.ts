// Pipelines through a real relay (in this process, on a loopback port) and real nodes joined over
// WebSockets: HTTP and a node's call both place the stages over the fabric, the trace says where
// each ran, and a node lost while it runs a fan-out branch still leaves one complete answer.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decode, encode } from '../../core/codec';
import { loadOrCreateIdentity, memoryKeyStore } from '../../core/identity';
import type { BrumeNode } from '../../core/node/node';
import type { TraceEntry } from '../../core/runtime';
import { pipelineApp } from '../apps';
import { inProcessRelay } from '../relay-process';
import { closeNodes, joinHolding, testNode } from '../test-node';
import { until } from '../until';

let server: Awaited<ReturnType<typeof inProcessRelay>>;
let nodes: BrumeNode[] = [];

beforeAll(async () => {
  server = await inProcessRelay({ apps: [await pipelineApp()] });
  const specs = ['a', 'b', 'c'].map((name) => ({ name, slots: 2 }));
  nodes = await joinHolding(server.ws, server.relay.hub, 'chain', specs);
}, 120_000);

afterAll(async () => {
  closeNodes(nodes);
  await server?.close();
});

/** The spin Logic's answer for `n` rounds, computed here. */
function spun(n: number): number {
  let x = 1;
  for (let i = 0; i < n; i++) x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
  return x;
}

const where = (trace: TraceEntry[]) =>
  trace.map((t) => `${t.stage}${t.branch === undefined ? '' : `[${t.branch}]`}@${t.node}`);

describe('pipelines over the fabric', () => {
  it('answers POST /api/call/<app>/<pipeline> in MessagePack, spread over the nodes', async () => {
    const jobs = [{ n: 1000 }, { n: 2000 }, { n: 3000 }, { n: 4000 }, { n: 5000 }, { n: 6000 }];
    const res = await fetch(`${server.relay.url}/api/call/chain/spin`, {
      method: 'POST',
      headers: { 'content-type': 'application/msgpack', accept: 'application/msgpack' },
      body: Buffer.from(encode({ input: { jobs } })),
    });
    expect(res.status).toBe(200);
    const a = decode(new Uint8Array(await res.arrayBuffer())) as {
      value: { work: { n: number; x: number }[]; ms: number };
      trace: TraceEntry[];
      node: string;
    };
    expect(a.value.work.map((w) => [w.n, w.x])).toEqual(jobs.map((j) => [j.n, spun(j.n)]));
    const ids = new Set(nodes.map((n) => n.runtime.id));
    for (const t of a.trace) expect(ids.has(t.node!), where(a.trace).join(' ')).toBe(true);
    // The six branches were dealt over the three nodes, not all run on one.
    const branchNodes = new Set(a.trace.filter((t) => t.stage === 'work').map((t) => t.node));
    expect(branchNodes.size).toBe(3);
    expect(
      a.trace
        .filter((t) => t.stage === 'work')
        .map((t) => t.branch)
        .sort(),
    ).toEqual([0, 1, 2, 3, 4, 5]);
  });

  it("runs a node's own pipeline call with that node as the source (NI stage on it)", async () => {
    const [a] = nodes;
    // The relay places on the load each node last put in a heartbeat (every 2 s): one sent while
    // a served the branches of the call before leaves it "no free slot" until the next, and a
    // node with no free slot is rightly passed over. The claim is about a source with room, so
    // wait until the relay has heard that a has it.
    await until(
      () => server.relay.hub.nodes().some((n) => n.id === a!.runtime.id && n.queue === 0),
      'the relay hearing that a is idle',
    );
    const r = await a!.call('chain', 'spin', { jobs: [{ n: 10 }, { n: 20 }] });
    expect(r.via).toBe('relay');
    const prepare = r.trace.find((t) => t.stage === 'prepare');
    expect(prepare?.node).toBe(a!.runtime.id);
    expect((r.value as { work: { x: number }[] }).work.map((w) => w.x)).toEqual([
      spun(10),
      spun(20),
    ]);
  });

  it('keeps every stage on the caller for privacy "device"', async () => {
    const [, b] = nodes;
    const r = await b!.call(
      'chain',
      'spin',
      { jobs: [{ n: 1 }, { n: 2 }, { n: 3 }] },
      {
        privacy: 'device',
      },
    );
    expect(r.via).toBe('local');
    expect(new Set(r.trace.map((t) => t.node))).toEqual(new Set([b!.runtime.id]));
  });

  it('runs a stage whose service has tiers only on a node of those roles', async () => {
    const call = () =>
      fetch(`${server.relay.url}/api/call/chain/tiered`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ input: { hello: 1 } }),
      });
    // Only dews: nothing may run the fog-only stage.
    const none = await call();
    expect(none.status).toBe(503);
    expect(((await none.json()) as { error: { message: string } }).error.message).toMatch(
      /no node can run stage "far"/,
    );
    const fogId = await loadOrCreateIdentity(memoryKeyStore(), 'tiered-fog');
    await server.relay.admin.trust(fogId.publicKey, 'tiered fog');
    const fog = await testNode(server.ws, fogId, { role: 'fog', refresh: true });
    try {
      await until(
        () =>
          server.relay.hub.nodes().some((n) => n.id === fog.runtime.id && n.apps.includes('chain')),
        'the fog holding chain',
      );
      const res = await call();
      expect(res.status).toBe(200);
      const a = (await res.json()) as { value: unknown; trace: TraceEntry[] };
      expect(a.value).toMatchObject({ hello: 1 });
      const far = a.trace.filter((t) => t.stage === 'far');
      expect(far.map((t) => t.node)).toEqual([fog.runtime.id]);
    } finally {
      closeNodes([fog]);
      await until(
        () => !server.relay.hub.nodes().some((n) => n.id === fog.runtime.id),
        'the fog gone',
      );
    }
  });

  it('still answers once, complete and right, when a node running a branch is lost', async () => {
    const [a, b, c] = nodes;
    const n = 200_000_000;
    const jobs = [{ n }, { n: n + 1 }, { n: n + 2 }];
    const call = a!.call('chain', 'spin', { jobs });
    // A branch runs on b or c (the branches are dealt over all three): lose that node mid-run.
    await until(() => b!.busy > 0 || c!.busy > 0, 'a branch running on another node');
    const victim = b!.busy > 0 ? b! : c!;
    victim.close();
    victim.runtime.close();
    const r = await call;
    const work = (r.value as { work: { n: number; x: number }[] }).work;
    expect(work.map((w) => w.n)).toEqual(jobs.map((j) => j.n));
    expect(work.map((w) => w.x)).toEqual(jobs.map((j) => spun(j.n)));
    // Exactly one result per branch, none from the lost node.
    const branches = r.trace.filter((t) => t.stage === 'work');
    expect(branches.map((t) => t.branch).sort()).toEqual([0, 1, 2]);
    expect(branches.some((t) => t.node === victim.runtime.id)).toBe(false);
  }, 120_000);
});
