// The executor's own per-branch retry, on a real relay (in this process) and real nodes: a branch
// sent to a node that does not answer within the relay's call timeout (it is busy with a long
// job, so the branch waits in its queue) is run again on another node; the answer is complete.
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { BrumeNode } from '../../core/node/node';
import { pipelineApp } from '../apps';
import { inProcessRelay } from '../relay-process';
import { closeNodes, joinHolding } from '../test-node';
import { until } from '../until';

let server: Awaited<ReturnType<typeof inProcessRelay>>;
let nodes: BrumeNode[] = [];
const lines: string[] = [];

beforeAll(async () => {
  const keep = (...args: unknown[]) => {
    lines.push(args.map((a) => (typeof a === 'string' ? a : JSON.stringify(a))).join(' '));
  };
  server = await inProcessRelay({
    apps: [await pipelineApp()],
    // Short enough for the test, long enough for the other stages on a loaded two-core machine.
    callTimeoutMs: 4000,
    logger: { info: keep, warn: keep, error: keep } as never,
  });
  nodes = await joinHolding(server.ws, server.relay.hub, 'chain', [
    { name: 'a', slots: 2, maxQueued: 4 },
    { name: 'b', slots: 1, maxQueued: 4 },
    { name: 'c', slots: 2, maxQueued: 4 },
  ]);
}, 120_000);

afterAll(async () => {
  closeNodes(nodes);
  await server?.close();
});

it('runs a branch again elsewhere when its node does not answer in time', async () => {
  const [a, b] = nodes;
  // Keep b's one slot busy well past the relay's call timeout (this call itself times out).
  const busy = fetch(`${server.relay.url}/api/call/chain/pre`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      input: { n: 20_000_000_000 },
      rpc: 'spin',
      qos: { privacy: b!.runtime.id },
    }),
  });
  await until(() => b!.busy > 0, 'b to be busy');
  const jobs = [{ n: 100 }, { n: 200 }, { n: 300 }];
  const r = await a!.call('chain', 'spin', { jobs });
  const work = (r.value as { work: { n: number }[] }).work;
  expect(work.map((w) => w.n)).toEqual([100, 200, 300]);
  const branches = r.trace.filter((t) => t.stage === 'work');
  expect(branches.map((t) => t.branch).sort()).toEqual([0, 1, 2]);
  expect(branches.some((t) => t.node === b!.runtime.id)).toBe(false);
  // The executor saw b's branch time out and placed it again.
  expect(lines.some((l) => l.includes('stage work[') && l.includes('again elsewhere'))).toBe(true);
  expect((await busy).status).toBe(504);
}, 60_000);
