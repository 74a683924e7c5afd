// Honest placement (issue 10 item 5): the relay times nodes itself, checks answers by redundant
// execution and quarantines nodes that lie. Nodes are driven by hand (tests/raw-node.ts) against
// a real relay on a real port; they answer digits the way a classifier would, or wrongly.
import { execFile } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadOrCreateIdentity, memoryKeyStore } from '../../core/identity';
import { createMeter } from '../../relay/measure';
import { differ } from '../../relay/verify';
import { claim, honestBundle, key, right, serve, wrong } from '../honest-app';
import { joinRaw, type RawNode } from '../raw-node';
import { inProcessRelay, startRelay } from '../relay-process';
import { until } from '../until';

type Relay = Awaited<ReturnType<typeof inProcessRelay>>['relay'];

/** Closes the nodes and waits until the relay has let them go (the next test starts clean). */
async function leave(relay: Relay, ...nodes: { node: RawNode; id: string }[]) {
  for (const n of nodes) n.node.ws.close();
  const ids = new Set(nodes.map((n) => n.id));
  await until(() => !relay.hub.nodes().some((n) => ids.has(n.id)), 'the nodes to leave');
}

async function joinClaiming(relay: Relay, ws: string, p50: number, role: 'dew' | 'fog' = 'dew') {
  const identity = await loadOrCreateIdentity(memoryKeyStore(), role);
  if (role === 'fog') await relay.admin.trust(identity.publicKey, 'honest fog');
  const { node, welcome } = await joinRaw(ws, role, { identity });
  claim(node, p50);
  const id = welcome.nodeId;
  await until(() => relay.hub.nodes().find((n) => n.id === id)?.stats[key], 'its heartbeat');
  return { node, id };
}

async function call(relay: Relay, d: number, qos: Record<string, unknown> = {}) {
  const res = await fetch(`${relay.url}/api/call/honest/classify`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ input: d, qos }),
  });
  const body = (await res.json()) as {
    node?: string;
    value?: unknown;
    error?: { code: string; message: string };
  };
  return { status: res.status, body };
}

