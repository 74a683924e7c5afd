// Decisions, calls and events shared by the relays of a cluster (issue 17): a real redis-server,
// two relays in this process on real ports (`redis` + `blobDir`), raw nodes. What happens at one
// relay is listed by the other's admin API, tagged with its relay; garbage in the streams is
// skipped; with Redis hung or down calls are still answered and the entries not kept are counted,
// at most `maxPending` waiting, sent once Redis is back; a relay deciding faster than Redis keeps
// a log sends no more than the newest SHOWN entries a log per flush.
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CallRecord, DecisionRecord, HubEvent } from '../../core/api';
import { FLUSH_MS, MAX_ENTRY_BYTES, redisLogs } from '../../relay/cluster/logs';
import { openRedis } from '../../relay/cluster/redis';
import { type LogKind, SHOWN } from '../../relay/hub/log-store';
import { hostileApp } from '../apps';
import { echoCall, type Relay, useRelayPair } from '../cluster-relays';
import { answerCall, joinRaw, onCalls, type RawNode } from '../raw-node';
import { until } from '../until';

const warnings: string[] = [];
const logger = { info() {}, error() {}, warn: (m: unknown) => void warnings.push(String(m)) };
const pair = useRelayPair('cluster-logs', { logger }, async () => ({ apps: [await hostileApp()] }));
let raw: Redis;

/** A log as GET /api/<kind> at `r` shows it (the admin token is the cluster's). */
async function shown<T>(r: Relay, kind: LogKind): Promise<{ status: number; body: T[] }> {
  const res = await fetch(`${r.relay.url}/api/${kind}`, {
    headers: { authorization: `Bearer ${r.relay.admin.token}` },
  });
  return { status: res.status, body: (await res.json()) as T[] };
}

/** The relay's count of dropped entries of `kind` (0 before any). */
async function droppedAt(r: Relay, kind: LogKind): Promise<number> {
  const res = await fetch(`${r.relay.url}/metrics`, {
    headers: { authorization: `Bearer ${r.relay.admin.token}` },
  });
  const m = (await res.text()).match(
    new RegExp(`brume_log_entries_dropped_total\\{log="${kind}"\\} (\\d+)`),
  );
  return m ? Number(m[1]) : 0;
}

const call = (r: Relay, input: string) => echoCall(r, input);

/** Answers every call with "echo <input>". */
function serve(node: RawNode): void {
  onCalls(node, (f) => answerCall(node, f, `echo ${f.input}`));
}

const relayId = (r: Relay) => r.relay.cluster?.relayId ?? 'no cluster';

beforeAll(() => {
  raw = new Redis(pair.redis.url);
});
afterAll(() => {
  raw?.disconnect();
});

describe('the logs of relays sharing a Redis', () => {
  it('lists a decision, a call and an event made at A at B, tagged with relay A', async () => {
    const { node, welcome } = await joinRaw(pair.a.ws);
    serve(node);
    const res = await call(pair.a, 'hi');
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ value: 'echo hi', node: welcome.nodeId });
    const fromA = { relay: relayId(pair.a) };
    const event = await until(
      async () =>
        (await shown<HubEvent>(pair.b, 'events')).body.find(
          (e) => e.kind === 'joined' && e.node === welcome.nodeId,
        ),
      'the join at A listed at B',
    );
    expect(event).toMatchObject(fromA);
    const decision = await until(
      async () =>
        (await shown<DecisionRecord>(pair.b, 'decisions')).body.find(
          (d) => d.node === welcome.nodeId && d.ok,
        ),
      'the decision at A listed at B',
    );
    expect(decision).toMatchObject({ app: 'hostile', service: 'echo', ...fromA });
    const answered = await until(
      async () =>
        (await shown<CallRecord>(pair.b, 'calls')).body.find((c) => c.node === welcome.nodeId),
      'the call at A listed at B',
    );
    expect(answered).toMatchObject({ app: 'hostile', service: 'echo', ok: true, ...fromA });
    // A call made at B (on A's node) is listed at A, tagged B; this relay's own view stays its own.
    expect((await call(pair.b, 'there')).status).toBe(200);
    await until(
      async () =>
        (await shown<CallRecord>(pair.a, 'calls')).body.some((c) => c.relay === relayId(pair.b)),
      "B's call listed at A",
    );
    expect(pair.b.relay.hub.calls().length).toBe(1);
    expect(pair.b.relay.hub.calls()[0]?.relay).toBe(undefined);
    node.ws.close();
  }, 60_000);

  it('skips garbage in the streams, and still lists the valid entries around it', async () => {
    const key = 'brume:logs:events';
    const valid = (detail: string) =>
      JSON.stringify({ at: Date.now(), kind: 'refused', detail, relay: 'elsewhere' });
    await raw.xadd(key, '*', 'e', valid('before the garbage'));
    await raw.xadd(key, '*', 'e', 'not json {');
    await raw.xadd(key, '*', 'e', JSON.stringify({ at: 'yesterday', kind: 'joined', detail: '' }));
    await raw.xadd(key, '*', 'e', JSON.stringify({ at: 1, kind: 'exploded', detail: 'x' }));
    await raw.xadd(key, '*', 'e', JSON.stringify({ at: 1, kind: 'left', detail: 'no relay' }));
    await raw.xadd(key, '*', 'other', valid('under another field'));
    await raw.xadd(key, '*', 'e', valid('x'.repeat(MAX_ENTRY_BYTES)));
    await raw.xadd(key, '*', 'e', valid('after the garbage'));
    const { status, body } = await shown<HubEvent>(pair.b, 'events');
    expect(status).toBe(200);
    const details = body.filter((e) => e.relay === 'elsewhere').map((e) => e.detail);
    expect(details).toEqual(['before the garbage', 'after the garbage']);
    expect(body.some((e) => e.detail === 'no relay' || e.kind === ('exploded' as never))).toBe(
      false,
    );
    expect(warnings.some((w) => /6 entries of the events log .* skipped/.test(w))).toBe(true);
    // A stream that is not a stream: the read fails with a typed error, the relay runs on.
    await raw.del('brume:logs:decisions');
    await raw.set('brume:logs:decisions', 'not a stream');
    const wrong = await fetch(`${pair.b.relay.url}/api/decisions`, {
      headers: { authorization: `Bearer ${pair.b.relay.admin.token}` },
    });
    expect(wrong.status).toBe(500);
    expect(await wrong.json()).toMatchObject({ error: { code: 'E_INTERNAL' } });
    await raw.del('brume:logs:decisions');
    expect((await shown(pair.b, 'events')).status).toBe(200);
  }, 60_000);

  it('answers calls while Redis hangs, counting the entries it could not keep', async () => {
    const { node, welcome } = await joinRaw(pair.a.ws);
    serve(node);
    const before = await droppedAt(pair.a, 'calls');
    pair.redis.pause();
    try {
      // Calls at A on A's node: the log's writes wait on a Redis that answers nothing.
      for (const input of ['one', 'two', 'three']) {
        const res = await call(pair.a, input);
        expect(res.status).toBe(200);
        expect(await res.json()).toMatchObject({ value: `echo ${input}`, node: welcome.nodeId });
      }
      expect(pair.a.relay.hub.calls().filter((c) => c.node === welcome.nodeId)).toHaveLength(3);
      // The write in flight times out (the link's command timeout): its entries are counted.
      await until(
        async () => (await droppedAt(pair.a, 'calls')) > before,
        'dropped calls counted',
        60_000,
        100,
      );
    } finally {
      pair.redis.resume();
    }
    node.ws.close();
  }, 90_000);
});

