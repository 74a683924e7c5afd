// The context store under a hostile network, in the spirit of Yjs's randomized tests: a relay and
// 3–8 real node clients (NodeContext, each on its own KV, with its own skewed clock) exchange
// frames through a simulated network that drops, duplicates, reorders and cuts connections, while
// nodes write (some values sealed for a few identity keys, a few over the relay's value limit),
// delete, expire, go offline for short and long absences, and start running a second app. The
// relay side is the relay's own context hub (core/context/hub.ts) over the relay's durable store
// (relay/context.ts, in a temporary directory per seed), so its accept checks, `ctx-nack` and
// catch-ups in parts run here. Up to two nodes are fogs: dews have one as parent, fogs open and
// lose channels to them and report them late, so changes go out as `ctx-fan` and come back as
// `ctx-unsent` for the dews a fog could not reach. After healing (every node reconnects over a
// lossless network): every node holds what the relay holds of the keys it may hold, of the apps
// it runs, and nothing of the others; nothing expired reads; a private value is nowhere in
// plaintext (KV, replica, relay), its envelope only with its keys, and its keys can read it;
// watchers saw each winning change once, in order; every write the relay may take reached it
// exactly once (an expired one without its value), and none it refused; every outbox is empty.
// Replay one seed: BRUME_SEED=<seed> npx vitest run tests/unit/context-sim.test.ts
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decode } from '../../core/codec';
import { type ContextFrame, NodeContext } from '../../core/context/client';
import { compareStamp, type Stamp } from '../../core/context/hlc';
import {
  type ContextFrameIn,
  type ContextFrameOut,
  type ContextPeer,
  createContextHub,
} from '../../core/context/hub';
import { memoryKV } from '../../core/context/outbox';
import type { ContextOp } from '../../core/context/replica';
import { type Identity, loadOrCreateIdentity, memoryKeyStore } from '../../core/identity';
import { passOn } from '../../core/node/fog';
import { mulberry32 } from '../../models/digits/mlp';
import { openContext } from '../../relay/context';

type Msg =
  | { to: 'relay'; from: number; frame: ContextFrameIn }
  | { to: number; frame: ContextFrameOut };

interface SimNode {
  i: number;
  id: string;
  key: Identity;
  ctx: NodeContext;
  kv: ReturnType<typeof memoryKV>;
  skew: number;
  online: boolean;
  fog: boolean;
  /** The relay's view of it on this connection (its sync state is new with each connection). */
  peer: ContextPeer;
  /** A fog's open channels to dews, by node index (the relay learns them at heartbeats). */
  links: Set<number>;
  /** Each change the replica's watchers saw, per key id, since its key was last taken back. */
  seen: Map<string, { opId: string; stamp: Stamp }[]>;
  apps: Set<string>;
}

const appNames = ['app', 'other'];
const keyOf = (o: Pick<ContextOp, 'app' | 'scope' | 'owner' | 'key'>) =>
  `${o.app}:${o.scope}:${o.owner ?? ''}:${o.key}`;
const secret = 'PLAINTEXT-SECRET';
/** The relay takes values up to this; a node's own limit is larger, so a few writes are refused. */
const relayValueBytes = 4096;
/** Four identities (signing + agreement keys); node i holds identity i % 4. */
let keys: Identity[] = [];
/** Each seed's relay store lives in a directory under this (memory-backed where there is one). */
let base = '';

beforeAll(async () => {
  keys = await Promise.all(
    [0, 1, 2, 3].map((k) => loadOrCreateIdentity(memoryKeyStore(), `k${k}`)),
  );
  const shm = process.platform === 'linux' ? '/dev/shm' : tmpdir();
  base = await mkdtemp(join(shm, 'brume-ctx-sim-')).catch(() => mkdtemp(join(tmpdir(), 'b-')));
});
afterAll(() => rm(base, { recursive: true, force: true }));

