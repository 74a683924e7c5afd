// Pipelines in real Chromium (issue 13): three tabs and the relay's cloud node. A tab's call of a
// pipeline is placed stage by stage over the fabric, and the trace names the node of each stage
// and branch; closing the tab that runs a branch mid-request still gives one complete answer.
import { rmSync } from 'node:fs';
import type { Browser, BrowserContext } from '@playwright/test';
import { packBundle } from '../../core/manifest';
import { pipelineApp } from '../apps';
import { deploy, type RelayProcess, startRelay } from '../relay-process';
import { expect, type JoinedTab, joinTab, test, untilIdleHolding } from './fixtures';

let relay: RelayProcess;

test.beforeAll(async () => {
  relay = await startRelay();
  const b = await pipelineApp();
  expect((await deploy(relay, packBundle(b.manifest, b.files))).ok).toBe(true);
});

test.afterAll(async () => {
  await relay.stop();
  rmSync(relay.dataDir, { recursive: true, force: true });
});

const contexts: BrowserContext[] = [];
test.afterEach(async () => {
  for (const c of contexts.splice(0)) await c.close();
});

const tab = (browser: Browser) => joinTab(browser, relay.url, contexts);

/** The cloud node's id, once it holds the app. */
async function cloudId(): Promise<string> {
  const auth = { authorization: `Bearer ${relay.token}` };
  let id: string | undefined;
  await expect
    .poll(async () => {
      const nodes = (await (await fetch(`${relay.url}/api/nodes`, { headers: auth })).json()) as {
        id: string;
        role: string;
        apps: string[];
      }[];
      id = nodes.find((n) => n.role === 'cloud' && n.apps.includes('chain'))?.id;
      return id !== undefined;
    })
    .toBe(true);
  return id!;
}

/** What the spin Logic answers for `n` rounds, computed here. */
function spun(n: number): number {
  let x = 1;
  for (let i = 0; i < n; i++) x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
  return x;
}

interface Answer {
  value: { work: { n: number; x: number }[] };
  node: string;
  via: string;
  trace: { stage?: string; node?: string; branch?: number }[];
}

function call(from: JoinedTab, jobs: { n: number }[]): Promise<Answer> {
  return from.page.evaluate(async (jobs) => {
    const r = await window.brume.invoke('chain', 'spin', { jobs });
    return { value: r.value, node: r.node, via: r.via, trace: r.trace } as never;
  }, jobs);
}

test('a tab runs a pipeline spread over three tabs and the cloud node, the trace says where', async ({
  browser,
}) => {
  const [a, b, c] = [await tab(browser), await tab(browser), await tab(browser)];
  const cloud = await cloudId();
  await untilIdleHolding(relay, 'chain', [a.id, b.id, c.id, cloud]);
  const jobs = Array.from({ length: 8 }, (_, i) => ({ n: 1000 * (i + 1) }));
  const r = await call(a, jobs);
  expect(r.value.work.map((w) => [w.n, w.x])).toEqual(jobs.map((j) => [j.n, spun(j.n)]));
  // prepare (NI) runs where the input is, on the calling tab; the branches over all four nodes.
  expect(r.trace.find((t) => t.stage === 'prepare')?.node).toBe(a.id);
  const branches = r.trace.filter((t) => t.stage === 'work');
  expect(branches.map((t) => t.branch).sort((x, y) => x! - y!)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
  expect(new Set(branches.map((t) => t.node))).toEqual(new Set([a.id, b.id, c.id, cloud]));

  // A pipeline with quality levels: invoke says the level chosen, and so does the admin console.
  // Its prepare stage goes to the caller only if the relay knows the caller has a free slot: a
  // node reports its load each heartbeat, so the relay may still count a busy with its branches.
  await untilIdleHolding(relay, 'chain', [a.id]);
  const q = await a.page.evaluate(async () => {
    const pixels = { type: 'float32', dims: [1, 784], data: new Uint8Array(784 * 4) };
    const lines = [{ inputs: { pixels } }, { inputs: { pixels } }];
    const r = await window.brume.invoke(
      'chain',
      'chain',
      { inputs: { pixels }, lines },
      {
        accuracy: 0.95,
      },
    );
    return { quality: r.quality, value: r.value as { quality: number; classify: unknown[] } };
  });
  expect(q.quality).toBe(2);
  expect(q.value.quality).toBe(2);
  expect(q.value.classify).toHaveLength(2);
  const page = await (await browser.newContext()).newPage();
  contexts.push(page.context());
  await page.goto(`${relay.url}/admin`);
  await page.locator('#token').fill(relay.token);
  await page.locator('button[type=submit]').click();
  const row = page.locator('#pipelines tr.pipeline-call', { hasText: 'chain/chain' });
  await expect(row.locator('.quality')).toHaveText('2');
  await expect(row).toContainText(`prepare → ${a.id.slice(0, 8)}`);
});

test('closing the tab running a branch mid-request still gives one complete, correct answer', async ({
  browser,
}) => {
  const [a, b, c] = [await tab(browser), await tab(browser), await tab(browser)];
  await untilIdleHolding(relay, 'chain', [a.id, b.id, c.id, await cloudId()]);
  const n = 300_000_000;
  const jobs = Array.from({ length: 4 }, (_, i) => ({ n: n + i }));
  const answer = call(a, jobs);
  // Wait until b or c runs a branch, then close that tab.
  let busy: JoinedTab | undefined;
  let settled = false;
  void answer.finally(() => {
    settled = true;
  });
  while (!busy && !settled) {
    for (const t of [b, c]) {
      if (await t.page.evaluate(async () => (await window.brumeDebug.fabric).busy)) busy = t;
    }
  }
  expect(busy, 'a branch was seen running on another tab').toBeDefined();
  await busy!.page.context().close();
  const r = await answer;
  expect(r.value.work.map((w) => [w.n, w.x])).toEqual(jobs.map((j) => [j.n, spun(j.n)]));
  const branches = r.trace.filter((t) => t.stage === 'work');
  expect(branches.map((t) => t.branch).sort((x, y) => x! - y!)).toEqual([0, 1, 2, 3]);
  expect(branches.some((t) => t.node === busy!.id)).toBe(false);
});
