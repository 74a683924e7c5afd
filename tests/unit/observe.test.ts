// What operators read from a relay: /metrics after real calls (HTTP and a node's, through real
// sockets), /api/health and /api/ready, including not ready when its storage is gone.

import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { encodeFrame } from '../../core/protocol';
import { hostileApp } from '../apps';
import { answerCall, joinRaw, onCalls, type RawNode } from '../raw-node';
import { inProcessRelay } from '../relay-process';
import { until } from '../until';

type Server = Awaited<ReturnType<typeof inProcessRelay>>;
const servers: Server[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) await s.close();
});

async function relayWithApp(): Promise<Server> {
  const server = await inProcessRelay({ apps: [await hostileApp()] });
  servers.push(server);
  return server;
}

/** A scrape as Prometheus reads it: each sample by name and its labels sorted. */
async function scrape(server: Server, token = server.relay.admin.token) {
  const res = await fetch(`${server.relay.url}/metrics`, {
    headers: { authorization: `Bearer ${token}` },
  });
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toContain('text/plain');
  const samples = new Map<string, number>();
  for (const line of (await res.text()).split('\n')) {
    const m = /^(\w+)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) continue;
    const labels = [...(m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)]
      .map(([, k, v]) => `${k}=${v}`)
      .sort();
    samples.set(`${m[1]}{${labels.join(',')}}`, Number(m[3]));
  }
  return (name: string, labels: Record<string, string> = {}) => {
    const key = `${name}{${Object.entries(labels)
      .map(([k, v]) => `${k}=${v}`)
      .sort()
      .join(',')}}`;
    return samples.get(key) ?? 0;
  };
}

/** Answers each call with its input; refuses those whose input is "busy" as busy (E_UNAVAILABLE). */
function serve(node: RawNode): void {
  onCalls(node, (f) => {
    if (f.input !== 'busy') return answerCall(node, f, f.input);
    const error = { code: 'E_UNAVAILABLE', message: 'busy' };
    node.ws.send(encodeFrame({ t: 'error', id: f.id, error }));
  });
}

