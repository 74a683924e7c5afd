// Idle capacity pulls work, through a real relay process and a node speaking the wire protocol
// itself (tests/raw-node.ts), so the test controls what it reports: a paused node and one on a
// low battery that is not charging take no job (and the job says why it waits); a node that may
// take jobs gets no more at once than its free concurrency, and more as it answers.
import { rm } from 'node:fs/promises';
import { afterAll, expect, it } from 'vitest';
import { packBundle } from '../../core/manifest';
import type { Capabilities } from '../../core/protocol';
import { greetApp } from '../apps';
import { jobsApi, jobWhen, submitJob } from '../jobs-http';
import { type CallFrame, caps, joinRaw, onCalls } from '../raw-node';
import { deploy, type RelayProcess, startRelay } from '../relay-process';
import { until } from '../until';

let relay: RelayProcess | undefined;
afterAll(async () => {
  await relay?.stop();
  if (relay) await rm(relay.dataDir, { recursive: true, force: true });
});

it('gives jobs only to nodes free to take them, never more than their free concurrency', async () => {
  relay = await startRelay({ args: ['--no-cloud'] });
  const b = await greetApp('1.0.0');
  expect((await deploy(relay, packBundle(b.manifest, b.files))).ok).toBe(true);
  const { node, welcome } = await joinRaw(`${relay.url.replace('http', 'ws')}/ws`, 'dew', {
    keep: (f) => f.t !== 'call',
  });
  const calls: CallFrame[] = [];
  let open = 0;
  let most = 0;
  onCalls(node, (c) => {
    calls.push(c);
    most = Math.max(most, ++open);
  });
  const beat = (paused: boolean, battery?: Capabilities['battery']) =>
    node.send({
      t: 'heartbeat',
      load: { queue: 0, maxConcurrency: 2 },
      apps: ['greet'],
      models: {},
      stats: {},
      paused,
      caps: { ...caps, ...(battery && { battery }) },
    });
  const waiting = async (id: string, what: RegExp) =>
    until(async () => {
      const r = await jobsApi(relay!.url, 'GET', `/api/jobs/${id}`, { token: relay!.token });
      return what.test(String(r.body.waiting)) ? r.body : undefined;
    }, `job ${id} waiting for ${what}`);

  beat(true);
  const ids: string[] = [];
  for (let i = 0; i < 5; i++)
    ids.push(await submitJob(relay, { app: 'greet', service: 'greet', rpc: 'echo', input: i }));
  await waiting(ids[0]!, /none of the 1 nodes has a free slot \(0 busy, 1 paused/);
  beat(false, { level: 0.1, charging: false });
  await waiting(ids[0]!, /1 on a low battery/);
  expect(calls).toEqual([]);

  // Charging: it takes jobs, two at once (its concurrency), the first two in queue order.
  beat(false, { level: 0.1, charging: true });
  await until(() => calls.length === 2, 'two calls');
  await waiting(ids[2]!, /\(1 busy, 0 paused/);
  expect(calls.map((c) => c.input)).toEqual([0, 1]);
  // Each answer frees a slot for the next job.
  const answer = (c: CallFrame) => {
    open--;
    node.send({ t: 'result', id: c.id, value: { echoed: c.input }, rpc: c.rpc, ms: 1 });
  };
  for (let k = 0; k < 5; k++) {
    await until(() => calls.length > k, `call ${k}`);
    answer(calls[k]!);
  }
  for (const [i, id] of ids.entries()) {
    const done = await jobWhen(relay, id);
    expect(done).toMatchObject({ state: 'succeeded', result: { echoed: i }, node: welcome.nodeId });
  }
  expect(calls.length).toBe(5);
  expect(most).toBe(2);
});
