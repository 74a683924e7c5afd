// Sessions through a real relay (in this process, on a real port; PROTOCOL.md §5.9): placed once
// by the Nimbus rule over what the registry knows of each node (its figures, its battery), moved
// with the caller told when the node is lost or leaves gracefully, bounded per caller and in
// all, closed with their caller; and the caller's handle over real nodes, whose calls follow the
// session and are answered once across a move.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BrumeNode } from '../../core/node/node';
import type { SessionView, ToRelay } from '../../core/protocol';
import type { SessionMove } from '../../core/session/client';
import { contextApp, hopsApp } from '../apps';
import { inProcessRelay } from '../relay-process';
import { beat, moves, open, raw, report, type Server } from '../session-frames';
import { closeNodes, joinHolding } from '../test-node';
import { until } from '../until';

let server: Server;
let small: Server;
beforeAll(async () => {
  server = await inProcessRelay({ apps: [await hopsApp(), await contextApp('memo')] });
  small = await inProcessRelay({
    apps: [await hopsApp()],
    limits: { sessionsPerNode: 2, sessions: 3 },
  });
});
afterAll(async () => {
  await server?.close();
  await small?.close();
});

describe('sessions on the relay', () => {
  it('places by the registry: a node on mains before one on battery, none beyond the budget, local when none fits', async () => {
    const caller = await raw(server);
    const dew = await raw(server);
    const fog = await raw(server, 'fog');
    await report(server, dew, beat(5, { level: 0.6, charging: false }));
    await report(server, fog, beat(5));
    const a = (await open(caller)) as SessionView;
    expect(a.node).toBe(fog.id);
    expect(a.reason).toContain(fog.id);
    expect(a.latencyMs).toBeGreaterThan(5);
    // The fog's figure moves past the 100 ms a frame has at 10 fps: the dew on battery it is.
    await report(server, fog, beat(400));
    const b = (await open(caller)) as SessionView;
    expect(b.node).toBe(dew.id);
    // Nothing fits 1000 fps: the caller runs it itself.
    await report(server, dew, beat(400, { level: 0.6, charging: false }));
    const c = (await open(caller, { fps: 200 })) as SessionView;
    expect(c.node).toBe(caller.id);
    expect(c.reason).toMatch(/^local/);
    for (const n of [caller, dew, fog]) n.ws.close();
  });

  it('moves a session when its node is lost or leaves, tells the caller, and closes a lost caller’s', async () => {
    const caller = await raw(server);
    const [a, b] = [await raw(server), await raw(server)];
    // Figures far apart next to the round trips' noise (a few ms on a loaded machine).
    await report(server, a, beat(50));
    await report(server, b, beat(60));
    const s = (await open(caller, { fps: 1, stateKey: 'vad/{session}' })) as SessionView;
    expect(s.node).toBe(a.id);
    // b is where it would go next: told to load the app before it does.
    const warm = await until(() => b.frames.find((f) => f.t === 'session-warm'), 'b warmed');
    expect(warm).toEqual({ t: 'session-warm', app: 'hops' });
    expect(server.relay.hub.sessions.list().find((x) => x.id === s.id)?.standby).toBe(b.id);
    // Its state in the context store is what a move carries: the relay says how many bytes.
    const token = readFileSync(join(server.dataDir, 'admin-token'), 'utf8').trim();
    const put = await fetch(`${server.relay.url}/api/context/hops/vad%2F${s.id}`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ value: { h: [1, 2, 3] } }),
    });
    expect(put.status).toBeLessThan(300);

    // Graceful: a leaves, the session goes to b, and nothing new goes to a while it is away.
    a.send({ t: 'session-leave', on: true, reason: 'hidden' });
    const left = await until(() => moves(caller, s.id)[0], 'moved on leave');
    expect(left).toMatchObject({ from: a.id, why: 'left', session: { node: b.id } });
    expect(left.stateBytes).toBeGreaterThan(0);
    expect(((await open(caller, { fps: 1 })) as SessionView).node).toBe(b.id);
    a.send({ t: 'session-leave', on: false, reason: '' });
    await until(() => server.relay.hub.sessions.leaving()[a.id] === undefined, 'a back');

    // Abrupt: b's socket closes, the session comes back to a.
    b.ws.close();
    const lost = await until(() => moves(caller, s.id)[1], 'moved on loss');
    expect(lost).toMatchObject({ from: b.id, why: 'lost', session: { node: a.id } });
    const migrations = server.relay.hub.sessions.migrations().filter((m) => m.session === s.id);
    expect(migrations.map((m) => [m.from, m.to, m.why])).toEqual([
      [a.id, b.id, 'left'],
      [b.id, a.id, 'lost'],
    ]);

    // The caller goes: its sessions close with it.
    const mine = () => server.relay.hub.sessions.list().filter((x) => x.caller === caller.id);
    expect(mine().length).toBeGreaterThan(0);
    caller.ws.close();
    await until(() => mine().length === 0, 'the lost caller’s sessions closed');
    a.ws.close();
  });

  it('moves a session whose node’s figures leave its budget, and not for a small change', async () => {
    const caller = await raw(server);
    const [a, b] = [await raw(server), await raw(server)];
    // Figures far apart next to the round trips' noise (a few ms on a loaded machine).
    await report(server, a, beat(50));
    await report(server, b, beat(80));
    const s = (await open(caller, { fps: 1 })) as SessionView;
    expect(s.node).toBe(a.id);
    // b a little faster than a now (a judged after b's report; 0.89× its estimate, a move needs
    // under 0.75×): not worth a move.
    await report(server, b, beat(80));
    await report(server, a, beat(90));
    expect(server.relay.hub.sessions.list().find((x) => x.id === s.id)?.node).toBe(a.id);
    expect(moves(caller, s.id)).toEqual([]);
    // a far past the 1000 ms budget: the session goes to b, the caller told.
    await report(server, a, beat(4000));
    const moved = await until(() => moves(caller, s.id)[0], 'moved for figures');
    expect(moved).toMatchObject({ from: a.id, why: 'figures', session: { node: b.id } });
    for (const n of [caller, a, b]) n.ws.close();
  });

  it('refuses past its bounds, an unknown service and another node’s session, each by a typed error', async () => {
    const [one, two, three] = [await raw(small), await raw(small), await raw(small)];
    const mine = (await open(one)) as SessionView;
    expect(mine).toHaveProperty('node');
    expect(await open(one)).toHaveProperty('node');
    const perNode = await open(one);
    expect(perNode).toMatchObject({ code: 'E_LIMIT' });
    expect((perNode as { message: string }).message).toContain('sessionsPerNode 2');
    const theirs = (await open(two)) as SessionView;
    const total = await open(three);
    expect(total).toMatchObject({ code: 'E_LIMIT' });
    expect((total as { message: string }).message).toContain('sessions 3');
    // Closing one makes room again.
    two.send({ t: 'session-close', session: theirs.id });
    await until(() => small.relay.hub.sessions.list().length === 2, 'closed');
    expect(await open(three)).toHaveProperty('node');
    expect(await open(three, { session: theirs.id })).toMatchObject({ code: 'E_NOT_FOUND' });
    expect(await open(three, { service: 'nope' })).toMatchObject({ code: 'E_NOT_FOUND' });
    // A stateKey names the session's own state only: with {session}, a context key with the id.
    const noId = await open(one, { session: mine.id, stateKey: 'vad/someone-else' });
    expect(noId).toMatchObject({ code: 'E_INPUT', message: expect.stringContaining('stateKey') });
    const long = await open(one, { session: mine.id, stateKey: `{session}${'k'.repeat(240)}` });
    expect(long).toMatchObject({ code: 'E_INPUT', message: expect.stringContaining('stateKey') });
    // Placed again: its app and service stay; what the frame leaves out is cleared.
    const set = { session: mine.id, fps: 1, localMs: 5, stateKey: 'k/{session}' };
    expect(await open(one, set)).toHaveProperty('id', mine.id);
    const other = await open(one, { session: mine.id, service: 'classify' });
    expect(other).toMatchObject({ code: 'E_INPUT', message: expect.stringContaining('service') });
    const record = () => small.relay.hub.sessions.list().find((x) => x.id === mine.id);
    expect(record()).toMatchObject({ localMs: 5, stateKey: 'k/{session}' });
    expect(await open(one, { session: mine.id, fps: 2 })).toHaveProperty('id', mine.id);
    expect(record()).not.toHaveProperty('localMs');
    expect(record()).not.toHaveProperty('stateKey');
    // A frame out of its schema is a protocol violation: the socket is closed, the relay lives.
    three.send({ t: 'session-open', id: 1, app: 'hops', service: 'front', fps: 1e9 } as ToRelay);
    expect((await three.closed).code).toBe(1008);
    for (const n of [one, two]) n.ws.close();
  });
});

