// The context store under a hostile network, in the spirit of Yjs's randomized tests: a relay and
// 3–8 nodes exchange operations through a simulated network that drops, duplicates, reorders and
// partitions, while nodes write, delete, expire, go offline (short and long absences) and start
// running a second app. The relay's filters are the hub's own (core's viewFor and catchUpFor).
// After healing: every node holds what the relay holds of the keys it may hold, of the apps it
// runs, and nothing of the others; nothing expired reads; a private value is nowhere in plaintext
// and its envelope only with its keys; watchers saw each winning change once, in order; every
// write reached the relay exactly once unless it expired first.
// Replay one seed: BRUME_SEED=<seed> npx vitest run tests/unit/context-sim.test.ts
import { beforeAll, describe, expect, it } from 'vitest';
import { encode } from '../../core/codec';
import { Clock, compareStamp, type Stamp } from '../../core/context/hlc';
import { memoryKV, Outbox } from '../../core/context/outbox';
import { type ContextOp, ContextReplica, catchUpFor, viewFor } from '../../core/context/replica';
import { type AgreementKey, generateAgreementKey, seal, unseal } from '../../core/context/seal';
import { mulberry32 } from '../../models/digits/mlp';

type Msg =
  | { to: 'relay'; from: number; kind: 'op'; op: ContextOp }
  | { to: 'relay'; from: number; kind: 'sync'; cursor: number; apps: string[]; full: string[] }
  | { to: number; kind: 'ack'; opId: string }
  | { to: number; kind: 'stream'; prev: number; seq: number; op: ContextOp }
  | { to: number; kind: 'catchup'; ops: ContextOp[]; cursor: number; full?: string[] };

interface SimNode {
  i: number;
  kid: string;
  replica: ContextReplica;
  clock: Clock;
  skew: number;
  outbox: Outbox;
  kv: ReturnType<typeof memoryKV>;
  online: boolean;
  cursor: number;
  /** Stamps each watcher call saw, per key id. */
  seen: Map<string, Stamp[]>;
  seenOps: Set<string>;
  /** Apps it keeps context of, and those whose whole state it has received. */
  apps: Set<string>;
  held: Set<string>;
}

const appNames = ['app', 'other'];

let keys: AgreementKey[] = [];
/** Private values sealed once (sealing is slow): a marker string and its recipients. */
const pool: { marker: string; sealed: Uint8Array; kids: string[] }[] = [];

beforeAll(async () => {
  keys = await Promise.all([0, 1, 2, 3].map(() => generateAgreementKey()));
  for (let k = 0; k < 12; k++) {
    const who = keys.filter((_, j) => (k >> j) & 1 || j === k % 4);
    const marker = `PLAINTEXT-SECRET-${k}`;
    pool.push({ marker, sealed: await seal(encode(marker), who), kids: who.map((w) => w.kid) });
  }
  // Sealing is real: a recipient opens it, a stranger cannot.
  const p = pool[0]!;
  const reader = keys.find((k) => p.kids.includes(k.kid))!;
  expect(new TextDecoder().decode((await unseal(p.sealed, reader)).subarray(1))).toBe(p.marker);
  const stranger = keys.find((k) => !p.kids.includes(k.kid))!;
  await expect(unseal(p.sealed, stranger)).rejects.toThrow(/not sealed for this node/);
});

