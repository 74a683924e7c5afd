// GET /api/relays (PROTOCOL.md §5.10, §6): a lone relay answers itself only, Redis "not
// configured"; two relays in this process on one real redis-server each list both, with the nodes
// joined at each, and this relay marked; Redis killed, the relay answers what it last heard and
// says Redis is unreachable, then recovers by itself; garbage and stale members of the relays set
// are left out; a relay that closes leaves the list.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NodeRecord, RelaysAnswer } from '../../core/api';
import { type Relay, useRelayPair } from '../cluster-relays';
import { joinRaw } from '../raw-node';
import { inProcessRelay } from '../relay-process';
import { until } from '../until';

/** GET `path` at `r` with its admin token (or `token`): status and JSON body. */
async function admin<T>(r: Relay, path: string, token = r.relay.admin.token) {
  const res = await fetch(`${r.relay.url}${path}`, {
    headers: { authorization: `Bearer ${token}` },
  });
  return { status: res.status, body: (await res.json()) as T };
}
const relaysAt = async (r: Relay) => (await admin<RelaysAnswer>(r, '/api/relays')).body;

describe('GET /api/relays on a lone relay', () => {
  let lone: Relay;
  beforeAll(async () => {
    lone = await inProcessRelay();
  });
  afterAll(async () => {
    await lone?.close();
  });

  it('answers itself only, with its nodes, Redis not configured; the admin token only', async () => {
    const refused = await admin(lone, '/api/relays', 'not-the-token');
    expect(refused.status).toBe(401);
    expect((await fetch(`${lone.relay.url}/api/relays`)).status).toBe(401);
    const { node } = await joinRaw(lone.ws);
    const answer = await until(async () => {
      const a = await relaysAt(lone);
      return a.relays[0]?.nodes === 1 && a;
    }, 'the node counted');
    expect(answer.relays).toHaveLength(1);
    expect(answer.relays[0]!.self).toBe(true);
    expect(answer.relays[0]!.lastHeard).toBeGreaterThan(0);
    expect(answer.redis).toEqual({ ok: true, detail: expect.stringMatching(/not configured/) });
    node.ws.close();
  });
});

describe('GET /api/relays on two relays sharing one Redis', () => {
  const pair = useRelayPair('cluster-relays', { heartbeatMs: 500 });
  const idOf = (r: Relay) => r.relay.cluster!.relayId;

  it('each lists both relays, marks itself, and counts the nodes joined at each', async () => {
    const { node } = await joinRaw(pair.b.ws);
    const atA = await until(async () => {
      const answer = await relaysAt(pair.a);
      return answer.relays.find((r) => r.id === idOf(pair.b))?.nodes === 1 && answer;
    }, "A to count B's node");
    expect(atA.redis.ok).toBe(true);
    expect(atA.redis.detail).toMatch(/answers in/);
    expect(atA.relays.map((r) => r.id).sort()).toEqual([idOf(pair.a), idOf(pair.b)].sort());
    const self = atA.relays.find((r) => r.self)!;
    expect(self.id).toBe(idOf(pair.a));
    expect(self.nodes).toBe(0);
    for (const r of atA.relays) expect(r.lastHeard).toBeGreaterThan(Date.now() - 60_000);
    // The node's record at A names the relay its socket is on.
    const nodes = (await admin<NodeRecord[]>(pair.a, '/api/nodes')).body;
    expect(nodes.find((n) => n.id === node.identity.id)?.relay).toBe(idOf(pair.b));
    const atB = await until(async () => {
      const answer = await relaysAt(pair.b);
      return answer.relays.find((r) => r.self)?.nodes === 1 && answer;
    }, 'B to count its own node');
    expect(atB.relays.find((r) => r.self)!.id).toBe(idOf(pair.b));
    expect(atB.relays).toHaveLength(2);
    node.ws.close();
    await until(
      async () => (await relaysAt(pair.a)).relays.every((r) => r.nodes === 0),
      "A to hear of B's node leaving",
    );
  }, 60_000);

  it('Redis down: what it last heard, Redis unreachable; back: ok again by itself', async () => {
    await relaysAt(pair.a); // what A lists now is what it answers while Redis is away
    await pair.redis.kill();
    const down = await until(async () => {
      const answer = await relaysAt(pair.a);
      return !answer.redis.ok && answer;
    }, 'A to see Redis down');
    expect(down.redis.detail).toMatch(/Redis at .* is unreachable/);
    expect(down.relays.map((r) => r.id).sort()).toEqual([idOf(pair.a), idOf(pair.b)].sort());
    expect(down.relays.filter((r) => r.self).map((r) => r.id)).toEqual([idOf(pair.a)]);
    await pair.redis.restart();
    const back = await until(
      async () => {
        const answer = await relaysAt(pair.a);
        return answer.redis.ok && answer;
      },
      'A to reach Redis again',
      30_000,
    );
    expect(back.relays.map((r) => r.id)).toContain(idOf(pair.a));
  }, 60_000);

  it('leaves out what the relays set holds that is no relay, or a relay not heard of in time', async () => {
    const link = pair.a.relay.cluster!.redis;
    const now = Date.now();
    // Keys set too, so that no registration drops these members before the list is read.
    await link.run('plant', async (c) => {
      await c.zadd(link.key('relays'), now, 'not a relay id!', now - 3_600_000, 'stale-relay');
      await c.set(link.key('relay', 'not a relay id!'), '1', 'PX', 60_000);
      await c.set(link.key('relay', 'stale-relay'), '1', 'PX', 60_000);
    });
    try {
      const members = await link.run('read', (c) => c.zrange(link.key('relays'), 0, -1));
      expect(members).toEqual(expect.arrayContaining(['not a relay id!', 'stale-relay']));
      const answer = await relaysAt(pair.a);
      expect(answer.redis.ok).toBe(true);
      expect(answer.relays.map((r) => r.id).sort()).toEqual([idOf(pair.a), idOf(pair.b)].sort());
    } finally {
      await link.run('clean', async (c) => {
        await c.zrem(link.key('relays'), 'not a relay id!', 'stale-relay');
        await c.del(link.key('relay', 'not a relay id!'), link.key('relay', 'stale-relay'));
      });
    }
  });

  it('a relay that closes leaves the list', async () => {
    await until(
      async () => (await relaysAt(pair.a)).relays.some((r) => r.id === idOf(pair.b)),
      'B listed again after the restart',
      30_000,
    );
    const gone = idOf(pair.b);
    await pair.b.close();
    pair.b = undefined as never;
    const answer = await until(async () => {
      const r = await relaysAt(pair.a);
      return !r.relays.some((x) => x.id === gone) && r;
    }, 'A to drop B');
    expect(answer.relays.map((r) => r.id)).toEqual([idOf(pair.a)]);
  }, 60_000);
});
