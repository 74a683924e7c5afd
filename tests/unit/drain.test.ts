// Graceful drain of a real relay process: SIGTERM in the middle of a stream of calls (HTTP and a
// node's calls through the relay) loses none. Each call is answered, or refused with a typed
// error a client retries; a call still running at the drain deadline fails with E_UNAVAILABLE;
// the process exits 0; context writes acknowledged before SIGTERM are there after a restart, the
// nodes rejoin by themselves, and the refused calls succeed when retried.
import { afterAll, describe, expect, it } from 'vitest';
import { fromWire } from '../../core/errors';
import { loadOrCreateIdentity, memoryKeyStore } from '../../core/identity';
import { packBundle } from '../../core/manifest';
import type { BrumeNode } from '../../core/node/node';
import { hostileApp } from '../apps';
import { deploy, type RelayProcess, startRelay } from '../relay-process';
import { testNode } from '../test-node';
import { until } from '../until';

// Shorter than the hostile app's Logic timeout (10 s), so the endless spin is still running at the
// deadline and fails by the drain, not by its own timeout.
const DRAIN_MS = 6_000;
const retryable = new Set(['E_UNAVAILABLE', 'E_DISCONNECTED']);

const nodes: BrumeNode[] = [];
let relay: RelayProcess | undefined;
afterAll(async () => {
  for (const n of nodes) {
    n.close();
    n.runtime.close();
  }
  await relay?.stop();
});

/** A node in this process that rejoins quickly when its relay comes back. */
async function join(ws: string, name: string, maxConcurrency = 4): Promise<BrumeNode> {
  const identity = await loadOrCreateIdentity(memoryKeyStore(), name);
  const node = await testNode(ws, identity, {
    refresh: true,
    maxConcurrency,
    runtime: { logicWorkers: 4 },
    backoff: { initialMs: 100, maxMs: 400 },
  });
  nodes.push(node);
  await node.whenJoined();
  return node;
}

interface HttpOutcome {
  status: number;
  retryAfter: string | null;
  body: { value?: unknown; error?: { code: string; message: string } };
}

async function httpCall(url: string, body: unknown): Promise<HttpOutcome> {
  const res = await fetch(`${url}/api/call/hostile/echo`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  return { status: res.status, retryAfter: res.headers.get('retry-after'), body: await res.json() };
}

/** Calls one after another until the first that is not answered: what a client sees. */
async function stream<T>(call: () => Promise<T>, answered: (r: T) => boolean): Promise<T[]> {
  const seen: T[] = [];
  for (;;) {
    const r = await call();
    seen.push(r);
    if (!answered(r)) return seen;
  }
}

/** A node's call as a client keeps it: the value, or the error's wire shape. */
const settle = (p: Promise<{ value: unknown }>) =>
  p.then(
    (r) => ({ ok: true as const, value: r.value }),
    (e: unknown) => ({ ok: false as const, error: fromWire(e) }),
  );

describe('SIGTERM drains the relay', () => {
  it('loses no call, exits 0, keeps acknowledged context, and serves the retries after a restart', async () => {
    relay = await startRelay({ args: ['--no-cloud', '--drain-ms', String(DRAIN_MS)] });
    const { url, token, dataDir } = relay;
    const hostile = await hostileApp();
    expect((await deploy(relay, packBundle(hostile.manifest, hostile.files))).status).toBe(201);
    const ws = `${url.replace('http', 'ws')}/ws`;
    const server = await join(ws, 'server');
    const laggard = await join(ws, 'laggard');
    const caller = await join(ws, 'caller');

    // Context writes the relay acknowledged (each answered only once on disk).
    const keys = Array.from({ length: 20 }, (_, i) => `k${i}`);
    const acked = await Promise.all(
      keys.map((k, i) =>
        fetch(`${url}/api/context/hostile/${k}`, {
          method: 'PUT',
          headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
          body: JSON.stringify({ value: { i } }),
        }).then((r) => r.status),
      ),
    );
    expect(acked).toEqual(keys.map(() => 200));

    const echo = (n: number) => ({
      input: `hi ${n}`,
      rpc: 'echo',
      qos: { privacy: server.nodeId },
    });
    let n = 0;
    const httpStream = stream(
      () => httpCall(url, echo(n++)),
      (r) => r.status === 200,
    );
    const nodeStream = stream(
      () =>
        settle(
          caller.call(
            'hostile',
            'echo',
            `node ${n++}`,
            { privacy: server.nodeId },
            { rpc: 'echo' },
          ),
        ),
      (r) => r.ok,
    );
    // In flight at SIGTERM: one call that finishes within the drain, one that outlasts it.
    const finishes = httpCall(url, {
      input: { n: 30_000_000 },
      rpc: 'spin',
      qos: { privacy: server.nodeId },
    });
    const outlasts = httpCall(url, {
      input: { n: 2 ** 40 },
      rpc: 'spin',
      qos: { privacy: laggard.nodeId },
    });
    await until(() => server.busy > 0 && laggard.busy > 0, 'both spins to be running');
    const { child } = relay;
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    await relay.stop(); // SIGTERM, and waits for the process to exit
    expect(await exited).toBe(0);
    expect(relay.output()).toMatch(/drained: \d+ of \d+ calls in flight finished, 1 failed/);

    // Every HTTP call was answered, or refused with 503 E_UNAVAILABLE and Retry-After.
    const http = await httpStream;
    const refusedHttp = http.at(-1)!;
    expect(http.slice(0, -1).every((r) => r.status === 200)).toBe(true);
    expect(refusedHttp).toMatchObject({ status: 503, body: { error: { code: 'E_UNAVAILABLE' } } });
    expect(Number(refusedHttp.retryAfter)).toBeGreaterThan(0);
    const nodeCalls = await nodeStream;
    const refusedNode = nodeCalls.at(-1)!;
    expect(nodeCalls.slice(0, -1).every((r) => r.ok)).toBe(true);
    expect(refusedNode.ok ? 'answered' : retryable.has(refusedNode.error.code)).toBe(true);
    expect((await finishes).status).toBe(200);
    expect((await finishes).body.value).toMatchObject({ n: 30_000_000 });
    const late = await outlasts;
    expect(late).toMatchObject({ status: 503, body: { error: { code: 'E_UNAVAILABLE' } } });
    expect(late.body.error!.message).toContain(`drain deadline ${DRAIN_MS} ms`);

    // Back on the same port and data: the nodes rejoin by themselves, the context is there,
    // and the refused calls succeed.
    const port = new URL(url).port;
    relay = await startRelay({
      dataDir,
      args: ['--no-cloud', '--port', port, '--drain-ms', String(DRAIN_MS)],
    });
    expect(relay.url).toBe(url);
    const joined = async () => {
      const res = await fetch(`${url}/api/nodes`, {
        headers: { authorization: `Bearer ${token}` },
      });
      const list = (await res.json()) as { id: string; apps: string[] }[];
      return [server, caller].every((m) =>
        list.some((x) => x.id === m.nodeId && x.apps.includes('hostile')),
      );
    };
    await until(joined, 'the nodes to rejoin the restarted relay');
    for (const [i, k] of keys.entries()) {
      const got = await (await fetch(`${url}/api/context/hostile/${k}`)).json();
      expect(got.value, k).toEqual({ i });
    }
    const retried = await httpCall(url, echo(1_000_000));
    expect(retried).toMatchObject({ status: 200, body: { value: 'hi 1000000' } });
    const again = await caller.call(
      'hostile',
      'echo',
      'again',
      { privacy: server.nodeId },
      { rpc: 'echo' },
    );
    expect(again.value).toBe('again');
  }, 120_000);
});