function simulate(seed: number) {
  const r = mulberry32(seed);
  const int = (n: number) => Math.floor(r() * n);
  let now = 1_800_000_000_000;
  const relayClock = new Clock('relay', () => now);
  const relay = new ContextReplica({ logLength: 20 }); // short: long absences need snapshots
  const lastSent = new Map<number, number>();
  /** The apps each node told the relay it keeps (in its last sync). */
  const relayApps = new Map<number, Set<string>>();
  const nodes: SimNode[] = [];
  const n = 3 + int(6);
  for (let i = 0; i < n; i++) {
    const skew = int(401) - 200;
    const kv = memoryKV();
    const node: SimNode = {
      i,
      kid: keys[i % keys.length]!.kid,
      replica: new ContextReplica(),
      clock: new Clock(`node-${i}`, () => now + skew),
      skew,
      outbox: new Outbox(kv),
      kv,
      online: true,
      cursor: 0,
      seen: new Map(),
      seenOps: new Set(),
      apps: new Set(r() < 0.7 ? ['app'] : appNames),
      held: new Set(),
    };
    for (const app of appNames)
      node.replica.watch(app, '', (op) => {
        const id = `${op.app}:${op.scope}:${op.owner ?? ''}:${op.key}`;
        node.seen.set(id, [...(node.seen.get(id) ?? []), op.stamp]);
        expect(node.seenOps.has(op.opId), `seed ${seed}: watcher saw ${op.opId} twice`).toBe(false);
        node.seenOps.add(op.opId);
      });
    nodes.push(node);
  }
  const made: ContextOp[] = [];
  let net: Msg[] = [];
  let nextOp = 0;

  /** May node `i` hold this operation's value? (private: recipients; node scope: the owner) */
  const visible = (op: ContextOp, node: SimNode) =>
    (op.scope !== 'node' || op.owner === `node-${node.i}`) &&
    (!op.privacy || op.privacy.includes(node.kid));
  /** What the relay sends `node` of `op` (the hub's own filter). */
  const forNode = (op: ContextOp, node: SimNode) =>
    relayApps.get(node.i)?.has(op.app)
      ? viewFor(op, { id: `node-${node.i}`, publicKey: node.kid })
      : undefined;
  const sync = (node: SimNode, lossy = true) =>
    send(
      {
        to: 'relay',
        from: node.i,
        kind: 'sync',
        cursor: node.cursor,
        apps: [...node.apps],
        full: [...node.apps].filter((a) => !node.held.has(a)),
      },
      lossy,
    );
  const send = (m: Msg, lossy = true) => {
    if (lossy && r() < 0.1) return; // dropped
    net.push(m);
    if (lossy && r() < 0.05) net.push(m); // duplicated
  };
  const localApply = (node: SimNode, op: ContextOp) => {
    node.clock.receive(op.stamp);
    node.replica.apply(op);
  };

  const write = (node: SimNode) => {
    const scope = r() < 0.25 ? 'node' : 'app';
    const key = `k${int(5)}`;
    const stamp = node.clock.tick();
    const apps = [...node.apps];
    const op: ContextOp = {
      opId: `op-${seed}-${nextOp++}`,
      app: apps[int(apps.length)]!,
      key,
      scope,
      ...(scope === 'node' ? { owner: `node-${node.i}` } : {}),
      stamp,
      kind: r() < 0.2 ? 'delete' : 'put',
    };
    if (op.kind === 'put') {
      const p = pool[int(pool.length)]!;
      if (scope === 'app' && r() < 0.3 && p.kids.includes(node.kid)) {
        op.sealed = p.sealed;
        op.privacy = p.kids;
      } else op.value = encode(`v-${op.opId}`);
      if (r() < 0.3) op.expiresAt = stamp.wall + 20 + int(400);
    }
    made.push(op);
    node.replica.apply(op);
    void node.outbox.add(op);
    if (node.online) send({ to: 'relay', from: node.i, kind: 'op', op });
  };

  const flushOutbox = async (node: SimNode, lossy = true) => {
    for (const op of await node.outbox.due(now + node.skew))
      send({ to: 'relay', from: node.i, kind: 'op', op }, lossy);
  };

  const deliver = async (m: Msg, lossy: boolean) => {
    if (m.to === 'relay') {
      const node = nodes[m.from]!;
      if (!node.online) return;
      if (m.kind === 'sync') {
        relayApps.set(node.i, new Set(m.apps));
        const c = catchUpFor(relay, m, (op) => forNode(op, node));
        lastSent.set(node.i, c.cursor);
        send({ to: node.i, kind: 'catchup', ...c }, lossy);
        return;
      }
      relayClock.receive(m.op.stamp);
      const fresh = relay.apply(m.op);
      send({ to: m.from, kind: 'ack', opId: m.op.opId }, lossy);
      if (!fresh) return;
      for (const other of nodes) {
        if (!other.online) continue;
        const op = forNode(m.op, other);
        if (!op) continue;
        const prev = lastSent.get(other.i) ?? 0;
        lastSent.set(other.i, relay.cursor);
        send({ to: other.i, kind: 'stream', prev, seq: relay.cursor, op }, lossy);
      }
      return;
    }
    const node = nodes[m.to]!;
    if (!node.online) return; // lost with the connection
    if (m.kind === 'ack') await node.outbox.ack(m.opId);
    else if (m.kind === 'catchup') {
      for (const op of m.ops) localApply(node, op);
      for (const app of m.full ?? []) node.held.add(app);
      node.cursor = Math.max(node.cursor, m.cursor);
    } else if (m.prev === node.cursor) {
      localApply(node, m.op);
      node.cursor = m.seq;
    } else if (m.seq > node.cursor) {
      sync(node, lossy); // a gap
    }
  };

  return {
    nodes,
    relay,
    made,
    visible,
    async run(steps: number) {
      for (let s = 0; s < steps; s++) {
        now += int(30);
        const x = r();
        const node = nodes[int(nodes.length)]!;
        if (x < 0.35) write(node);
        else if (x < 0.42) {
          node.online = false; // a partition: what was on the wire for it is lost
          net = net.filter((m) => m.to !== node.i);
          lastSent.delete(node.i);
          relayApps.delete(node.i);
        } else if (x < 0.52 && !node.online) {
          if (r() < 0.3) now += 2000; // a long absence
          node.online = true;
          await flushOutbox(node);
          sync(node);
        } else if (x < 0.58 && node.online) await flushOutbox(node);
        else if (x < 0.6 && !node.apps.has('other')) {
          node.apps.add('other'); // it starts running another app: whole state, then changes
          if (node.online) sync(node);
        } else if (net.length) {
          // Deliver one message, not always the oldest: reordering.
          const k = r() < 0.3 ? int(net.length) : 0;
          const [m] = net.splice(k, 1);
          await deliver(m!, true);
        }
      }
    },
    /** Everyone online, a lossless network, until nothing moves. */
    async heal() {
      for (const node of nodes) {
        if (!node.online) {
          node.online = true;
        }
        await flushOutbox(node, false);
        sync(node, false);
      }
      for (let guard = 0; net.length && guard < 100_000; guard++)
        await deliver(net.shift()!, false);
      for (const node of nodes) sync(node, false);
      for (let guard = 0; net.length && guard < 100_000; guard++)
        await deliver(net.shift()!, false);
      return now;
    },
  };
}

