// Workers that scale with load on a real server node (`brume node` process) joined to a real relay
// (--no-cloud): calls pinned to the node make its pool grow to the manifest's scale.max, its
// heartbeat reports the workers, and once the calls stop they retire one per idle period to none.
import { rmSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NodeRecord } from '../../core/api';
import { packBundle } from '../../core/manifest';
import { scaledApp } from '../apps';
import { type NodeProcess, startNodeProcess } from '../node-process';
import { deploy, type RelayProcess, startRelay } from '../relay-process';
import { until } from '../until';

let relay: RelayProcess;
let node: NodeProcess;

async function nodes(): Promise<NodeRecord[]> {
  const res = await fetch(`${relay.url}/api/nodes`, {
    headers: { authorization: `Bearer ${relay.token}` },
  });
  return (await res.json()) as NodeRecord[];
}
const record = async () => (await nodes()).find((n) => n.id === node.id);

beforeAll(async () => {
  relay = await startRelay({ args: ['--no-cloud'] });
  const b = await scaledApp();
  expect((await deploy(relay, packBundle(b.manifest, b.files))).status).toBe(201);
  // Idle time overridden down to 400 ms; each call holds its worker 1 s (bench only), so calls
  // wait for workers however slowly threads start on a busy machine. The
  // node's cap is 8: the pool's max is the manifest's 4.
  node = await startNodeProcess(relay.url, {
    args: [
      '--role',
      'cloud',
      '--threads',
      '1',
      '--concurrency',
      '16',
      '--apps',
      'scaled',
      '--max-workers',
      '8',
      '--worker-idle-ms',
      '400',
      '--hold-ms',
      '1000',
    ],
  });
  await fetch(`${relay.url}/api/trust`, {
    method: 'POST',
    headers: { authorization: `Bearer ${relay.token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ publicKey: node.publicKey, label: 'autoscale test node' }),
  });
  await until(async () => (await record())?.apps.includes('scaled'), 'the node to serve scaled');
}, 120_000);

afterAll(async () => {
  await node?.kill();
  if (node) rmSync(node.dataDir, { recursive: true, force: true });
  await relay?.stop();
});

const call = (word: string) =>
  fetch(`${relay.url}/api/call/scaled/echo`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${relay.token}` },
    body: JSON.stringify({ input: word, qos: { privacy: node.id } }),
  });

describe('a server node under load', () => {
  it('grows its workers to the manifest max, reports them, and shrinks to none when calls stop', async () => {
    // The node warmed one worker at start (--apps); unused, it retires after an idle period.
    const before = await until(
      async () => {
        const r = await record();
        return r?.workers?.['scaled/echo'] === 0 && r;
      },
      'the warmed worker to retire',
      30_000,
    );
    const shrunk = before.scaled!.shrinks;
    const words = Array.from({ length: 12 }, (_, i) => `w${i}`);
    const answers = await Promise.all(
      words.map(async (w) => {
        const res = await call(w);
        expect(res.status).toBe(200);
        return ((await res.json()) as { value: unknown }).value;
      }),
    );
    expect(answers).toEqual(words);
    // The heartbeat reported the pool at its max (4: scale.max under the node's cap of 8).
    const grown = await until(
      async () => {
        const r = await record();
        return r?.workersHistory?.some((s) => s.total === 4) && r;
      },
      'the node to report 4 workers',
      60_000,
    );
    expect(Math.max(...grown.workersHistory!.map((s) => s.total))).toBe(4);
    // What placement bounds a call to it by: the pool's cap, not the node's 16 calls at once.
    expect(grown.workersMax).toEqual({ 'scaled/echo': 4 });
    // Then nothing: one retires per 400 ms idle period, down to none.
    const idle = await until(
      async () => {
        const r = await record();
        return r?.workers?.['scaled/echo'] === 0 && r;
      },
      'the node to report no worker',
      30_000,
    );
    // At least the four it grew to retired (more if one retired before the last call came in,
    // on a loaded machine), one at a time: no sample in its history drops by more than one.
    expect(idle.scaled!.shrinks - shrunk).toBeGreaterThanOrEqual(4);
    const totals = idle.workersHistory!.map((s) => s.total);
    for (let i = 1; i < totals.length; i++)
      expect(totals[i - 1]! - totals[i]!, `history ${totals.join(',')}`).toBeLessThanOrEqual(1);
    expect(totals.at(-1)).toBe(0);
  }, 120_000);
});
