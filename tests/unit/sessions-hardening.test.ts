// Sessions on the relay against what a reviewer found (PROTOCOL.md §5.9): hostile figures never
// crash the relay, a caller gone mid-open leaves no session, a standby node is warmed once, the
// figures are the session's own rpc's (slots, the relay's measurements), a node's sessions are
// judged once per heartbeat period and it serves a bounded number. Real relay, raw nodes.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SessionView, ToRelay } from '../../core/protocol';
import { hopsApp } from '../apps';
import { claim, honestBundle, key, right, serve } from '../honest-app';
import type { RawNode } from '../raw-node';
import { inProcessRelay } from '../relay-process';
import { beat, open, raw, report, type Server } from '../session-frames';
import { until } from '../until';

let server: Server;
let small: Server;
beforeAll(async () => {
  server = await inProcessRelay({ apps: [await hopsApp()] });
  small = await inProcessRelay({
    apps: [await hopsApp()],
    limits: { sessionsServed: 1 },
    // A long period: two reports in a row fall within one (a node is judged once per period).
    heartbeatMs: 5000,
  });
});
afterAll(async () => {
  await server?.close();
  await small?.close();
});

describe('warming the standby node', () => {
  it('warms a node once per session, however often it is the standby again', async () => {
    const [caller, other] = [await raw(server), await raw(server)];
    const [a, b] = [await raw(server), await raw(server)];
    await report(server, a, beat(50));
    await report(server, b, beat(60));
    const warms = (n: RawNode) => n.frames.filter((f) => f.t === 'session-warm').length;
    const s = (await open(caller, { fps: 1 })) as SessionView;
    expect(s.node).toBe(a.id);
    await until(() => warms(b) === 1, 'b warmed');
    // Asked away from a (b serves, a is the standby, warmed), then from b: back on a with b
    // the standby again, already warmed.
    expect(await open(caller, { session: s.id, fps: 1, exclude: [a.id] })).toHaveProperty(
      'node',
      b.id,
    );
    await until(() => warms(a) === 1, 'a warmed');
    expect(await open(caller, { session: s.id, fps: 1, exclude: [b.id] })).toHaveProperty(
      'node',
      a.id,
    );
    // Another session warms b: its frame comes after any second one of the first session's.
    expect(await open(other, { fps: 1, exclude: [b.id] })).toHaveProperty('node', a.id);
    await until(() => warms(b) >= 2, 'b warmed for the other session');
    expect(warms(b)).toBe(2);
    for (const n of [caller, other, a, b]) n.ws.close();
  });
});

describe('the figures a session is placed by', () => {
  it('are its own rpc’s, with the slots its Logic’s pool has on the node', async () => {
    const caller = await raw(server);
    const [a, b] = [await raw(server), await raw(server)];
    // a is fast at a key that is not the session's rpc (front's only rpc is entry): no matter.
    const fastElsewhere = { 'hops/front/other@logic': { count: 20, p50: 1 } };
    const slow = beat(50) as Extract<ToRelay, { t: 'heartbeat' }>;
    await report(server, a, { ...slow, stats: { ...slow.stats, ...fastElsewhere } });
    await report(server, b, beat(30));
    const s = (await open(caller, { fps: 1 })) as SessionView;
    expect(s.node).toBe(b.id);
    // b's pool of front holds one worker (of 2 slots): a frame waits a whole frame's time there.
    await report(server, b, { ...beat(31), workersMax: { 'hops/front': 1 } } as ToRelay);
    const one = (await open(caller, { fps: 1, session: s.id })) as SessionView;
    expect(one.latencyMs).toBeGreaterThanOrEqual(62);
    for (const n of [caller, a, b]) n.ws.close();
  });
});

describe('a node’s own report against the relay’s measurements', () => {
  let honest: Server;
  beforeAll(async () => {
    honest = await inProcessRelay({});
    await honest.relay.deploy(await honestBundle());
  });
  afterAll(() => honest?.close());

  it('is taken as no faster than the median the relay measured', async () => {
    const hub = honest.relay.hub;
    const measured = await raw(honest);
    claim(measured, 60);
    // It takes 60 ms a call for real: the relay times three of its calls.
    serve(measured, right, 60);
    await until(() => hub.nodes().find((n) => n.id === measured.id)?.stats[key], 'its report');
    for (let d = 0; d < 3; d++) {
      const res = await fetch(`${honest.relay.url}/api/call/honest/classify`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ input: d }),
      });
      expect(res.status).toBe(200);
    }
    await until(
      () => (hub.nodes().find((n) => n.id === measured.id)?.measured?.[key]?.count ?? 0) >= 3,
      'three calls timed',
    );
    // A node never timed says 1 ms: its session is estimated at the measured median at least.
    const [claims, caller] = [await raw(honest), await raw(honest)];
    claim(claims, 1);
    await until(() => hub.nodes().find((n) => n.id === claims.id)?.stats[key], 'the claim');
    const s = await open(caller, { app: 'honest', service: 'classify', fps: 1 });
    expect((s as SessionView).latencyMs).toBeGreaterThanOrEqual(30);
    for (const n of [measured, claims, caller]) n.ws.close();
  });
});