describe('context store, randomized', () => {
  const base = Number(process.env.BRUME_SEED ?? 424242);
  const seeds = process.env.BRUME_SEED ? 1 : Number(process.env.BRUME_SEEDS ?? 1000);

  it(`converges, expires, keeps secrets and applies each write once (${seeds} seeds)`, async () => {
    for (let k = 0; k < seeds; k++) {
      const seed = base + k;
      const why = `seed ${seed} (replay: BRUME_SEED=${seed} npx vitest run tests/unit/context-sim.test.ts)`;
      const sim = simulate(seed);
      await sim.run(300);
      const now = await sim.heal();
      const idOf = (o: ContextOp) => `${o.app}:${o.scope}:${o.owner ?? ''}:${o.key}`;
      for (const node of sim.nodes) {
        // The same state: for every key it may hold, the relay's winning operation; nothing of
        // the apps it does not keep.
        const mine = new Map(node.replica.state().map((o) => [idOf(o), o]));
        for (const o of mine.values()) {
          expect(node.apps.has(o.app), `${why}: node ${node.i} holds ${o.app}`).toBe(true);
        }
        for (const op of sim.relay.state()) {
          if (!node.apps.has(op.app)) continue;
          if (op.scope === 'node' && op.owner !== `node-${node.i}`) continue;
          expect(mine.get(idOf(op))?.opId, `${why}: node ${node.i} key ${idOf(op)}`).toBe(op.opId);
          const read = node.replica.get(
            op.app,
            op.key,
            { scope: op.scope, owner: op.owner },
            now + node.skew,
          );
          if (op.expiresAt !== undefined && op.expiresAt <= now + node.skew) {
            expect(read, `${why}: expired value readable`).toEqual(
              op.kind === 'delete' ? undefined : { expired: true },
            );
          }
          if (op.privacy && !sim.visible(op, node)) {
            // Not its key: no value and no envelope, at most the fact that it expired.
            expect(read === undefined || 'expired' in read, `${why}: private readable`).toBe(true);
          }
        }
        // Watchers: each winning change once, in stamp order per key.
        for (const [id, stamps] of node.seen) {
          for (let j = 1; j < stamps.length; j++) {
            expect(
              compareStamp(stamps[j - 1]!, stamps[j]!),
              `${why}: ${id} out of order`,
            ).toBeLessThan(0);
          }
        }
        // A private value rests only with its keys: elsewhere neither plaintext nor envelope.
        for (const o of [...node.replica.state(), ...node.kv.map.values()] as ContextOp[]) {
          if (!o.privacy) continue;
          expect(o.value, `${why}: a private value in plaintext on node ${node.i}`).toBeUndefined();
          if (o.sealed) {
            expect(o.privacy, `${why}: an envelope on node ${node.i} not for it`).toContain(
              node.kid,
            );
          }
        }
        expect(await node.outbox.due(now + node.skew), `${why}: outbox not drained`).toEqual([]);
      }
      for (const op of sim.relay.state()) {
        if (op.privacy) expect(op.value, `${why}: plaintext at the relay`).toBeUndefined();
      }
      // Exactly once: every write reached the relay (an expired one without its value).
      for (const op of sim.made) {
        expect(sim.relay.has(op.opId), `${why}: ${op.opId} lost`).toBe(true);
      }
    }
  }, 120_000);
});