describe('the session handle over real nodes', () => {
  let nodes: BrumeNode[] = [];
  afterAll(() => closeNodes(nodes));

  it('sends calls to the placed node, and after its loss or its leaving to the next, each answered once', async () => {
    nodes = await joinHolding(server.ws, server.relay.hub, 'memo', [
      { name: 'caller', slots: 1 },
      { name: 'b', slots: 1 },
      { name: 'c', slots: 1 },
    ]);
    const [caller, b, c] = nodes as [BrumeNode, BrumeNode, BrumeNode];
    // What page code gives is checked before any frame: E_INPUT naming the option.
    await expect(caller.session('memo', 'main', { fps: 0 })).rejects.toMatchObject({
      code: 'E_INPUT',
      message: expect.stringContaining('options.fps'),
    });
    await expect(caller.session('memo', 'main', { fps: 1, frameBytes: 1.5 })).rejects.toMatchObject(
      { code: 'E_INPUT', message: expect.stringContaining('frameBytes') },
    );
    // A budget of 5 s a frame: a node's first call (compiling the Logic) is no reason to stay local.
    const s = await caller.session('memo', 'main', { fps: 0.2, rpc: 'echo' });
    const seen: SessionMove[] = [];
    s.onMove((m) => seen.push(m));
    const first = s.node;
    expect([b.nodeId, c.nodeId]).toContain(first);
    const served = await s.invoke({ n: 1 });
    expect(served.node).toBe(first);
    expect(served.value).toEqual({ n: 1 });

    // Graceful: the serving node pauses; the relay moves the session before the next frame.
    const [serving, other] = first === b.nodeId ? [b, c] : [c, b];
    serving.pause('user');
    await until(() => seen.length === 1, 'moved on pause');
    expect(seen[0]).toMatchObject({ from: first, to: other.nodeId, why: 'left' });
    const after = await s.invoke({ n: 2 });
    expect(after.node).toBe(other.nodeId);
    serving.pause('user', false);
    const hub = server.relay.hub;
    await until(
      () =>
        hub.sessions.leaving()[serving.nodeId] === undefined &&
        hub.nodes().find((n) => n.id === serving.nodeId)?.paused === false,
      'the paused node back',
    );

    // Abrupt: the node serving it closes while frames come; every frame gets one answer.
    const frames = [3, 4, 5, 6].map((n) => s.invoke({ n }));
    other.close();
    const answers = await Promise.all(frames);
    expect(answers.map((a) => a.value)).toEqual([3, 4, 5, 6].map((n) => ({ n })));
    expect(answers.at(-1)!.node).toBe(serving.nodeId);
    await until(() => seen.length === 2 || s.node === serving.nodeId, 'moved on loss');
    expect(s.node).toBe(serving.nodeId);

    s.close();
    await expect(s.call({ n: 7 })).rejects.toMatchObject({ code: 'E_CLOSED' });
    await until(
      () => !server.relay.hub.sessions.list().some((x) => x.id === s.id),
      'closed on the relay',
    );
  });
});
