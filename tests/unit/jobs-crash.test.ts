// Jobs survive what kills their runs: a relay process killed with SIGKILL while jobs are queued
// and running keeps every one and runs none twice to `succeeded` (the log on disk shows one
// succeeded record per job); a node lost mid-run gives its job back, and another node finishes it.
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadOrCreateIdentity, memoryKeyStore } from '../../core/identity';
import { packBundle } from '../../core/manifest';
import type { BrumeNode } from '../../core/node/node';
import { readJobLog } from '../../relay/jobs/store';
import { greetApp } from '../apps';
import { jobsApi, jobWhen, spinRate, submitJob } from '../jobs-http';
import { deploy, type RelayProcess, startRelay } from '../relay-process';
import { testNode } from '../test-node';
import { until } from '../until';

const relays: RelayProcess[] = [];
const nodes: BrumeNode[] = [];
afterAll(async () => {
  for (const n of nodes) {
    n.close();
    n.runtime.close();
  }
  for (const r of relays) await r.stop();
  for (const r of relays) await rm(r.dataDir, { recursive: true, force: true });
});

async function relayWithGreet(args: string[], dataDir?: string): Promise<RelayProcess> {
  const relay = await startRelay({ args, ...(dataDir && { dataDir }) });
  relays.push(relay);
  if (!dataDir) {
    const b = await greetApp('1.0.0');
    expect((await deploy(relay, packBundle(b.manifest, b.files))).ok).toBe(true);
  }
  return relay;
}

const states = async (relay: RelayProcess, ids: string[]) =>
  Promise.all(
    ids.map(async (id) => {
      const r = await jobsApi(relay.url, 'GET', `/api/jobs/${id}`, {
        token: relay.token,
        msgpack: true,
      });
      return r.body;
    }),
  );

describe('jobs across failures', () => {
  it('a relay killed with SIGKILL loses no job and runs none twice to succeeded', async () => {
    const args = ['--logic-timeout-ms', '120000'];
    const first = await relayWithGreet(args);
    const rate = await spinRate(first.url);
    const ids: string[] = [];
    for (let i = 0; i < 16; i++) {
      const n = Math.round(rate * 1500) + i;
      ids.push(
        await submitJob(first, { app: 'greet', service: 'greet', rpc: 'spin', input: { n } }),
      );
    }
    for (let i = 0; i < 10; i++)
      ids.push(
        await submitJob(first, {
          app: 'greet',
          service: 'greet',
          rpc: 'echo',
          input: i,
          priority: -1,
        }),
      );
    // Some running, some still queued: then the relay dies without a word.
    await until(async () => {
      const s = (await states(first, ids)).map((b) => b.state);
      return s.includes('running') && s.includes('queued');
    }, 'jobs both running and queued');
    const before = await states(first, ids);
    const exited = new Promise((r) => first.child.once('exit', r));
    first.child.kill('SIGKILL');
    await exited;
    relays.splice(relays.indexOf(first), 1); // dead: the second relay owns its data directory

    const second = await relayWithGreet(args, first.dataDir);
    for (const id of ids) await jobWhen(second, id, ['succeeded', 'failed', 'cancelled'], 120_000);
    const after = await states(second, ids);
    expect(after.map((b) => b.state)).toEqual(ids.map(() => 'succeeded'));
    for (const [i, b] of after.entries()) {
      const input = i < 16 ? Math.round(rate * 1500) + i : i - 16;
      if (i < 16) expect((b.result as { n: number }).n).toBe(input);
      else expect(b.result).toBe(input);
      // A job that had succeeded before the crash is unchanged.
      if (before[i]!.state === 'succeeded') expect(b).toEqual(before[i]);
    }
    // The log itself: every job has exactly one succeeded record, and nothing after it.
    const records = await readJobLog(join(first.dataDir, 'jobs'));
    for (const id of ids) {
      const mine = records.filter((r) => r.id === id && !('gone' in r));
      const succeeded = mine.filter((r) => 'state' in r && r.state === 'succeeded');
      expect(succeeded.length).toBe(1);
      expect(mine.at(-1)).toEqual(succeeded[0]);
    }
    expect(before.some((b) => b.state === 'running')).toBe(true);
  }, 240_000);

  it('a relay stopped by SIGTERM mid-run runs the job again after its restart, once', async () => {
    const args = ['--logic-timeout-ms', '120000', '--drain-ms', '200'];
    const first = await relayWithGreet(args);
    const n = Math.round((await spinRate(first.url)) * 8000);
    const id = await submitJob(first, {
      app: 'greet',
      service: 'greet',
      rpc: 'spin',
      input: { n },
    });
    await jobWhen(first, id, ['running']);
    await first.stop(); // SIGTERM: a drain whose deadline the run outlasts
    relays.splice(relays.indexOf(first), 1);
    const second = await relayWithGreet(args, first.dataDir);
    const done = await jobWhen(second, id, ['succeeded', 'failed'], 120_000);
    expect(done).toMatchObject({ state: 'succeeded', attempts: 2, result: { n } });
    expect(done.reasons).toEqual(['the relay stopped while it ran']);
  }, 180_000);

  it('a node lost mid-run gives its job back, and another node finishes it', async () => {
    const relay = await relayWithGreet(['--no-cloud']);
    const ws = `${relay.url.replace('http', 'ws')}/ws`;
    const joined: BrumeNode[] = [];
    for (const name of ['a', 'b']) {
      const identity = await loadOrCreateIdentity(memoryKeyStore(), `jobs-${name}`);
      const node = await testNode(ws, identity, { refresh: true, maxConcurrency: 1 });
      nodes.push(node);
      joined.push(node);
      await node.whenJoined();
    }
    // The rate on these nodes: a job of a few seconds of real work.
    const probe = await submitJob(relay, {
      app: 'greet',
      service: 'greet',
      rpc: 'spin',
      input: { n: 20_000_000 },
    });
    const p = await jobWhen(relay, probe);
    const perMs = 20_000_000 / Math.max(1, (p.finished as number) - (p.started as number));
    const n = Math.round(perMs * 4000);
    const id = await submitJob(relay, {
      app: 'greet',
      service: 'greet',
      rpc: 'spin',
      input: { n },
    });
    const running = await jobWhen(relay, id, ['running']);
    const lost = joined.find((x) => x.nodeId === running.node)!;
    expect(lost).toBeDefined();
    lost.close();
    lost.runtime.close();
    const done = await jobWhen(relay, id, ['succeeded', 'failed'], 120_000);
    expect(done.state).toBe('succeeded');
    expect((done.result as { n: number }).n).toBe(n);
    expect(done.attempts).toBe(2);
    expect(done.node).not.toBe(running.node);
    expect((done.reasons as string[])[0]).toMatch(/E_DISCONNECTED/);
  }, 180_000);
});
