// The caller's session handle (core/session/client.ts, PROTOCOL.md §5.9) through a real relay in
// this process on a real port: it places its sessions again when its own socket drops and it
// rejoins, and it gives up a call waiting on a node the relay reports lost, sending it on.

import { afterAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { loadOrCreateIdentity, memoryKeyStore } from '../../core/identity';
import type { PeerCall } from '../../core/node/links';
import { memoryNetwork } from '../../core/node/memory-links';
import type { BrumeNode } from '../../core/node/node';
import type { InvokeAnswer } from '../../core/page-api';
import { decodeFrame, type SessionView, type ToNode, type ToRelay } from '../../core/protocol';
import { type SessionMove, Sessions } from '../../core/session/client';
import { contextApp } from '../apps';
import { caps, joinRaw, type RawNode } from '../raw-node';
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
async function relay(limits?: { sessions: number }): Promise<Server> {
  const s = await inProcessRelay({ apps: [await contextApp('memo')], ...(limits && { limits }) });
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

    // The blip: the caller's socket dies; the relay closes its sessions with it. A call is made
    // the moment the caller knows it is away (its status turning offline), before it rejoins.
    const away = new Promise<{ call: Promise<InvokeAnswer> }>((resolve) => {
      const off = caller.onStatus((st) => {
        if (st !== 'offline') return;
        off();
        resolve({ call: s.invoke({ n: 4 }) });
      });
    });
    sockets.at(-1)!.terminate();
    // Calls made at once, before the caller has even noticed.
    const during = [2, 3].map((n) => s.invoke({ n }));
    during.push((await away).call);
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
  it('ends the handle with the relay’s refusal when the new placement is refused, and its waiting calls with it', async () => {
    // Room for one session in all: another caller takes it while this one is away.
    const server = await relay({ sessions: 1 });
    nodes.push(
      ...(await joinHolding(server.ws, server.relay.hub, 'memo', [{ name: 'b', slots: 1 }])),
    );
    // The caller's reconnects fail (a port nothing listens on) until the test lets them through.
    let blocked = false;
    const sockets: WebSocket[] = [];
    const caller = await testNode(
      server.ws,
      await loadOrCreateIdentity(memoryKeyStore(), 'caller'),
      {
        socket: (u) => {
          const ws = new WebSocket(blocked ? 'ws://127.0.0.1:1/ws' : u);
          sockets.push(ws);
          return ws;
        },
        backoff: { initialMs: 20, maxMs: 200 },
      },
    );
    nodes.push(caller);
    await caller.whenJoined();
    const s = await caller.session('memo', 'main', { fps: 0.2, rpc: 'echo' });
    expect((await s.invoke({ n: 1 })).value).toEqual({ n: 1 });

    blocked = true;
    sockets.at(-1)!.terminate();
    const mine = () => server.relay.hub.sessions.list().filter((x) => x.caller === caller.nodeId);
    await until(
      () => caller.status === 'offline' && mine().length === 0,
      'the caller away and its session closed by the relay',
    );
    const waiting = s.invoke({ n: 2 });
    const other = (await joinRaw(server.ws)).node;
    raws.push(other);
    other.send({ t: 'session-open', id: 1, app: 'memo', service: 'main', fps: 1 });
    await until(() => other.frames.find((f) => f.t === 'session'), 'the other caller placed');
    blocked = false;

    await expect(waiting).rejects.toMatchObject({ code: 'E_LIMIT' });
    await expect(s.call({ n: 3 })).rejects.toMatchObject({ code: 'E_LIMIT' });
    expect(s.stats()).toMatchObject({ calls: 1, rejoined: 0 });
    expect(caller.status).toBe('joined');
    expect(mine()).toEqual([]);
  });

  it('closes its handles with the node: a call waiting for the rejoin rejects with E_CLOSED', async () => {
    const server = await relay();
    nodes.push(
      ...(await joinHolding(server.ws, server.relay.hub, 'memo', [{ name: 'b', slots: 1 }])),
    );
    let blocked = false;
    const sockets: WebSocket[] = [];
    const caller = await testNode(
      server.ws,
      await loadOrCreateIdentity(memoryKeyStore(), 'caller'),
      {
        socket: (u) => {
          const ws = new WebSocket(blocked ? 'ws://127.0.0.1:1/ws' : u);
          sockets.push(ws);
          return ws;
        },
        backoff: { initialMs: 20, maxMs: 200 },
      },
    );
    nodes.push(caller);
    await caller.whenJoined();
    const s = await caller.session('memo', 'main', { fps: 0.2, rpc: 'echo' });
    blocked = true;
    sockets.at(-1)!.terminate();
    await until(() => caller.status === 'offline' && sockets.length > 2, 'the caller retrying');
    const waiting = s.invoke({ n: 1 });
    caller.close();
    await expect(waiting).rejects.toMatchObject({ code: 'E_CLOSED' });
    await expect(s.call({ n: 2 })).rejects.toMatchObject({ code: 'E_CLOSED' });
    expect(s.stats().calls).toBe(0);
  });
});