async function httpCall(server: Server, service: string, input: unknown, app = 'hostile') {
  const res = await fetch(`${server.relay.url}/api/call/${app}/${service}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ input, rpc: 'echo' }),
  });
  return { status: res.status, body: (await res.json()) as { value?: unknown } };
}

describe('GET /metrics', () => {
  it('needs the metrics scope: no credential 401, a key without it 403, with it 200', async () => {
    const server = await relayWithApp();
    const url = `${server.relay.url}/metrics`;
    expect((await fetch(url)).status).toBe(401);
    const { secret: caller } = await server.relay.keys.create(['call'], 'no metrics');
    const other = await fetch(url, { headers: { authorization: `Bearer ${caller}` } });
    expect(other.status).toBe(403);
    expect(await other.text()).toContain('not metrics');
    const { secret } = await server.relay.keys.create(['metrics'], 'prometheus');
    const get = await scrape(server, secret);
    // The process's own figures are there too.
    expect(get('brume_process_resident_memory_bytes')).toBeGreaterThan(0);
  });

  it('counts calls, decisions, forwards, retries, context writes and nodes by exact amounts', async () => {
    const server = await relayWithApp();
    const a = await joinRaw(server.ws);
    const b = await joinRaw(server.ws);
    serve(a.node);
    serve(b.node);
    const was = await scrape(server);
    const ok = { app: 'hostile', service: 'echo', variant: 'echo', outcome: 'ok' };

    for (const input of ['one', 'two', 'three']) {
      expect(await httpCall(server, 'echo', input)).toMatchObject({
        status: 200,
        body: { value: input },
      });
    }
    // Refused before placing: names no manifest has become "other", never a label of their own.
    expect((await httpCall(server, 'nope', 1)).status).toBe(404);
    expect((await httpCall(server, 'echo', 1, 'ghost')).status).toBe(404);
    // The first node refuses as busy, the call is placed again on the other, which refuses too.
    expect((await httpCall(server, 'echo', 'busy')).status).toBe(503);
    // A node's call through the relay: placed (the caller excluded) on the other node.
    a.node.send({
      t: 'call',
      id: 7,
      to: '0'.repeat(32),
      app: 'hostile',
      service: 'echo',
      rpc: 'echo',
      input: 'from a node',
      qos: {},
    });
    expect(await a.node.next('result')).toMatchObject({ id: 7, value: 'from a node' });
    // A context write over HTTP: stored, and fanned out (to nodes that keep the app: none).
    const put = await fetch(`${server.relay.url}/api/context/hostile/greeting`, {
      method: 'PUT',
      headers: {
        'content-type': 'application/json',
        authorization: `Bearer ${server.relay.admin.token}`,
      },
      body: JSON.stringify({ value: 'hello' }),
    });
    expect(put.status).toBe(200);

    const now = await scrape(server);
    const moved = (name: string, labels: Record<string, string> = {}) =>
      now(name, labels) - was(name, labels);
    expect(moved('brume_calls_total', ok)).toBe(4);
    expect(moved('brume_call_duration_seconds_count', ok)).toBe(4);
    const refusedNames = {
      app: 'hostile',
      service: 'other',
      variant: 'other',
      outcome: 'E_NOT_FOUND',
    };
    expect(moved('brume_calls_total', refusedNames)).toBe(1);
    const ghost = { app: 'other', service: 'other', variant: 'other', outcome: 'E_NOT_FOUND' };
    expect(moved('brume_calls_total', ghost)).toBe(1);
    // A busy refusal answers with no rpc: its variant is not a name the manifest knows.
    const busy = { app: 'hostile', service: 'echo', variant: 'other', outcome: 'E_UNAVAILABLE' };
    expect(moved('brume_calls_total', busy)).toBe(1);
    // 3 + busy twice + the node's call placed; nope and ghost refused.
    expect(moved('brume_decision_duration_seconds_count', { outcome: 'placed' })).toBe(6);
    expect(moved('brume_decision_duration_seconds_count', { outcome: 'refused' })).toBe(2);
    expect(moved('brume_forwarded_calls_total', { from: 'http' })).toBe(5);
    expect(moved('brume_forwarded_calls_total', { from: 'node' })).toBe(1);
    expect(moved('brume_retried_calls_total')).toBe(1);
    expect(moved('brume_context_ops_total', { source: 'http', outcome: 'stored' })).toBe(1);
    expect(moved('brume_context_fanout_duration_seconds_count')).toBe(1);
    expect(now('brume_context_log_bytes')).toBe(server.relay.context.files().log);
    expect(now('brume_nodes', { role: 'dew', state: 'ready' })).toBe(2);
    expect(moved('brume_node_bytes_total', { direction: 'in' })).toBeGreaterThan(0);
    expect(moved('brume_node_bytes_total', { direction: 'out' })).toBeGreaterThan(0);
    expect(now('brume_hub_events_total', { kind: 'joined' })).toBe(2);

    // A node that leaves is counted out of the gauge and as an event.
    a.node.ws.close();
    await until(
      async () => (await scrape(server))('brume_nodes', { role: 'dew', state: 'ready' }) === 1,
      'the node that left out of brume_nodes',
    );
    expect((await scrape(server))('brume_hub_events_total', { kind: 'left' })).toBe(1);
  });
});

describe('health and readiness', () => {
  it('is alive and ready with its storage open; not ready, naming why, once storage is gone', async () => {
    const server = await relayWithApp();
    const health = await fetch(`${server.relay.url}/api/health`);
    expect(health.status).toBe(200);
    expect(await health.json()).toMatchObject({ ok: true });

    const ready = await fetch(`${server.relay.url}/api/ready`);
    expect(ready.status).toBe(200);
    const body = (await ready.json()) as {
      ready: boolean;
      checks: Record<string, { ok: boolean; detail: string }>;
    };
    expect(body.ready).toBe(true);
    expect(body.checks.storage).toMatchObject({
      ok: true,
      detail: expect.stringContaining('1 apps'),
    });
    expect(body.checks.context?.ok).toBe(true);
    // Redis is not supported yet: the check says so instead of pretending to have looked.
    expect(body.checks.redis).toMatchObject({
      ok: true,
      detail: expect.stringContaining('not configured'),
    });
    // This relay runs no cloud node: nothing to wait for.
    expect(body.checks.cloud).toBeUndefined();

    // The app store's directory disappears under the relay (a lost volume): not ready.
    await rm(join(server.dataDir, 'apps'), { recursive: true, force: true });
    const gone = await fetch(`${server.relay.url}/api/ready`);
    expect(gone.status).toBe(503);
    const why = (await gone.json()) as typeof body;
    expect(why.ready).toBe(false);
    expect(why.checks.storage).toMatchObject({
      ok: false,
      detail: expect.stringContaining('ENOENT'),
    });
    // Alive all the same: a process manager should not restart it for this.
    expect((await fetch(`${server.relay.url}/api/health`)).status).toBe(200);
  });
});
