// The context store under a hostile network, in the spirit of Yjs's randomized tests: a relay and
// 3–8 real node clients (NodeContext, each on its own KV, with its own skewed clock) exchange
// frames through a simulated network that drops, duplicates, reorders and cuts connections, while
// nodes write (some values sealed for a few identity keys), delete, expire, go offline for short
// and long absences, and start running a second app. The relay side is a ContextReplica with the
// hub's own filters (core's viewFor and catchUpFor, its catch-ups cut into small parts). After healing (every node reconnects over a
// lossless network): every node holds what the relay holds of the keys it may hold, of the apps
// it runs, and nothing of the others; nothing expired reads; a private value is nowhere in
// plaintext (KV, replica, relay), its envelope only with its keys, and its keys can read it;
// watchers saw each winning change once, in order; every write reached the relay exactly once
// (an expired one without its value); every outbox is empty.
// Replay one seed: BRUME_SEED=<seed> npx vitest run tests/unit/context-sim.test.ts
import { beforeAll, describe, expect, it } from 'vitest';
import { decode } from '../../core/codec';
import { type ContextFrame, type ContextSend, NodeContext } from '../../core/context/client';
import { Clock, compareStamp, type Stamp } from '../../core/context/hlc';
import { memoryKV } from '../../core/context/outbox';
import { type ContextOp, ContextReplica, catchUpFor, viewFor } from '../../core/context/replica';
import { type Identity, loadOrCreateIdentity, memoryKeyStore } from '../../core/identity';
import { mulberry32 } from '../../models/digits/mlp';

type ToRelay = Parameters<ContextSend>[0];
type Msg = { to: 'relay'; from: number; frame: ToRelay } | { to: number; frame: ContextFrame };

interface SimNode {
  i: number;
  id: string;
  key: Identity;
  ctx: NodeContext;
  kv: ReturnType<typeof memoryKV>;
  skew: number;
  online: boolean;
  /** Stamps each change the replica's watchers saw, per key id. */
  seen: Map<string, Stamp[]>;
  seenOps: Set<string>;
  apps: Set<string>;
}

const appNames = ['app', 'other'];
const secret = 'PLAINTEXT-SECRET';
/** Four identities (signing + agreement keys); node i holds identity i % 4. */
let keys: Identity[] = [];

beforeAll(async () => {
  keys = await Promise.all(
    [0, 1, 2, 3].map((k) => loadOrCreateIdentity(memoryKeyStore(), `k${k}`)),
  );
});

