// The context store through a real relay (in process, real port, real files) and real fabric
// nodes in Node: private values sealed for trusted identity keys, fan-out only to the nodes that
// run an app, and a Logic-style read that sees a write another node just had acknowledged.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NodeContext } from '../../core/context/client';
import { memoryKV } from '../../core/context/outbox';
import { type Identity, loadOrCreateIdentity, memoryKeyStore } from '../../core/identity';
import type { BrumeNode } from '../../core/node/node';
import type { Relay } from '../../relay/server';
import { inProcessRelay } from '../relay-process';
import { testNode } from '../test-node';
import { until } from '../until';

let dir: string;
let relay: Relay;
const fabrics: BrumeNode[] = [];

interface TestNode {
  identity: Identity;
  ctx: NodeContext;
  kv: ReturnType<typeof memoryKV>;
  fabric: BrumeNode;
}

async function node(name: string): Promise<TestNode> {
  const identity = await loadOrCreateIdentity(memoryKeyStore(), name);
  const kv = memoryKV();
  const ctx = new NodeContext(identity, kv);
  const fabric = await testNode(server.ws, identity, {
    context: ctx,
    runtime: { logicWorkers: 1 },
  });
  fabrics.push(fabric);
  await fabric.whenJoined(10_000);
  return { identity, ctx, kv, fabric };
}

/** Everything a node keeps, as bytes: its KV (IndexedDB in a tab) and its replica. */
const stored = (n: TestNode) =>
  Buffer.from(JSON.stringify([...n.kv.map.values(), n.ctx.replica.state()], bytesAsLatin1));
function bytesAsLatin1(_k: string, v: unknown) {
  return v instanceof Uint8Array ? Buffer.from(v).toString('latin1') : v;
}

let server: Awaited<ReturnType<typeof inProcessRelay>>;
beforeAll(async () => {
  server = await inProcessRelay();
  relay = server.relay;
  dir = server.dataDir;
});
afterAll(async () => {
  for (const f of fabrics) f.close();
  await server.close();
});

