// README's "Write your first app", step by step, with the real `brume` command: a relay process,
// `brume new hello` in an empty folder, `brume dev --once` (the AssemblyScript Logic compiled,
// the bundle packed and deployed), then the app answering from two real tabs, each running it on
// its own device, and over HTTP through `brume call`. It prints how long the author's steps took.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type BrowserContext, expect, test } from '@playwright/test';
import { brume, type Done } from '../cli-process';
import { type RelayProcess, startRelay } from '../relay-process';
import { joinTab } from './fixtures';

let relay: RelayProcess;
let work: string;
const contexts: BrowserContext[] = [];

test.beforeAll(async () => {
  relay = await startRelay();
  work = await mkdtemp(join(tmpdir(), 'brume-first-app-'));
});

test.afterAll(async () => {
  for (const c of contexts) await c.close();
  await relay?.stop();
  await rm(work, { recursive: true, force: true });
});

const ok = (r: Done) => {
  expect(r.stderr, r.stdout).toBe('');
  expect(r.code).toBe(0);
  return r.stdout;
};

/** A "1" drawn as MNIST frames it: a bar down the middle of 28×28 values in [0, 1]. */
function one(): number[] {
  const v = new Array<number>(784).fill(0);
  for (let y = 4; y < 24; y++) for (let x = 13; x < 15; x++) v[y * 28 + x] = 1;
  return v;
}

test('a new app, scaffolded, built and deployed, answers from two tabs and over HTTP', async ({
  browser,
}) => {
  test.setTimeout(300_000);
  const env = { BRUME_RELAY: relay.url, BRUME_DATA: relay.dataDir };
  const app = join(work, 'hello');

  // One tab open before the app exists (as README has the page open), one opened after.
  const early = await joinTab(browser, relay.url, contexts);
  const started = performance.now();
  ok(await brume(['new', 'hello'], { cwd: work }));
  expect(ok(await brume(['dev', '--once'], { cwd: app, env }))).toContain('deployed hello@0.1.0');
  const deployed = performance.now();

  const tabs = [early, await joinTab(browser, relay.url, contexts)];
  for (const tab of tabs) {
    const answer = await tab.page.evaluate(async (values) => {
      const r = await window.brume.invoke('hello', 'predict', { values }, { privacy: 'device' });
      return { node: r.node, value: r.value as { label: number; variant: string } };
    }, one());
    // Each tab ran the new Logic and its Model itself, and read the "1".
    expect(answer.node).toBe(tab.id);
    expect(answer.value).toMatchObject({ label: 1, variant: 'default' });
  }
  const inTabs = performance.now();

  await writeFile(join(app, 'one.json'), JSON.stringify({ values: one() }));
  const http = ok(
    await brume(['call', 'hello', 'predict', '--input', '@one.json'], { cwd: app, env }),
  );
  expect(JSON.parse(http)).toMatchObject({ label: 1 });

  const s = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
  console.log(
    `first app: new + dev --once ${s(deployed - started)}, the tabs (one joined now) answered ${s(inTabs - deployed)}, brume call ${s(performance.now() - inTabs)}; total ${s(performance.now() - started)}`,
  );
});