describe('a call waiting on a node the relay reports lost', () => {
  it('is given up because of that move and sent to the next node, answered once', async () => {
    const server = await relay();
    // Data channels in this process: the call to the node that never answers stays open on
    // its channel (nothing fails it) until the relay's `lost` move gives it up.
    const net = memoryNetwork({ random: () => 0.5, callTimeoutMs: 120_000 });
    // The node a session moves to: a real one, serving the echo Logic over its channels.
    const next = await testNode(server.ws, await loadOrCreateIdentity(memoryKeyStore(), 'next'), {
      refresh: true,
      links: net.links(),
      maxConcurrency: 1,
      runtime: { logicWorkers: 1 },
    });
    nodes.push(next);
    await next.whenJoined();
    await until(
      () =>
        server.relay.hub
          .nodes()
          .find((n) => n.id === next.nodeId)
          ?.apps.includes('memo'),
      'next holding memo',
    );
    // `next` is away while the session is placed, so that the hanging node is chosen first.
    next.leave('test');
    await until(() => server.relay.hub.sessions.leaving()[next.nodeId] !== undefined, 'away');

    // The node that never answers: joined, holding memo by its reports, serving its channel
    // by keeping every call.
    const hung = (await joinRaw(server.ws)).node;
    raws.push(hung);
    const hungId = hung.identity.id;
    const kept: PeerCall[] = [];
    net.links().start(hungId, '', (call) => {
      kept.push(call);
      return new Promise(() => {});
    });
    hung.send({
      t: 'heartbeat',
      load: { queue: 0, maxConcurrency: 2 },
      apps: ['memo'],
      models: {},
      stats: { 'memo/main/echo@logic': { count: 20, p50: 5 } },
      paused: false,
      caps,
    });
    await until(
      () =>
        server.relay.hub
          .nodes()
          .find((n) => n.id === hungId)
          ?.apps.includes('memo'),
      'the hanging node reported',
    );

    // The caller speaks the wire itself: its session frames go to the handle's table.
    const { node: callerRaw, welcome } = await joinRaw(server.ws);
    raws.push(callerRaw);
    const links = net.links();
    links.start(welcome.nodeId, '', () => new Promise(() => {}));
    let ids = 1;
    const sessions = new Sessions({
      async open(frame) {
        const id = ids++;
        callerRaw.send({ ...frame, id } as ToRelay);
        const answer = await until(
          () =>
            callerRaw.frames.find(
              (f): f is Extract<ToNode, { t: 'session' | 'error' }> =>
                (f.t === 'session' || f.t === 'error') && f.id === id,
            ),
          `the answer to session-open ${id}`,
        );
        if (answer.t === 'error') throw new Error(answer.error.message);
        return answer.session as SessionView;
      },
      send: (frame) => callerRaw.send(frame),
      async call(app, service, input, node, rpc) {
        const qos = { privacy: node };
        const r = await links.call(node, {
          t: 'call',
          id: 0,
          app,
          service,
          rpc: rpc ?? '',
          input,
          qos,
        });
        return { value: r.value, node };
      },
    });
    callerRaw.ws.on('message', (data) => {
      const f = decodeFrame(new Uint8Array(data as Buffer), 'toNode');
      if (f.t === 'session-moved') sessions.moved(f);
    });

    const s = await sessions.session('memo', 'main', { fps: 0.2, rpc: 'echo' });
    expect(s.node).toBe(hungId);
    next.leave('test', false);
    await until(() => server.relay.hub.sessions.leaving()[next.nodeId] === undefined, 'back');

    const order: string[] = [];
    s.onMove((m) => order.push(`moved ${m.why} to ${m.to === next.nodeId ? 'next' : m.to}`));
    const answer = s.invoke({ n: 1 });
    void answer.then(() => order.push('answered'));
    await until(() => kept.length === 1, 'the call kept by the node that never answers');
    // It waits there: nothing but the relay's report of that node lost can end it.
    expect(order).toEqual([]);
    expect(s.stats()).toMatchObject({ calls: 1, retried: 0, gaveUp: 0 });

    hung.ws.close();
    const a = await answer;
    expect(a).toEqual({ value: { n: 1 }, node: next.nodeId });
    expect(order).toEqual(['moved lost to next', 'answered']);
    expect(s.stats()).toEqual({ calls: 1, retried: 1, gaveUp: 1, rejoined: 0 });
    expect(kept).toHaveLength(1);
    s.close();
  });
});
