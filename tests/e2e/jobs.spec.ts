// Jobs run by tabs in real Chromium, pulled from the relay's queue by idle capacity: 1,000 small
// jobs spread over three tabs and the relay's cloud node each succeed exactly once (one succeeded
// record per job in the relay's log); a job whose tab closes mid-run is finished by another tab;
// page code submits, watches, reads and cancels jobs through window.brume.jobs.
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import type { BrowserContext } from '@playwright/test';
import { packBundle } from '../../core/manifest';
import { readJobLog } from '../../relay/jobs/store';
import { greetApp } from '../apps';
import { jobsApi, jobWhen, submitJob } from '../jobs-http';
import { deploy, type RelayProcess, startRelay } from '../relay-process';
import { until } from '../until';
import { expect, joinTab, test } from './fixtures';

const contexts: BrowserContext[] = [];
const relays: RelayProcess[] = [];
test.afterEach(async () => {
  for (const c of contexts.splice(0)) await c.close();
  for (const r of relays.splice(0)) {
    await r.stop();
    rmSync(r.dataDir, { recursive: true, force: true });
  }
});

async function relayWithGreet(args: string[]): Promise<RelayProcess> {
  const relay = await startRelay({ args });
  relays.push(relay);
  const b = await greetApp('1.0.0');
  expect((await deploy(relay, packBundle(b.manifest, b.files))).ok).toBe(true);
  return relay;
}

test('1,000 small jobs over three tabs and the cloud node each succeed once', async ({
  browser,
}) => {
  test.setTimeout(180_000);
  const relay = await relayWithGreet(['--max-jobs', '2000']);
  const tabs = [];
  for (let i = 0; i < 3; i++) tabs.push(await joinTab(browser, relay.url, contexts));
  // Each tab holds the app before the jobs come (a tab fetches an app it lacks on first use).
  for (const t of tabs)
    await t.page.evaluate(() => window.brume.call('greet', 'greet', 'warm', {}, { rpc: 'echo' }));

  const ids: string[] = [];
  for (let start = 0; start < 1000; start += 50) {
    const batch = Array.from({ length: 50 }, (_, k) =>
      submitJob(relay, { app: 'greet', service: 'greet', rpc: 'echo', input: start + k }),
    );
    ids.push(...(await Promise.all(batch)));
  }
  const views = new Map<string, { state: string; node?: string; result?: unknown }>();
  await until(
    async () => {
      let after = '';
      for (;;) {
        const q = `/api/jobs?app=greet&limit=1000${after ? `&after=${after}` : ''}`;
        const r = await jobsApi(relay.url, 'GET', q, { token: relay.token });
        for (const j of r.body.jobs as { id: string; state: string; node?: string }[])
          views.set(j.id, j);
        if (!r.body.next) break;
        after = r.body.next as string;
      }
      return ids.every((id) => views.get(id)?.state === 'succeeded');
    },
    'all 1,000 jobs to succeed',
    150_000,
    500,
  );
  // Spread: every tab and the cloud node ran some.
  const byNode = new Map<string, number>();
  for (const id of ids)
    byNode.set(views.get(id)!.node!, (byNode.get(views.get(id)!.node!) ?? 0) + 1);
  for (const t of tabs) expect(byNode.get(t.id) ?? 0).toBeGreaterThan(0);
  expect(byNode.size).toBe(4);
  // Each one's result is its own input, and the log holds exactly one succeeded record for it.
  for (const i of [0, 499, 999]) {
    const r = await jobsApi(relay.url, 'GET', `/api/jobs/${ids[i]}`, { token: relay.token });
    expect(r.body.result).toBe(i);
  }
  const succeeded = new Map<string, number>();
  for (const rec of await readJobLog(join(relay.dataDir, 'jobs')))
    if ('state' in rec && rec.state === 'succeeded')
      succeeded.set(rec.id, (succeeded.get(rec.id) ?? 0) + 1);
  for (const id of ids) expect(succeeded.get(id)).toBe(1);
});