async function simulate(seed: number) {
  const r = mulberry32(seed);
  const int = (n: number) => Math.floor(r() * n);
  let now = 1_800_000_000_000;
  const relayClock = new Clock('relay', () => now);
  const relay = new ContextReplica({ logLength: 20 }); // short: long absences need snapshots
  const lastSent = new Map<number, number>();
  /** The apps each node told the relay it keeps (in its last sync on this connection). */
  const relayApps = new Map<number, Set<string> | null>();
  const nodes: SimNode[] = [];
  const made: { opId: string; node: number }[] = [];
  let net: Msg[] = [];

  const send = (m: Msg, lossy = true) => {
    if (lossy && r() < 0.08) return; // dropped
    net.push(m);
    if (lossy && r() < 0.05) net.push(m); // duplicated
  };
  /** What the relay sends node `n` of `op` (the hub's own filter). */
  const forNode = (op: ContextOp, n: SimNode) => {
    const apps = relayApps.get(n.i);
    if (apps === undefined || (apps && !apps.has(op.app))) return undefined;
    return viewFor(op, { id: n.id, publicKey: n.key.publicKey });
  };

  const n = 3 + int(6);
  for (let i = 0; i < n; i++) {
    const key = keys[i % keys.length]!;
    const kv = memoryKV();
    // Every node has seen the others' agreement keys already (they would come by ctx-keys).
    for (const k of keys) {
      kv.map.set(`agreement/${k.publicKey}`, {
        kid: k.agreement.kid,
        publicKey: k.agreement.publicKey,
      });
    }
    const skew = int(401) - 200;
    const node: SimNode = {
      i,
      id: `node-${i}`,
      key,
      ctx: new NodeContext(
        { id: `node-${i}`, publicKey: key.publicKey, agreement: key.agreement },
        kv,
        () => now + skew,
      ),
      kv,
      skew,
      online: false,
      seen: new Map(),
      seenOps: new Set(),
      apps: new Set(r() < 0.7 ? ['app'] : appNames),
    };
    await node.ctx.load();
    for (const app of appNames) {
      node.ctx.replica.watch(app, '', (op) => {
        const id = `${op.app}:${op.scope}:${op.owner ?? ''}:${op.key}`;
        node.seen.set(id, [...(node.seen.get(id) ?? []), op.stamp]);
        expect(node.seenOps.has(op.opId), `seed ${seed}: watcher saw ${op.opId} twice`).toBe(false);
        node.seenOps.add(op.opId);
      });
    }
    for (const app of node.apps) node.ctx.use(app);
    nodes.push(node);
  }

  const connect = async (node: SimNode, lossy = true) => {
    node.online = true;
    lastSent.delete(node.i);
    relayApps.delete(node.i);
    await node.ctx.online((frame) => {
      if (node.online) send({ to: 'relay', from: node.i, frame }, lossy);
    });
  };
  /** The connection breaks: what was on the wire for it, either way, is lost. */
  const cut = (node: SimNode) => {
    node.online = false;
    node.ctx.offline();
    net = net.filter((m) => m.to !== node.i && !(m.to === 'relay' && m.from === node.i));
  };

  const write = async (node: SimNode) => {
    const apps = [...node.apps];
    const app = apps[int(apps.length)]!;
    const key = `k${int(5)}`;
    const scope = r() < 0.25 ? 'node' : 'app';
    const ttlMs = r() < 0.3 ? 20 + int(400) : undefined;
    let opId: string;
    if (r() < 0.2) opId = await node.ctx.delete(app, key, scope);
    else if (scope === 'app' && r() < 0.15) {
      // Sealed for this node's key and a random few others.
      const privacy = keys.filter((k) => k === node.key || r() < 0.4).map((k) => k.publicKey);
      opId = await node.ctx.put(app, key, `${secret}-${seed}-${made.length}`, { privacy, ttlMs });
    } else {
      opId = await node.ctx.put(app, key, `v-${made.length}`, { scope, ttlMs });
    }
    made.push({ opId, node: node.i });
  };

  const deliver = async (m: Msg, lossy: boolean) => {
    if (m.to === 'relay') {
      const node = nodes[m.from]!;
      if (!node.online) return;
      const f = m.frame;
      if (f.t === 'ctx-sync') {
        relayApps.set(node.i, f.apps ? new Set(f.apps) : null);
        // A small frame budget: catch-ups come in parts, which the network drops and reorders.
        const parts = catchUpFor(relay, f, (op) => forNode(op, node), 2000);
        lastSent.set(node.i, parts[0]!.cursor);
        for (const part of parts) send({ to: node.i, frame: { t: 'ctx-catchup', ...part } }, lossy);
      } else if (f.t === 'ctx-op') {
        relayClock.receive(f.op.stamp);
        const fresh = relay.apply(f.op);
        send({ to: node.i, frame: { t: 'ctx-ack', opId: f.op.opId } }, lossy);
        if (!fresh) return;
        for (const other of nodes) {
          if (!other.online) continue;
          const op = forNode(f.op, other);
          if (!op) continue;
          const prev = lastSent.get(other.i) ?? 0;
          lastSent.set(other.i, relay.cursor);
          send({ to: other.i, frame: { t: 'ctx-op', prev, seq: relay.cursor, op } }, lossy);
        }
      } else if (f.t === 'ctx-keys') {
        const found = keys
          .filter((k) => f.keys.includes(k.publicKey))
          .map((k) => ({
            publicKey: k.publicKey,
            agreementKey: k.agreement.publicKey,
            signature: k.agreement.signature,
          }));
        send({ to: node.i, frame: { t: 'ctx-keys', id: f.id, found } }, lossy);
      }
      return;
    }
    const node = nodes[m.to]!;
    if (node.online) await node.ctx.receive(m.frame);
  };

  const settle = async () => {
    for (let guard = 0; net.length && guard < 100_000; guard++) await deliver(net.shift()!, false);
  };

  for (const node of nodes) await connect(node);
  return {
    nodes,
    relay,
    made,
    async run(steps: number) {
      for (let s = 0; s < steps; s++) {
        now += int(30);
        const x = r();
        const node = nodes[int(nodes.length)]!;
        if (x < 0.35) await write(node);
        else if (x < 0.41 && node.online) cut(node);
        else if (x < 0.5 && !node.online) {
          if (r() < 0.3) now += 2000; // a long absence
          await connect(node);
        } else if (x < 0.52 && !node.apps.has('other')) {
          node.apps.add('other'); // it starts running another app: whole state, then changes
          node.ctx.use('other');
        } else if (net.length) {
          // Deliver one message, not always the oldest: reordering.
          const k = r() < 0.3 ? int(net.length) : 0;
          const [m] = net.splice(k, 1);
          await deliver(m!, true);
        }
      }
    },
    /** Every node reconnects over a lossless network, until nothing moves. */
    async heal() {
      for (const node of nodes) {
        if (node.online) cut(node);
        await connect(node, false);
      }
      await settle();
      // Once more: a gap seen only in the last frames is asked for and answered.
      for (const node of nodes) {
        cut(node);
        await connect(node, false);
      }
      await settle();
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
      const sim = await simulate(seed);
      await sim.run(250);
      const now = await sim.heal();
      const idOf = (o: ContextOp) => `${o.app}:${o.scope}:${o.owner ?? ''}:${o.key}`;
      for (const node of sim.nodes) {
        const at = now + node.skew;
        // The same state: for every key it may hold, the relay's winning operation; nothing of
        // the apps it does not run.
        const mine = new Map(node.ctx.replica.state().map((o) => [idOf(o), o]));
        for (const o of mine.values()) {
          expect(node.apps.has(o.app), `${why}: node ${node.i} holds ${o.app}`).toBe(true);
        }
        for (const op of sim.relay.state()) {
          if (!node.apps.has(op.app)) continue;
          if (op.scope === 'node' && op.owner !== node.id) continue;
          expect(mine.get(idOf(op))?.opId, `${why}: node ${node.i} key ${idOf(op)}`).toBe(op.opId);
          const read = node.ctx.get(op.app, op.key, op.scope);
          if (op.kind === 'delete') expect(read, `${why}: deleted readable`).toBeUndefined();
          else if (op.expiresAt !== undefined && op.expiresAt <= at) {
            expect(read, `${why}: expired value readable`).toEqual({ expired: true });
          } else if (op.privacy && !op.privacy.includes(node.key.publicKey)) {
            expect(read, `${why}: node ${node.i} reads a value not sealed for it`).toBeUndefined();
          } else if (op.value || op.sealed) {
            // Its keys (and everyone, for a public value) read it.
            const value = op.value ? decode(op.value) : undefined;
            expect(read, `${why}: node ${node.i} cannot read ${idOf(op)}`).toMatchObject(
              op.value ? { value } : { value: expect.stringContaining(secret) },
            );
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
        // A private value rests only with its keys, sealed: no plaintext in storage or replica.
        const stored = [...node.kv.map.values(), ...node.ctx.replica.state()] as ContextOp[];
        for (const o of stored) {
          if (!o?.privacy) continue;
          expect(o.value, `${why}: a private value in plaintext on node ${node.i}`).toBeUndefined();
          if (o.sealed) {
            expect(o.privacy, `${why}: an envelope on node ${node.i} not for it`).toContain(
              node.key.publicKey,
            );
          }
        }
        const text = JSON.stringify(stored, (_k, v) =>
          v instanceof Uint8Array ? new TextDecoder('latin1').decode(v) : v,
        );
        expect(text.includes(secret), `${why}: plaintext stored on node ${node.i}`).toBe(false);
        expect(
          [...node.kv.map.keys()].filter((k2) => k2.startsWith('outbox/')),
          `${why}: outbox not drained on node ${node.i}`,
        ).toEqual([]);
      }
      const relayText = JSON.stringify(sim.relay.state(), (_k, v) =>
        v instanceof Uint8Array ? new TextDecoder('latin1').decode(v) : v,
      );
      expect(relayText.includes(secret), `${why}: plaintext at the relay`).toBe(false);
      // Exactly once: every write reached the relay (an expired one without its value).
      for (const m of sim.made) {
        expect(sim.relay.has(m.opId), `${why}: ${m.opId} of node ${m.node} lost`).toBe(true);
      }
    }
  }, 300_000);
});