describe('the relay times nodes itself', () => {
  let server: Awaited<ReturnType<typeof inProcessRelay>>;
  beforeAll(async () => {
    server = await inProcessRelay({ heartbeatMs: 1000 });
    await server.relay.deploy(await honestBundle());
  });
  afterAll(() => server.close());

  it('a node that claims 0 ms but is slow loses to an honest faster one once both are measured', async () => {
    const { relay } = server;
    const ws = `${relay.url.replace('http', 'ws')}/ws`;
    const liar = await joinClaiming(relay, ws, 0);
    const honest = await joinClaiming(relay, ws, 20);
    serve(liar.node, right, 200);
    serve(honest.node, right, 20);
    const served: string[] = [];
    for (let d = 0; d < 12; d++) {
      const r = await call(relay, d);
      expect(r.status).toBe(200);
      served.push(r.body.node ?? '');
    }
    // The claim wins until the relay has three samples of the liar, then never again.
    expect(served.slice(0, 3)).toEqual([liar.id, liar.id, liar.id]);
    expect(served.slice(3)).toEqual(Array(9).fill(honest.id));
    const byId = new Map(relay.hub.nodes().map((n) => [n.id, n]));
    expect(byId.get(liar.id)!.measured![key]).toMatchObject({ count: 3 });
    expect(byId.get(liar.id)!.measured![key]!.p50).toBeGreaterThan(100);
    expect(byId.get(honest.id)!.measured![key]!.count).toBe(9);
    // Placement now works from the relay's figure for the honest node too.
    const route = await relay.hub.decide('honest', 'classify', {}, '');
    expect(route.node).toBe(honest.id);
    await leave(relay, liar, honest);
  });

  it('costs a node that timed out at the timeout until most of its newer answers are faster', () => {
    const meter = createMeter();
    const n = { id: 'n', stats: {}, measured: meter.of('n') };
    const shape = { key, models: [], variant: 'small' };
    for (let i = 0; i < 3; i++) meter.answered(n, shape, 5);
    expect(n.measured[key]).toEqual({ count: 3, p50: 5 });
    meter.timedOut(n, shape, 30_000);
    expect(n.measured[key]!.p50).toBe(30_000);
    for (let i = 0; i < 3; i++) meter.answered(n, shape, 5);
    expect(n.measured[key]!.p50).toBe(30_000);
    meter.answered(n, shape, 5);
    expect(n.measured[key]!.p50).toBe(5);
  });

  it('keeps figures for a bounded number of nodes, forgetting the least recently measured', () => {
    const meter = createMeter({ maxNodes: 2 });
    const shape = { key, models: [], variant: 'small' };
    const node = (id: string) => ({ id, stats: {}, measured: meter.of(id) });
    for (const id of ['a', 'b', 'a', 'c']) meter.answered(node(id), shape, 5);
    expect(meter.of('a')[key]).toMatchObject({ count: 2 });
    expect(meter.of('c')[key]).toMatchObject({ count: 1 });
    expect(meter.of('b')).toEqual({}); // forgotten: measured least recently when c came
  });

  it('gives a Logic the time its model stages do not account for', () => {
    const meter = createMeter();
    const model = 'honest/model/small@wasm';
    // The node claims its model stage takes 0 ms: the whole time lands on the Logic.
    const n = { id: 'n', stats: { [model]: { count: 9, p50: 0 } }, measured: meter.of('n') };
    const shape = {
      key: 'honest/main/run@logic',
      models: [{ key: model, priorMs: 5 }],
      variant: 'small',
    };
    for (let i = 0; i < 3; i++) meter.answered(n, shape, 40);
    expect(n.measured['honest/main/run@logic']!.p50).toBe(40);
    const truthful = {
      id: 'm',
      stats: { [model]: { count: 9, p50: 30 } },
      measured: meter.of('m'),
    };
    for (let i = 0; i < 3; i++) meter.answered(truthful, shape, 40);
    expect(truthful.measured['honest/main/run@logic']!.p50).toBe(10);
  });
});

