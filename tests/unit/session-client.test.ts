// The caller's session handle (core/session/client.ts, PROTOCOL.md §5.9) through a real relay in
// this process on a real port: it places its sessions again when its own socket drops and it
// rejoins, and it gives up a call waiting on a node the relay reports lost, sending it on.

import { afterAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { loadOrCreateIdentity, memoryKeyStore } from '../../core/identity';
import type { BrumeNode } from '../../core/node/node';
import type { SessionMove } from '../../core/session/client';
import { contextApp } from '../apps';
import type { RawNode } from '../raw-node';
import { inProcessRelay } from '../relay-process';
import { closeNodes, joinHolding, testNode } from '../test-node';
import { until } from '../until';

type Server = Awaited<ReturnType<typeof inProcessRelay>>;
const servers: Server[] = [];
const nodes: BrumeNode[] = [];
const raws: RawNode[] = [];
afterAll(async () => {
  closeNodes(nodes);
  for (const r of raws) r.ws.close();
  for (const s of servers) await s.close();
});

/** A relay of its own for each test: no node of another test is a candidate. */
async function relay(): Promise<Server> {
  const s = await inProcessRelay({ apps: [await contextApp('memo')] });
  servers.push(s);
  return s;
}

describe('a session handle across its caller’s own reconnect', () => {
  it('is placed again when the caller rejoins, under a new id; calls made meanwhile wait and are answered once each', async () => {
    const server = await relay();
    const relaySessions = () => server.relay.hub.sessions.list();
    const held = await joinHolding(server.ws, server.relay.hub, 'memo', [
      { name: 'b', slots: 1 },
      { name: 'c', slots: 1 },
    ]);
    nodes.push(...held);
    const serving = held.map((n) => n.nodeId);
    // The caller's sockets, so that the test can cut the one in use as a network blip would.
    const sockets: WebSocket[] = [];
    const caller = await testNode(
      server.ws,
      await loadOrCreateIdentity(memoryKeyStore(), 'caller'),
      {
        socket: (u) => {
          const ws = new WebSocket(u);
          sockets.push(ws);
          return ws;
        },
        backoff: { initialMs: 20, maxMs: 200 },
      },
    );
    nodes.push(caller);
    await caller.whenJoined();
    // A budget of 5 s a frame: a node's first call (compiling the Logic) is no reason to stay local.
    const s = await caller.session('memo', 'main', { fps: 0.2, rpc: 'echo' });
    const seen: SessionMove[] = [];
    s.onMove((m) => seen.push(m));
    const first = await s.invoke({ n: 1 });
    expect(serving).toContain(first.node);
    const before = s.id;
    expect(relaySessions().some((x) => x.id === before && x.caller === caller.nodeId)).toBe(true);

    // The blip: the caller's socket dies; the relay closes its sessions with it.
    sockets.at(-1)!.terminate();
    // Calls made at once, before the caller has even noticed, and while it is away.
    const during = [2, 3].map((n) => s.invoke({ n }));
    await until(() => caller.status === 'offline', 'the caller offline');
    during.push(s.invoke({ n: 4 }));
    await until(() => seen.some((m) => m.why === 'rejoined'), 'placed again after the rejoin');

    const answers = await Promise.all(during);
    expect(answers.map((a) => a.value)).toEqual([2, 3, 4].map((n) => ({ n })));
    for (const a of answers) expect(a.node).toBe(s.node);
    expect(serving).toContain(s.node);
    const rejoin = seen.find((m) => m.why === 'rejoined')!;
    expect(rejoin).toMatchObject({ to: s.node, session: { id: s.id } });
    expect(s.id).not.toBe(before);
    // The relay holds the new session for the caller, and the old one no more.
    const mine = relaySessions().filter((x) => x.caller === caller.nodeId);
    expect(mine.map((x) => x.id)).toEqual([s.id]);
    expect(s.stats()).toMatchObject({ calls: 4, rejoined: 1 });

    // Later calls go on, and the relay's moves reach the handle by its new id.
    expect((await s.invoke({ n: 5 })).node).toBe(s.node);
    const [on, other] = s.node === serving[0] ? held : [held[1]!, held[0]!];
    on!.pause('user');
    await until(() => seen.some((m) => m.why === 'left'), 'moved on pause under the new id');
    expect(s.node).toBe(other!.nodeId);
    const after = await s.invoke({ n: 6 });
    expect(after).toMatchObject({ value: { n: 6 }, node: other!.nodeId });
    on!.pause('user', false);

    s.close();
    await expect(s.call({ n: 7 })).rejects.toMatchObject({ code: 'E_CLOSED' });
    await until(() => !relaySessions().some((x) => x.caller === caller.nodeId), 'closed');
  });
});