describe('a Redis log store', () => {
  it('sends only the newest SHOWN entries a log per flush: decisions do not each cost a write', async () => {
    // Its own prefix: XINFO's entries-added counts every XADD this store made, none of A's or B's.
    const link = await openRedis(pair.redis.url, { prefix: 'flood:' });
    const logs = redisLogs(link, { relayId: 'r1', warn: () => {} });
    const dropped: [LogKind, number][] = [];
    logs.onDropped((kind, n) => dropped.push([kind, n]));
    const decision = (i: number): DecisionRecord => ({
      at: Date.now(),
      app: 'a',
      service: 's',
      qos: {},
      caller: `c${i}`,
      reason: '',
      ok: true,
    });
    try {
      // Five times what a log shows, at once (well within one flush's time): a busy relay.
      const total = 5 * SHOWN;
      for (let i = 0; i < total; i++) logs.add('decisions', decision(i));
      logs.add('events', { at: Date.now(), kind: 'left', detail: 'among the decisions' });
      const listed = await until(
        async () => {
          const got = await logs.list('decisions');
          return got.length >= SHOWN ? got : undefined;
        },
        'the decisions sent',
        10_000 + 10 * FLUSH_MS,
      );
      // The newest SHOWN, in order; the event was not crowded out.
      expect(listed.map((d) => d.caller)).toEqual(
        Array.from({ length: SHOWN }, (_, i) => `c${total - SHOWN + i}`),
      );
      expect((await logs.list('events')).map((e) => e.detail)).toEqual(['among the decisions']);
      const info = (await link.client.call('XINFO', 'STREAM', 'flood:logs:decisions')) as unknown[];
      expect(info[info.indexOf('entries-added') + 1]).toBe(SHOWN);
      // Superseded entries are not dropped ones: Redis would have trimmed them at once.
      expect(dropped).toEqual([]);
      expect(logs.recent('decisions').at(-1)?.caller).toBe(`c${total - 1}`);
    } finally {
      await logs.close();
      await link.close();
    }
  }, 60_000);

  it('keeps at most maxPending entries while Redis is down, sends them once it is back', async () => {
    const link = await openRedis(pair.redis.url, { maxBackoffMs: 200 });
    const logs = redisLogs(link, { relayId: 'r1', warn: () => {}, maxPending: 3 });
    const dropped: [LogKind, number][] = [];
    logs.onDropped((kind, n) => dropped.push([kind, n]));
    try {
      await pair.redis.kill();
      await until(() => link.client.status !== 'ready', 'the link to see Redis gone');
      for (const n of [1, 2, 3, 4, 5])
        logs.add('events', { at: Date.now(), kind: 'left', detail: `down ${n}` });
      expect(dropped).toEqual([
        ['events', 1],
        ['events', 1],
      ]);
      await expect(logs.list('events')).rejects.toMatchObject({ code: 'E_UNAVAILABLE' });
      expect(logs.recent('events').map((e) => e.detail)).toEqual([
        'down 1',
        'down 2',
        'down 3',
        'down 4',
        'down 5',
      ]);
      await pair.redis.restart();
      const sent = await until(async () => {
        const listed = await logs.list('events').catch(() => []);
        const mine = listed.filter((e) => e.relay === 'r1').map((e) => e.detail);
        return mine.length === 3 ? mine : undefined;
      }, 'the waiting entries sent once Redis is back');
      expect(sent).toEqual(['down 3', 'down 4', 'down 5']);
    } finally {
      await logs.close();
      await link.close();
    }
  }, 60_000);
});