describe('redundant execution and quarantine', () => {
  let server: Awaited<ReturnType<typeof inProcessRelay>>;
  let relay: Relay;
  let ws: string;
  const auth = () => ({ authorization: `Bearer ${relay.admin.token}` });
  beforeAll(async () => {
    server = await inProcessRelay({ heartbeatMs: 1000, verifyFraction: 0.5 });
    relay = server.relay;
    ws = `${relay.url.replace('http', 'ws')}/ws`;
    await relay.deploy(await honestBundle());
  });
  afterAll(() => server.close());

  it('quarantines a node that claims 0 ms and answers wrong digits, within a bounded number of calls', async () => {
    const fog = await joinClaiming(relay, ws, 30, 'fog');
    const liar = await joinClaiming(relay, ws, 0);
    serve(fog.node, right, 30);
    const liarCalls = serve(liar.node, wrong, 0);
    // Half the liar's calls are checked on the trusted fog: 60 calls leave it a 2⁻⁶⁰ chance.
    let calls = 0;
    while (!relay.hub.quarantined().some((q) => q.node === liar.id) && calls < 60) {
      await call(relay, calls++);
    }
    expect(relay.hub.quarantined().map((q) => q.node)).toContain(liar.id);
    const served = liarCalls.length;
    // From now on it is never placed: every answer is the fog's, and right.
    for (let d = 0; d < 5; d++) {
      const r = await call(relay, d);
      expect(r.body).toMatchObject({ node: fog.id, value: right(d) });
    }
    expect(liarCalls).toHaveLength(served);
    // The evidence, behind the admin token.
    expect((await fetch(`${relay.url}/api/quarantine`)).status).toBe(401);
    const list = await (await fetch(`${relay.url}/api/quarantine`, { headers: auth() })).json();
    expect(list[0]).toMatchObject({
      node: liar.id,
      evidence: {
        app: 'honest',
        service: 'classify',
        rpc: 'small',
        other: fog.id,
        otherTrusted: true,
        by: 'trusted',
        where: expect.stringMatching(/^value\.label: \d ≠ \d$/),
        answer: expect.stringMatching(/"label"/),
        digest: expect.stringMatching(/^[0-9a-f]{16}$/),
      },
    });
    expect(relay.hub.events().some((e) => e.kind === 'quarantined' && e.node === liar.id)).toBe(
      true,
    );
    // The admin releases it: placed again (it still claims 0 ms and is fast).
    const del = () =>
      fetch(`${relay.url}/api/quarantine/${liar.id}`, { method: 'DELETE', headers: auth() });
    expect((await del()).status).toBe(204);
    expect((await del()).status).toBe(404);
    expect((await relay.hub.decide('honest', 'classify', {}, '')).node).toBe(liar.id);
    await leave(relay, fog, liar);
    await relay.admin.revoke(fog.node.identity.publicKey);
  });

  it('never gives a qos.verify caller an answer two nodes disagree on', async () => {
    const liar = await joinClaiming(relay, ws, 0);
    const honest = await joinClaiming(relay, ws, 10);
    serve(liar.node, wrong, 0);
    serve(honest.node, right, 10);
    // Two untrusted nodes disagree and no third can decide: a typed error, no answer.
    const split = await call(relay, 4, { verify: true });
    expect(split.status).toBe(502);
    expect(split.body.error).toMatchObject({ code: 'E_VERIFY' });
    expect(split.body.error?.message).toMatch(/disagree.*no third node/);
    expect(relay.hub.quarantined().some((q) => q.node === liar.id)).toBe(false);
    // A third node decides by majority: the caller gets the majority's answer, the liar is out.
    const third = await joinClaiming(relay, ws, 10);
    serve(third.node, right, 10);
    const decided = await call(relay, 4, { verify: true });
    expect(decided).toMatchObject({ status: 200, body: { value: right(4) } });
    expect(relay.hub.quarantined().find((q) => q.node === liar.id)?.evidence.by).toBe('majority');
    await leave(relay, liar, honest, third);
  });

  it('gives a qos.verify caller the trusted node’s answer over an untrusted one’s', async () => {
    const fog = await joinClaiming(relay, ws, 50, 'fog');
    const liar = await joinClaiming(relay, ws, 0);
    serve(fog.node, right, 5);
    serve(liar.node, wrong, 0);
    // The liar is placed first (it claims 0 ms), the fog checks it.
    expect((await relay.hub.decide('honest', 'classify', {}, '')).node).toBe(liar.id);
    const r = await call(relay, 7, { verify: true });
    expect(r).toMatchObject({ status: 200, body: { value: right(7), node: fog.id } });
    expect(relay.hub.quarantined().some((q) => q.node === liar.id)).toBe(true);
    await leave(relay, fog, liar);
    await relay.admin.revoke(fog.node.identity.publicKey);
  });
});