describe('the cost of sessions on the relay', () => {
  it('judges a node’s sessions once per heartbeat period, the last figures at its end', async () => {
    await until(() => small.relay.hub.sessions.list().length === 0, 'no sessions left');
    const [caller, a] = [await raw(small), await raw(small)];
    await report(small, a, beat(50));
    const s = (await open(caller, { fps: 1 })) as SessionView;
    expect(s.node).toBe(a.id);
    const estimate = () => small.relay.hub.sessions.list().find((x) => x.id === s.id)?.latencyMs;
    // The first report judges it at once (50 → 300 ms); the next, within the period, waits for
    // its end, and is acted on then (300 → 600 ms).
    await report(small, a, beat(300));
    const judged = estimate()!;
    expect(judged).toBeGreaterThan(s.latencyMs + 200);
    await report(small, a, beat(600));
    expect(estimate()).toBe(judged);
    await until(() => estimate()! > judged + 200, 'judged at the end of the period');
    for (const n of [caller, a]) n.ws.close();
  });

  it('places no more sessions on a node than sessionsServed', async () => {
    await until(() => small.relay.hub.sessions.list().length === 0, 'no sessions left');
    const [caller, a] = [await raw(small), await raw(small)];
    await report(small, a, beat(5));
    expect(await open(caller, { fps: 1 })).toHaveProperty('node', a.id);
    // a serves one (sessionsServed 1): the next runs on the caller itself.
    const next = (await open(caller, { fps: 1 })) as SessionView;
    expect(next.node).toBe(caller.id);
    expect(next.reason).toMatch(/^local/);
    for (const n of [caller, a]) n.ws.close();
  });
});

describe('sessions and callers that go', () => {
  it('keeps no session for a caller whose socket closed while it was placed', async () => {
    const callers = await Promise.all(Array.from({ length: 8 }, () => raw(server)));
    // Each asks and goes at once: the relay reads the manifest meanwhile.
    for (const c of callers) {
      c.send({ t: 'session-open', id: 1, app: 'hops', service: 'front', fps: 1 });
      c.ws.terminate();
    }
    const gone = new Set(callers.map((c) => c.id));
    const hub = server.relay.hub;
    await until(() => !hub.nodes().some((n) => gone.has(n.id)), 'the callers dropped');
    // A session opened after them is placed after their opens were answered (one manifest read
    // after theirs): none of theirs remains.
    const after = await raw(server);
    expect(await open(after, { fps: 1 })).toHaveProperty('node');
    expect(hub.sessions.list().filter((x) => gone.has(x.caller))).toEqual([]);
    after.ws.close();
  });
});

describe('sessions and hostile figures', () => {
  it('closes a node reporting a figure past MAX_FIGURE_MS, and the relay lives on', async () => {
    const caller = await raw(server);
    const a = await raw(server);
    await report(server, a, beat(50));
    const s = (await open(caller, { fps: 1 })) as SessionView;
    expect(s.node).toBe(a.id);
    // The caller's own time, 1.5e308 ms × 1.78 mJ/ms, would be Infinity when a's session is
    // judged: refused where it enters (a protocol violation), never thrown in a listener.
    const huge = { 'hops/front/entry@logic': { count: 5, p50: 1.5e308 } };
    caller.send({ ...beat(5), stats: huge } as ToRelay);
    expect((await caller.closed).code).toBe(1008);
    await until(
      () => !server.relay.hub.sessions.list().some((x) => x.id === s.id),
      'the closed caller’s session gone',
    );
    // a is judged again and stays; the relay places the next session on it.
    await report(server, a, beat(60));
    const other = await raw(server);
    expect(await open(other, { fps: 1 })).toHaveProperty('node', a.id);
    // A frame rate so low that 1000 / fps ms is past any figure: a budget of MAX_FIGURE_MS.
    expect(await open(other, { fps: 1e-300 })).toHaveProperty('node', a.id);
    for (const n of [a, other]) n.ws.close();
  });
});