test('a job whose tab closes mid-run is finished by another tab', async ({ browser }) => {
  test.setTimeout(150_000);
  const relay = await relayWithGreet(['--no-cloud']);
  const tabs = [
    await joinTab(browser, relay.url, contexts),
    await joinTab(browser, relay.url, contexts),
  ];
  // How fast a tab spins, so the job runs a few seconds of real work.
  const perMs = await tabs[0]!.page.evaluate(async () => {
    const n = 20_000_000;
    await window.brume.call('greet', 'greet', { n: 1 }, {}, { rpc: 'spin' });
    const t0 = performance.now();
    await window.brume.call('greet', 'greet', { n }, {}, { rpc: 'spin' });
    return n / Math.max(1, performance.now() - t0);
  });
  const n = Math.round(perMs * 5000);
  const id = await submitJob(relay, { app: 'greet', service: 'greet', rpc: 'spin', input: { n } });
  const running = await jobWhen(relay, id, ['running'], 60_000);
  const lost = tabs.find((t) => t.id === running.node)!;
  const other = tabs.find((t) => t.id !== running.node)!;
  await lost.page.context().close();
  const done = await jobWhen(relay, id, ['succeeded', 'failed'], 120_000);
  expect(done).toMatchObject({ state: 'succeeded', node: other.id, attempts: 2, result: { n } });
  expect((done.reasons as string[])[0]).toMatch(/E_DISCONNECTED/);
});

test('page code submits, watches, reads and cancels jobs through window.brume.jobs', async ({
  browser,
}) => {
  const relay = await relayWithGreet([]);
  const tab = await joinTab(browser, relay.url, contexts);
  const seen = await tab.page.evaluate(async () => {
    const { id, state } = await window.brume.jobs.submit({
      app: 'greet',
      service: 'greet',
      rpc: 'echo',
      input: new Uint8Array([7, 8, 9]),
    });
    const states = [state as string];
    for await (const v of window.brume.jobs.watch(id)) states.push(v.state);
    const job = await window.brume.jobs.get(id);
    // No node serves an app that is not there: a bad request is the relay's typed error.
    const refused = await window.brume.jobs
      .submit({ app: 'greet', service: 'nope', input: 1 })
      .catch((e: { code: string; message: string }) => `${e.code}: ${e.message}`);
    const missing = await window.brume.jobs
      .get('0'.repeat(24))
      .catch((e: { code: string }) => e.code);
    return { states, result: [...(job.result as Uint8Array)], job, refused, missing };
  });
  expect(seen.states[0]).toBe('queued');
  expect(seen.states.at(-1)).toBe('succeeded');
  expect(seen.result).toEqual([7, 8, 9]);
  expect(seen.job.attempts).toBe(1);
  expect(seen.refused).toMatch(/^E_NOT_FOUND: service: app "greet" has no service "nope"/);
  expect(seen.missing).toBe('E_NOT_FOUND');
  // Cancel from the page: a job that cannot start (its deadline far, no version 9 anywhere).
  const cancelled = await tab.page.evaluate(async () => {
    const { id } = await window.brume.jobs.submit({
      app: 'greet',
      service: 'greet',
      rpc: 'echo',
      input: 1,
      qos: { version: '9.0.0' },
    });
    return window.brume.jobs.cancel(id);
  });
  expect(cancelled.state).toBe('cancelled');
});

test('the admin console counts jobs by state and shows why a queued one waits', async ({
  page,
}) => {
  const relay = await relayWithGreet(['--no-cloud']);
  const body = { app: 'greet', service: 'greet', rpc: 'echo', input: 1 };
  const waiting = await submitJob(relay, body);
  const gone = await submitJob(relay, body);
  await jobsApi(relay.url, 'DELETE', `/api/jobs/${gone}`, { token: relay.token });
  await page.addInitScript((t) => sessionStorage.setItem('brume-admin-token', t), relay.token);
  await page.goto(`${relay.url}/admin`);
  const panel = page.locator('#jobs');
  await expect(panel.locator('[data-state=queued] b')).toHaveText('1');
  await expect(panel.locator('[data-state=cancelled] b')).toHaveText('1');
  await expect(panel.locator('[data-state=succeeded] b')).toHaveText('0');
  const row = panel.locator(`[data-job="${waiting}"]`);
  await expect(row).toContainText('greet/greet');
  await expect(row).toContainText('no node is connected');
  await expect(panel.locator(`[data-job="${gone}"]`)).toHaveCount(0);
});