describe('brume start --verify-fraction', () => {
  it('refuses a fraction outside 0 to 1, naming the flag and the value', async () => {
    const out = await new Promise<{ code: number | null; stderr: string }>((resolve) =>
      execFile(
        'node_modules/.bin/tsx',
        ['relay/cli.ts', 'start', '--verify-fraction', '1.5'],
        (e, _stdout, stderr) => resolve({ code: e ? (e.code as number) : 0, stderr }),
      ),
    );
    expect(out.code).toBe(2);
    expect(out.stderr).toContain('--verify-fraction must be a number from 0 to 1, got "1.5"');
  });

  it('checks every call on an untrusted node at 1, in a real relay process', async () => {
    const relay = await startRelay({ args: ['--no-cloud', '--verify-fraction', '1'] });
    try {
      const auth = { authorization: `Bearer ${relay.token}`, 'content-type': 'application/json' };
      const bundle = await honestBundle();
      const dep = await fetch(`${relay.url}/api/apps`, {
        method: 'POST',
        headers: { ...auth, 'content-type': 'application/vnd.brume.bundle' },
        body: Buffer.from(bundle),
      });
      expect(dep.status).toBeLessThan(300);
      const ws = `${relay.url.replace('http', 'ws')}/ws`;
      const fogKey = await loadOrCreateIdentity(memoryKeyStore(), 'fog');
      const trust = await fetch(`${relay.url}/api/trust`, {
        method: 'POST',
        headers: auth,
        body: JSON.stringify({ publicKey: fogKey.publicKey }),
      });
      expect(trust.status).toBe(201);
      const { node: fog } = await joinRaw(ws, 'fog', { identity: fogKey });
      const { node: liar, welcome } = await joinRaw(ws, 'dew');
      claim(liar, 0);
      claim(fog, 30);
      serve(fog, right, 5);
      serve(liar, wrong, 0);
      const quarantined = async () =>
        (await (await fetch(`${relay.url}/api/quarantine`, { headers: auth })).json()) as {
          node: string;
        }[];
      // Heartbeats land before the call (the liar must be the one placed): wait for them.
      await until(async () => {
        const nodes = (await (await fetch(`${relay.url}/api/nodes`, { headers: auth })).json()) as {
          stats: Record<string, unknown>;
        }[];
        return nodes.length === 2 && nodes.every((n) => n.stats[key]);
      }, 'heartbeats');
      const r = await fetch(`${relay.url}/api/call/honest/classify`, {
        method: 'POST',
        headers: auth,
        body: JSON.stringify({ input: 3 }),
      });
      expect(r.status).toBe(200);
      await until(
        async () => (await quarantined()).some((q) => q.node === welcome.nodeId),
        'quarantine',
      );
      fog.ws.close();
      liar.ws.close();
    } finally {
      await relay.stop();
    }
  });
});

describe('differ', () => {
  it('compares integers, strings, bytes and booleans exactly, floats within the tolerance', () => {
    expect(differ({ label: 3, name: 'a', ok: true }, { label: 3, name: 'a', ok: true })).toBe(
      undefined,
    );
    expect(differ({ label: 3 }, { label: 4 })).toBe('value.label: 3 ≠ 4');
    expect(differ('a', 'b')).toMatch(/value: "a" ≠ "b"/);
    expect(differ(true, false)).toMatch(/value: true ≠ false/);
    expect(differ(Uint8Array.of(1, 2), Uint8Array.of(1, 3))).toBe('value: byte 1 differs');
    expect(differ(0.5, 0.5004)).toBe(undefined);
    expect(differ(0.5, 0.51)).toMatch(/0.5 ≠ 0.51/);
    expect(differ(1e-7, 2e-6)).toBe(undefined); // within the absolute tolerance
    expect(differ(Number.NaN, Number.NaN)).toBe(undefined);
    expect(differ([1, [2, 3]], [1, [2, 4]])).toBe('value[1][1]: 3 ≠ 4');
    expect(differ({ a: 1 }, { a: 1, b: 2 })).toMatch(/keys/);
    expect(differ(1, '1')).toMatch(/number ≠ string/);
    expect(differ(null, {})).toMatch(/null ≠ object/);
  });

  it('compares float32 tensors element by element, other tensors byte for byte', () => {
    const t = (type: string, xs: number[]) => ({
      type,
      dims: [1, xs.length],
      data: new Uint8Array(
        type === 'float32' ? Float32Array.from(xs).buffer : Int32Array.from(xs).buffer,
      ),
    });
    expect(differ(t('float32', [0.1, 0.9]), t('float32', [0.1000001, 0.9000002]))).toBe(undefined);
    expect(differ(t('float32', [0.1, 0.9]), t('float32', [0.9, 0.1]))).toMatch(/data\[0\]/);
    expect(differ(t('int32', [1, 2]), t('int32', [1, 3]))).toMatch(/data: byte 4 differs/);
    expect(differ(t('float32', [1]), t('int32', [1]))).toMatch(/type/);
  });
});