describe('context through the relay', () => {
  it('seals a private value for its keys: readable there, an envelope at the relay, absent elsewhere', async () => {
    const [writer, trusted, stranger] = await Promise.all([node('w'), node('t'), node('s')]);
    for (const n of [trusted, stranger]) n.ctx.use('vault');
    const secret = 'PLAINTEXT-SECRET-7f3a';
    await writer.ctx.put('vault', 'pin', { secret }, { privacy: [trusted.identity.publicKey] });
    await until(() => trusted.ctx.get('vault', 'pin') !== undefined, 'the trusted node');
    expect(trusted.ctx.get('vault', 'pin')).toEqual({ value: { secret } });
    expect(writer.ctx.get('vault', 'pin')).toEqual({ value: { secret } });
    // The stranger knows a write happened (the same winner everywhere), not what it holds.
    await until(() => stranger.ctx.replica.state('vault').length === 1, 'the stranger');
    expect(stranger.ctx.get('vault', 'pin')).toBeUndefined();
    expect(stranger.ctx.replica.state('vault')[0]).not.toHaveProperty('sealed');
    for (const n of [writer, trusted, stranger]) {
      expect(stored(n).includes(secret), 'plaintext in a node store').toBe(false);
    }
    // The trusted node keeps the envelope, never the plaintext (a reload opens it again).
    const reloaded = new NodeContext(trusted.identity, trusted.kv);
    await reloaded.load();
    expect(reloaded.get('vault', 'pin')).toEqual({ value: { secret } });
    // The relay's durable log holds the envelope and no plaintext; HTTP refuses to serve it.
    const log = await readFile(join(dir, 'context.log'));
    expect(log.includes(secret)).toBe(false);
    expect(relay.context.replica.get('vault', 'pin', {}, Date.now())).toHaveProperty('sealed');
    const r = await fetch(`${relay.url}/api/context/vault/pin`);
    expect(r.status).toBe(403);
    expect((await r.json()).error.code).toBe('E_PRIVACY');
    // A key no node ever joined with cannot be sealed for; a non-key is bad input.
    const other = await loadOrCreateIdentity(memoryKeyStore(), 'x');
    await expect(
      writer.ctx.put('vault', 'k2', 1, { privacy: [other.publicKey] }),
    ).rejects.toMatchObject({ code: 'E_UNAVAILABLE' });
    await expect(writer.ctx.put('vault', 'k3', 1, { privacy: ['nope'] })).rejects.toMatchObject({
      code: 'E_INPUT',
    });
  });

  it('sends an app only to the nodes that run it, and all of it when one starts', async () => {
    const [a, b] = await Promise.all([node('a'), node('b')]);
    a.ctx.use('alpha');
    b.ctx.use('beta');
    await a.ctx.put('alpha', 'one', 1);
    await a.ctx.put('beta', 'two', 2); // a writes to beta: now it runs beta too
    await until(() => b.ctx.get('beta', 'two') !== undefined, 'beta on b');
    await a.ctx.put('alpha', 'three', 3);
    await a.ctx.settled((await a.ctx.put('alpha', 'four', 4)) as string);
    await b.ctx.fresh();
    expect(b.ctx.replica.state('alpha')).toEqual([]);
    b.ctx.use('alpha');
    await b.ctx.fresh();
    expect(
      b.ctx.replica
        .state('alpha')
        .map((op) => op.key)
        .sort(),
    ).toEqual(['four', 'one', 'three']);
  });

  it('a Logic read on one node sees the write another node just had acknowledged', async () => {
    const [a, b] = await Promise.all([node('la'), node('lb')]);
    for (let i = 0; i < 20; i++) {
      await a.ctx.serve('stream', { op: 'put', key: 'state', value: { i }, ttlMs: 5000 });
      expect(await b.ctx.serve('stream', { op: 'get', key: 'state' })).toEqual({
        found: true,
        value: { i },
      });
    }
    expect(await b.ctx.serve('stream', { op: 'get', key: 'none' })).toEqual({ found: false });
    // A value over the limit is refused before it leaves, with the limit named.
    const big = new Uint8Array(70 * 1024);
    await expect(
      a.ctx.serve('stream', { op: 'put', key: 'big', value: big }),
    ).rejects.toMatchObject({ code: 'E_LIMIT' });
  });

  it("a Logic read answered by a version check is never stale after another node's write", async () => {
    const [a, b, c] = await Promise.all([node('va'), node('vb'), node('vc')]);
    // b holds the app's state: from then on its reads are version checks, not catch-ups.
    expect(await b.ctx.serve('versioned', { op: 'get', key: 'state' })).toEqual({ found: false });
    const before = { ...b.ctx.reads };
    for (let i = 0; i < 30; i++) {
      const writer = i % 2 ? a : c;
      await writer.ctx.serve('versioned', { op: 'put', key: 'state', value: { i } });
      expect(await b.ctx.serve('versioned', { op: 'get', key: 'state' })).toEqual({
        found: true,
        value: { i },
      });
      // Several keys, so a read finds the key it asks for, not just the latest change.
      await writer.ctx.serve('versioned', { op: 'put', key: `k${i % 3}`, value: i });
      expect(await b.ctx.serve('versioned', { op: 'get', key: `k${i % 3}` })).toEqual({
        found: true,
        value: i,
      });
    }
    expect(b.ctx.reads.checked + b.ctx.reads.caughtUp - before.checked - before.caughtUp).toBe(60);
    expect(b.ctx.reads.checked).toBeGreaterThan(before.checked);
  });

  it('a write the relay refuses is taken back where it was made, and says why', async () => {
    const a = await node('ca');
    // A device whose clock runs two minutes ahead: the relay refuses its stamps.
    const identity = await loadOrCreateIdentity(memoryKeyStore(), 'ahead');
    const kv = memoryKV();
    const ahead = new NodeContext(identity, kv, () => Date.now() + 120_000);
    const fabric = await testNode(server.ws, identity, {
      context: ahead,
      runtime: { logicWorkers: 1 },
    });
    fabrics.push(fabric);
    await fabric.whenJoined(10_000);
    await a.ctx.settled(await a.ctx.put('clock', 'k', 'from a'));
    ahead.use('clock');
    await ahead.fresh();
    expect(ahead.get('clock', 'k')).toEqual({ value: 'from a' });
    const refused = await ahead.put('clock', 'k', 'from the future');
    expect(ahead.get('clock', 'k')).toEqual({ value: 'from the future' }); // until the relay answers
    await expect(ahead.settled(refused)).rejects.toMatchObject({ code: 'E_CLOCK' });
    // Taken back, and the relay's value fetched again: no divergence left behind.
    await until(
      () => (ahead.get('clock', 'k') as { value?: unknown })?.value === 'from a',
      'revert',
    );
    expect([...kv.map.keys()].filter((k) => k.startsWith('outbox/'))).toEqual([]);
    expect(relay.context.replica.has(refused)).toBe(false);
  });

  it('a node that was away converges after 300 rewrites of a 60 KB key, and past the frame limit', async () => {
    const [a, b] = await Promise.all([node('away-a'), node('away-b')]);
    const apps = ['big0', 'big1', 'big2', 'big3', 'big4'];
    for (const app of apps) b.ctx.use(app);
    await b.ctx.fresh();
    const value = (i: number) => new Uint8Array(60_000).fill(i % 251);
    const same = (r: unknown, i: number) =>
      r !== undefined && Buffer.from((r as { value: Uint8Array }).value).equals(value(i));
    /** b leaves, `write` happens, b comes back with what it held. */
    const away = async (write: () => Promise<void>) => {
      b.fabric.close();
      await write();
      b.fabric = await testNode(server.ws, b.identity, {
        context: b.ctx,
        runtime: { logicWorkers: 1 },
      });
      fabrics.push(b.fabric);
    };
    // 300 rewrites of one key: 18 MB of log, once sent in one frame b's decoder refused.
    await away(async () => {
      for (let i = 0; i < 300; i++) await a.ctx.settled(await a.ctx.put('big0', 'k', value(i)));
    });
    await until(() => same(b.ctx.get('big0', 'k'), 299), 'b after 300 rewrites', 60_000);
    // 300 keys of 60 KB over five apps: 18 MB of live state, more than one frame can hold.
    await away(async () => {
      for (let i = 0; i < 300; i++) {
        await a.ctx.settled(await a.ctx.put(apps[i % 5]!, `k${i}`, value(i)));
      }
    });
    await until(
      () =>
        Array.from({ length: 300 }, (_, i) => i).every((i) =>
          same(b.ctx.get(apps[i % 5]!, `k${i}`), i),
        ),
      'b after 300 keys',
      60_000,
    );
    expect(b.fabric.status).toBe('joined');
  }, 180_000);

  it('keeps on disk the agreement keys of nodes somebody seals for, not every join', async () => {
    const [w, ...joined] = await Promise.all([node('j0'), node('j1'), node('j2'), node('j3')]);
    await w.ctx.settled(
      await w.ctx.put('kept', 'pin', 1, { privacy: [joined[0]!.identity.publicKey] }),
    );
    const file = join(dir, 'agreements.json');
    const keys = async () =>
      (JSON.parse(await readFile(file, 'utf8').catch(() => '[]')) as { publicKey: string }[]).map(
        (r) => r.publicKey,
      );
    await until(
      async () => (await keys()).includes(joined[0]!.identity.publicKey),
      'agreements.json to hold the recipient',
    );
    // The value is sealed for j1 and its writer; j2 and j3 only joined.
    const onDisk = await keys();
    expect(onDisk).toContain(joined[0]!.identity.publicKey);
    expect(onDisk).toContain(w.identity.publicKey);
    for (const n of [joined[1]!, joined[2]!]) expect(onDisk).not.toContain(n.identity.publicKey);
  });
});