async function simulate(seed: number) {
  const r = mulberry32(seed);
  const int = (n: number) => Math.floor(r() * n);
  let now = 1_800_000_000_000;
  const dir = join(base, String(seed));
  await rm(dir, { recursive: true, force: true });
  // A short log: long absences need snapshots.
  const store = await openContext(dir, {
    limits: { logLength: 20, maxValueBytes: relayValueBytes },
    now: () => now,
    warn: (m) => {
      throw new Error(`seed ${seed}: the relay store warned: ${m}`);
    },
  });
  for (const k of keys) {
    store.bind({
      publicKey: k.publicKey,
      agreementKey: k.agreement.publicKey,
      signature: k.agreement.signature,
    });
  }
  const nodes: SimNode[] = [];
  const byId = new Map<string, SimNode>();
  const made: { opId: string; node: number; refused: boolean }[] = [];
  /** The key each write the relay refuses would have changed. */
  const refusedKey = new Map<string, string>();
  let net: Msg[] = [];
  let nacks = 0;
  /** Whether what is sent now may be lost (not while healing). */
  let lossy = true;

  const send = (m: Msg) => {
    if (lossy && r() < 0.08) return; // dropped
    net.push(m);
    if (lossy && r() < 0.05) net.push(m); // duplicated
  };
  const hub = createContextHub({
    store,
    send: (id, frame) => send({ to: byId.get(id)!.i, frame }),
    peer: (id) => {
      const n = byId.get(id);
      return n?.online ? n.peer : undefined;
    },
    peers: () => nodes.filter((n) => n.online).map((n) => n.peer),
  });

  const n = 3 + int(6);
  const fogs = n > 3 ? int(3) : 0;
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
    const id = `node-${i}`;
    const node: SimNode = {
      i,
      id,
      key,
      ctx: new NodeContext(
        { id, publicKey: key.publicKey, agreement: key.agreement },
        kv,
        () => now + skew,
      ),
      kv,
      skew,
      online: false,
      fog: i < fogs,
      peer: { record: { id, publicKey: key.publicKey }, sync: {} },
      links: new Set(),
      seen: new Map(),
      apps: new Set(r() < 0.7 ? ['app'] : appNames),
    };
    await node.ctx.load();
    for (const app of appNames) {
      node.ctx.replica.watch(app, '', (op) => {
        const seen = node.seen.get(keyOf(op)) ?? [];
        const again = seen.some((o) => o.opId === op.opId);
        expect(again, `seed ${seed}: node ${i}'s watcher saw ${op.opId} twice`).toBe(false);
        node.seen.set(keyOf(op), [...seen, { opId: op.opId, stamp: op.stamp }]);
      });
    }
    for (const app of node.apps) node.ctx.use(app);
    nodes.push(node);
    byId.set(id, node);
  }
  // A dew's parent fog, as the relay's registry gave it (or none).
  const parentOf = new Map<number, number>();
  for (const node of nodes) {
    if (node.fog || !fogs || r() >= 0.8) continue;
    const fog = int(fogs);
    parentOf.set(node.i, fog);
    if (r() < 0.7) nodes[fog]!.links.add(node.i);
  }

  const connect = async (node: SimNode) => {
    node.online = true;
    const parent = parentOf.get(node.i);
    node.peer = {
      record: {
        id: node.id,
        publicKey: node.key.publicKey,
        ...(parent !== undefined && { parent: nodes[parent]!.id }),
        ...(node.fog && { links: [...node.links].map((l) => nodes[l]!.id) }),
      },
      sync: {},
    };
    await node.ctx.online((frame) => {
      if (node.online) send({ to: 'relay', from: node.i, frame });
    });
  };
  /** The connection breaks: what was on the wire for it, either way, is lost. */
  const cut = (node: SimNode) => {
    node.online = false;
    node.ctx.offline();
    net = net.filter((m) => m.to !== node.i && !(m.to === 'relay' && m.from === node.i));
  };
  /** A fog's heartbeat: the relay learns which channels it has open now. */
  const heartbeat = (fog: SimNode) => {
    fog.peer.record.links = [...fog.links].map((l) => nodes[l]!.id);
  };

  /**
   * A fog's side of `ctx-fan`, the node's own function (core/node/fog.ts): the change goes on to
   * each dew it has a channel open to, and those it has none to go back in `ctx-unsent`.
   */
  const fogPassOn = (fog: SimNode, f: Extract<ContextFrameOut, { t: 'ctx-fan' }>) => {
    const unsent = passOn(f, (id, { id: _, ...frame }) => {
      const child = byId.get(id);
      if (!child || !fog.links.has(child.i)) return false;
      send({ to: child.i, frame });
      return true;
    });
    if (unsent) send({ to: 'relay', from: fog.i, frame: unsent });
  };

  const write = async (node: SimNode) => {
    const apps = [...node.apps];
    const app = apps[int(apps.length)]!;
    const key = `k${int(5)}`;
    const scope = r() < 0.25 ? 'node' : 'app';
    const ttlMs = r() < 0.3 ? 20 + int(400) : undefined;
    let opId: string;
    let refused = false;
    if (r() < 0.2) opId = await node.ctx.delete(app, key, scope);
    else if (r() < 0.03) {
      // Over the relay's limit (not the node's): the relay answers ctx-nack, the node takes it back.
      opId = await node.ctx.put(app, key, 'x'.repeat(relayValueBytes + 100), { scope });
      refused = true;
      refusedKey.set(opId, keyOf({ app, scope, key, ...(scope === 'node' && { owner: node.id }) }));
    } else if (scope === 'app' && r() < 0.15) {
      // Sealed for this node's key and a random few others.
      const privacy = keys.filter((k) => k === node.key || r() < 0.4).map((k) => k.publicKey);
      opId = await node.ctx.put(app, key, `${secret}-${seed}-${made.length}`, { privacy, ttlMs });
    } else {
      opId = await node.ctx.put(app, key, `v-${made.length}`, { scope, ttlMs });
    }
    made.push({ opId, node: node.i, refused });
  };

  /** A channel between a dew and its parent fog opens or breaks (the relay learns it later). */
  const relink = () => {
    const dews = [...parentOf.keys()];
    if (!dews.length) return;
    const dew = dews[int(dews.length)]!;
    const fog = nodes[parentOf.get(dew)!]!;
    if (fog.links.has(dew)) fog.links.delete(dew);
    else fog.links.add(dew);
  };

  const deliver = async (m: Msg) => {
    if (m.to === 'relay') {
      const node = nodes[m.from]!;
      if (node.online) await hub.receive(node.peer, m.frame);
      return;
    }
    const node = nodes[m.to]!;
    if (!node.online) return;
    if (m.frame.t === 'ctx-fan') return fogPassOn(node, m.frame);
    // A refused write is taken back: the watcher is told of the relay's value again, a new run.
    if (m.frame.t === 'ctx-nack') {
      nacks++;
      node.seen.delete(refusedKey.get(m.frame.opId) ?? '');
    }
    await node.ctx.receive(m.frame as ContextFrame);
  };

  const settle = async () => {
    for (let guard = 0; net.length && guard < 100_000; guard++) await deliver(net.shift()!);
  };

  for (const node of nodes) await connect(node);
  return {
    nodes,
    store,
    made,
    /** How changes went out (straight, through a fog, back from a fog) and refusals delivered. */
    paths: () => ({ ...hub.fanout(), nacks }),
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
        } else if (x < 0.57 && fogs) relink();
        else if (x < 0.6 && node.fog) heartbeat(node);
        else if (net.length) {
          // Deliver one message, not always the oldest: reordering.
          const k = r() < 0.3 ? int(net.length) : 0;
          const [m] = net.splice(k, 1);
          await deliver(m!);
        }
      }
    },
    /** Every node reconnects over a lossless network, until nothing moves. */
    async heal() {
      lossy = false;
      for (const node of nodes) {
        if (node.online) cut(node);
        await connect(node);
      }
      await settle();
      // Once more: a gap seen only in the last frames is asked for and answered.
      for (const node of nodes) {
        cut(node);
        await connect(node);
      }
      await settle();
      return now;
    },
    async close() {
      await store.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

describe('context store, randomized', () => {
  const base = Number(process.env.BRUME_SEED ?? 424242);
  const seeds = process.env.BRUME_SEED ? 1 : Number(process.env.BRUME_SEEDS ?? 1000);

  it(`converges, expires, keeps secrets and applies each write once (${seeds} seeds)`, async () => {
    const paths = { direct: 0, viaFog: 0, unsent: 0, nacks: 0 };
    for (let k = 0; k < seeds; k++) {
      const seed = base + k;
      const why = `seed ${seed} (replay: BRUME_SEED=${seed} npx vitest run tests/unit/context-sim.test.ts)`;
      const sim = await simulate(seed);
      await sim.run(250);
      const now = await sim.heal();
      for (const node of sim.nodes) {
        const at = now + node.skew;
        // The same state: for every key it may hold, the relay's winning operation; nothing of
        // the apps it does not run.
        const mine = new Map(node.ctx.replica.state().map((o) => [keyOf(o), o]));
        for (const o of mine.values()) {
          expect(node.apps.has(o.app), `${why}: node ${node.i} holds ${o.app}`).toBe(true);
        }
        for (const op of sim.store.replica.state()) {
          if (!node.apps.has(op.app)) continue;
          if (op.scope === 'node' && op.owner !== node.id) continue;
          if (op.scope === 'project' || op.scope === 'user') continue; // the sim writes none
          expect(mine.get(keyOf(op))?.opId, `${why}: node ${node.i} key ${keyOf(op)}`).toBe(
            op.opId,
          );
          const read = node.ctx.get(op.app, op.key, op.scope);
          if (op.kind === 'delete') expect(read, `${why}: deleted readable`).toBeUndefined();
          else if (op.expiresAt !== undefined && op.expiresAt <= at) {
            expect(read, `${why}: expired value readable`).toEqual({ expired: true });
          } else if (op.privacy && !op.privacy.includes(node.key.publicKey)) {
            expect(read, `${why}: node ${node.i} reads a value not sealed for it`).toBeUndefined();
          } else if (op.value || op.sealed) {
            // Its keys (and everyone, for a public value) read it.
            const value = op.value ? decode(op.value) : undefined;
            expect(read, `${why}: node ${node.i} cannot read ${keyOf(op)}`).toMatchObject(
              op.value ? { value } : { value: expect.stringContaining(secret) },
            );
          }
        }
        // Watchers: each winning change once, in stamp order per key.
        for (const [id, seen] of node.seen) {
          for (let j = 1; j < seen.length; j++) {
            expect(
              compareStamp(seen[j - 1]!.stamp, seen[j]!.stamp),
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
      const relayText = JSON.stringify(sim.store.replica.state(), (_k, v) =>
        v instanceof Uint8Array ? new TextDecoder('latin1').decode(v) : v,
      );
      expect(relayText.includes(secret), `${why}: plaintext at the relay`).toBe(false);
      // Exactly once: every write reached the relay (an expired one without its value), but
      // those over its value limit, which it refused.
      for (const m of sim.made) {
        const held = sim.store.replica.has(m.opId);
        if (m.refused) expect(held, `${why}: ${m.opId} of node ${m.node} taken`).toBe(false);
        else expect(held, `${why}: ${m.opId} of node ${m.node} lost`).toBe(true);
      }
      for (const [p, v] of Object.entries(sim.paths())) paths[p as keyof typeof paths] += v;
      await sim.close();
    }
    // The relay's refusals and the fog path ran, not only direct sends.
    if (seeds >= 50) {
      for (const [p, v] of Object.entries(paths))
        expect(v, `${p} never happened`).toBeGreaterThan(0);
    }
  }, 600_000);
});
