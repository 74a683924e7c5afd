// The installable package end to end: `npm pack`, an offline install into a directory of its
// own, `brume --version`/`--help` through the installed bin, then `brume start` from an empty
// directory on plain Node (no tsx): a real tab joins and its calls run in the tab and on the
// relay's cloud node (the compiled Logic worker thread and onnxruntime-node).
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { type BrowserContext, expect, test } from '@playwright/test';
import { type Installed, packAndInstall } from '../package-install';
import { type RelayProcess, startRelay } from '../relay-process';
import { joinTab } from './fixtures';

const run = promisify(execFile);
const work = mkdtempSync(join(tmpdir(), 'brume-package-'));
let installed: Installed;
let relay: RelayProcess | undefined;
const contexts: BrowserContext[] = [];

test.beforeAll(async () => {
  // Packing (an esbuild bundle, an 18 MB tarball) and installing 500 MB from the npm cache.
  test.setTimeout(300_000);
  installed = await packAndInstall(join(work, 'install'));
});

test.afterAll(async () => {
  for (const c of contexts) await c.close();
  await relay?.stop();
  rmSync(work, { recursive: true, force: true });
});

test('the installed bin answers --version and --help on plain Node', async () => {
  const version = await run(installed.bin, ['--version']);
  expect(version.stdout.trim()).toBe(installed.version);
  const help = await run(installed.bin, ['--help']);
  expect(help.stdout).toContain('Usage: brume <command>');
  expect(help.stdout).toContain('--print-config');
});

test('brume start from an empty directory serves the page and the sample apps', async ({
  browser,
}) => {
  test.setTimeout(120_000);
  const empty = join(work, 'empty');
  mkdirSync(empty);
  relay = await startRelay({ entry: installed.cli, cwd: empty, dataDir: join(empty, '.brume') });
  // The page and the apps came from the package, wherever the relay was started.
  expect(relay.output()).toContain(`seeded digits@1.0.0 from ${installed.dir}`);
  expect(readdirSync(empty)).toEqual(['.brume']);
  const apps = (await (await fetch(`${relay.url}/api/apps`)).json()) as { name: string }[];
  expect(apps.map((a) => a.name).sort()).toEqual([
    'digits',
    'digits-ee',
    'ocr',
    'squeezenet',
    'top3',
    'vad',
  ]);

  const nodes = (await (
    await fetch(`${relay.url}/api/nodes`, { headers: { authorization: `Bearer ${relay.token}` } })
  ).json()) as { id: string; role: string }[];
  const cloud = nodes.find((n) => n.role === 'cloud');
  expect(cloud, 'the relay runs its cloud node').toBeDefined();

  const tab = await joinTab(browser, relay.url, contexts);
  // A "1": a bar down the middle of a 28×28 grayscale frame, classified in the tab and on the
  // cloud node; the same model on both answers the same digit.
  const answers = await tab.page.evaluate(async (cloudId) => {
    const pixels = new Uint8Array(28 * 28);
    for (let y = 4; y < 24; y++) for (let x = 12; x < 16; x++) pixels[y * 28 + x] = 255;
    const input = { width: 28, height: 28, pixels };
    const here = await window.brume.invoke('digits', 'classify', input, { privacy: 'device' });
    const there = await window.brume.invoke('digits', 'classify', input, { privacy: cloudId });
    return [here, there].map((r) => ({
      node: r.node,
      digit: (r.value as { digit: number }).digit,
    }));
  }, cloud!.id);
  expect(answers.map((a) => a.node)).toEqual([tab.id, cloud!.id]);
  expect(answers[0]!.digit).toBeGreaterThanOrEqual(0);
  expect(answers[0]!.digit).toBeLessThanOrEqual(9);
  expect(answers[1]!.digit).toBe(answers[0]!.digit);
});

test('the installed bin scaffolds an app from the packaged SDK and model, and packs, deploys and calls it', async () => {
  test.setTimeout(180_000);
  expect(relay, 'the relay of the test before').toBeDefined();
  const env = { ...process.env, BRUME_RELAY: relay!.url, BRUME_DATA: relay!.dataDir };
  await run(installed.bin, ['new', 'hello'], { cwd: work });
  const app = join(work, 'hello');
  // The compiler is a dependency of brume: the installed package packs the Logic as it is.
  const packed = await run(installed.bin, ['pack', '--json'], { cwd: app });
  const out = JSON.parse(packed.stdout) as { out: string };
  const deployed = await run(installed.bin, ['deploy', out.out], { cwd: app, env });
  expect(deployed.stdout).toContain('deployed hello@0.1.0');
  const input = JSON.stringify({ values: new Array(784).fill(0.5) });
  const called = await run(installed.bin, ['call', 'hello', 'predict', '--input', input], { env });
  const value = JSON.parse(called.stdout) as { label: number; variant: string };
  expect(value.variant).toBe('default');
  expect(value.label).toBeGreaterThanOrEqual(0);
  expect(value.label).toBeLessThanOrEqual(9);
});
