// Server nodes (issue 18), all real processes: a relay started with --no-cloud and `brume node`
// processes joining it over a WebSocket. Nothing here runs a node in the test's own process.
import { execFile } from 'node:child_process';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CallRecord, DecisionRecord, NodeRecord } from '../../core/api';
import { decode, encode } from '../../core/codec';
import { packBundle } from '../../core/manifest';
import { hostileApp } from '../apps';
import { type NodeProcess, startNodeProcess } from '../node-process';
import { deploy, type RelayProcess, startRelay } from '../relay-process';
import { until } from '../until';

const run = promisify(execFile);
let relay: RelayProcess;
const started: NodeProcess[] = [];

async function admin<T>(path: string, init: RequestInit = {}): Promise<T> {
  const res = await fetch(`${relay.url}${path}`, {
    ...init,
    headers: { authorization: `Bearer ${relay.token}`, 'content-type': 'application/json' },
  });
  if (!res.ok) throw new Error(`${path}: ${res.status} ${await res.text()}`);
  return (await res.json()) as T;
}
const nodes = () => admin<NodeRecord[]>('/api/nodes');
const joined = (id: string) =>
  until(async () => (await nodes()).find((n) => n.id === id), `node ${id.slice(0, 8)} to join`);

async function node(args: string[], dataDir?: string): Promise<NodeProcess> {
  const n = await startNodeProcess(relay.url, { args, ...(dataDir && { dataDir }) });
  started.push(n);
  return n;
}

/** What the Logic `spin` computes for n: n rounds of x = x * 1664525 + 1013904223 from 1. */
/**
 * Iterations of the spin call: about 4 s on this machine, so a node's heartbeat (every 2 s)
 * reports it running (its queue) before it ends, and well inside the service's Logic timeout.
 */
const SPIN = 3_000_000_000;

function spin(n: number): number {
  let x = 1;
  for (let i = 0; i < n; i++) x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
  return x;
}

function spinCall(n: number) {
  return fetch(`${relay.url}/api/call/hostile/echo`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ input: { n }, rpc: 'spin' }),
  });
}

/**
 * The node the relay placed a spin call made since `since` on, once that node counts it as
 * running (its heartbeat, every 2 s, reports it: the spin must outlast one).
 */
function runningOn(since: number): Promise<string> {
  return until(async () => {
    const d = (await admin<DecisionRecord[]>('/api/decisions'))
      .filter((r) => r.app === 'hostile' && r.ok && r.at >= since)
      .at(-1);
    const rec = d?.node && (await nodes()).find((r) => r.id === d.node);
    return rec && rec.queue > 0 && rec.id;
  }, 'the spin call to be placed and running');
}

function classify() {
  const pixels = new Uint8Array(784);
  for (let j = 300; j < 500; j += 3) pixels[j] = 255;
  return fetch(`${relay.url}/api/call/digits/classify`, {
    method: 'POST',
    headers: { 'content-type': 'application/msgpack' },
    body: Buffer.from(encode({ input: { width: 28, height: 28, pixels }, qos: {} })),
  });
}

beforeAll(async () => {
  relay = await startRelay({ args: ['--no-cloud'] });
  const hostile = await hostileApp();
  const res = await deploy(relay, packBundle(hostile.manifest, hostile.files));
  expect(res.status, await res.text()).toBeLessThan(300);
});

afterAll(async () => {
  for (const n of started) await n.kill();
  await relay?.stop();
});

describe('brume node', () => {
  let a: NodeProcess;
  let b: NodeProcess;
  const apps = ['--apps', 'digits,hostile', '--threads', '1', '--logic-timeout-ms', '60000'];

  it('is refused as an untrusted cloud node, and joins once `brume trust` adds its key', async () => {
    a = await node(['--role', 'cloud', ...apps]);
    await until(
      () => relay.output().includes(`refused ${a.id.slice(0, 8)}: the cloud role needs`),
      'the relay to refuse the untrusted cloud node',
    );
    await until(() => a.output().includes('join refused'), 'the node to print why');
    expect((await nodes()).map((n) => n.id)).not.toContain(a.id);
    // Its key, kept for the next run, readable by its owner alone.
    expect(statSync(join(a.dataDir, 'node-key.json')).mode & 0o777).toBe(0o600);

    const { stdout } = await run(process.execPath, [
      '--import',
      'tsx',
      'relay/cli.ts',
      'trust',
      a.publicKey,
      '--label',
      'server node a',
      '--relay',
      relay.url,
      '--token',
      relay.token,
    ]);
    expect(stdout).toContain(`trusted node ${a.id}`);
    const rec = await joined(a.id);
    expect(rec).toMatchObject({ role: 'cloud', trusted: true, backends: ['cpu'] });
    expect(rec.caps.cores).toBeGreaterThanOrEqual(1);
    expect(rec.caps.backends[0]!.detail).toContain('execution providers that load here: cpu');
  }, 120_000);

  it('serves an HTTP call with no tab and no cloud node on the relay', async () => {
    await until(
      async () => (await nodes()).find((n) => n.id === a.id)?.apps.includes('digits'),
      'a to report digits',
    );
    const res = await classify();
    expect(res.status).toBe(200);
    const body = decode(new Uint8Array(await res.arrayBuffer())) as {
      node: string;
      value: { digit: number };
    };
    expect(body.node).toBe(a.id);
    expect(body.value.digit).toBeGreaterThanOrEqual(0);
    expect(a.output()).toMatch(/app file \w+: \d+ bytes from the relay/);
  }, 60_000);

  it('killed with SIGKILL mid-call: the call runs again on another node and is answered once', async () => {
    b = await node(['--role', 'cloud', ...apps]);
    await admin('/api/trust', {
      method: 'POST',
      body: JSON.stringify({ publicKey: b.publicKey, label: 'server node b' }),
    });
    await joined(b.id);
    await until(
      async () => (await nodes()).find((n) => n.id === b.id)?.apps.includes('hostile'),
      'b to report hostile',
    );
    // Both hold every app file before one is killed: the restart below must find them all.
    for (const p of [a, b])
      await until(() => p.output().includes('app hostile loaded'), 'apps loaded');
    const n = SPIN;
    const before = (await admin<CallRecord[]>('/api/calls')).length;
    const since = Date.now() - 1000;
    const call = spinCall(n);
    const placed = await runningOn(since);
    const [victim, survivor] = placed === a.id ? [a, b] : [b, a];
    await victim.kill();
    const res = await call;
    expect(res.status, await res.clone().text()).toBe(200);
    const body = (await res.json()) as { node: string; value: { n: number; x: number } };
    expect(body).toMatchObject({ node: survivor.id, value: { n, x: spin(n) } });
    const calls = (await admin<CallRecord[]>('/api/calls')).slice(before);
    expect(calls.filter((c) => c.app === 'hostile')).toMatchObject([
      { node: survivor.id, ok: true },
    ]);

    // Restarted on the same data directory: the same id, and its app files from disk.
    const again = await node(['--role', 'cloud', ...apps], victim.dataDir);
    expect(again.id).toBe(victim.id);
    expect(again.publicKey).toBe(victim.publicKey);
    await until(() => /app hostile (loaded|not loaded)/.test(again.output()), 'its apps to load');
    expect(again.output()).toMatch(/bytes from disk/);
    expect(again.output()).not.toMatch(/bytes from the relay/);
    await joined(again.id);
  }, 180_000);

  it('drains on SIGTERM: the call in flight is answered there, then it exits 0', async () => {
    const n = SPIN;
    const since = Date.now() - 1000;
    const call = spinCall(n);
    const placed = await runningOn(since);
    // The restarted node has the killed one's id: the live process of that id.
    const alive = (p: NodeProcess) => p.child.exitCode === null && p.child.signalCode === null;
    const draining = started.find((p) => p.id === placed && alive(p))!;
    const code = draining.stop();
    const res = await call;
    expect(res.status, await res.clone().text()).toBe(200);
    expect(await res.json()).toMatchObject({ node: placed, value: { n, x: spin(n) } });
    expect(await code).toBe(0);
    expect(draining.output()).toContain('drained');
    await until(async () => !(await nodes()).some((r) => r.id === placed), 'it to leave');
  }, 120_000);
});
