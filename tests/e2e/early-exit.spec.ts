// digits-ee in real tabs: a dew tab asks, a trusted fog tab and the relay's cloud node serve the
// tiers above. Per-request overrides choose the exit (the dew always sure → 1; the dew off → 2;
// the dew and the fog off → 3), the trace says which node ran each tier, privacy "device" keeps
// all three on the dew, and the admin console's "Early exits" panel shows the counts.
import { rmSync } from 'node:fs';
import type { Browser, BrowserContext } from '@playwright/test';
import { type RelayProcess, startRelay } from '../relay-process';
import { expect, type JoinedTab, joinTab, netns, noRtc, test, untilIdleHolding } from './fixtures';

let relay: RelayProcess;
const contexts: BrowserContext[] = [];

test.beforeAll(async () => {
  // The relay seeds its store with the sample apps (dist/apps: npm run build), digits-ee included.
  relay = await startRelay();
});

test.afterAll(async () => {
  for (const c of contexts.splice(0)) await c.close();
  await relay.stop();
  rmSync(relay.dataDir, { recursive: true, force: true });
});

const tab = (browser: Browser, query = ''): Promise<JoinedTab> =>
  joinTab(browser, `${relay.url}/${query}`, contexts, netns ? {} : { init: noRtc });

/** A "7"-like stroke on a 100×90 canvas. */
const digitInput = () => {
  const pixels = new Uint8Array(100 * 90);
  for (let x = 30; x < 70; x++) for (let y = 20; y < 26; y++) pixels[y * 100 + x] = 255;
  for (let i = 0; i < 50; i++)
    for (let w = 0; w < 6; w++) pixels[(25 + i) * 100 + 66 - i / 2 + w] = 255;
  return { width: 100, height: 90, pixels: Array.from(pixels) };
};

interface Ran {
  value: { digit: number; confidence: number; exit: number; bytesUp: number };
  node: string;
  /** service → the node its trace entry names; and the exit-head verdicts by model service. */
  where: Record<string, string | undefined>;
  exits: Record<string, boolean | undefined>;
}

/** digits-ee/classify in `t` with these exit overrides and QoS. */
function classify(t: JoinedTab, exits: unknown, qos: Record<string, unknown> = {}): Promise<Ran> {
  return t.page.evaluate(
    async ({ input, exits, qos }) => {
      const r = await window.brume.invoke(
        'digits-ee',
        'classify',
        { ...input, pixels: Uint8Array.from(input.pixels), exits },
        qos,
      );
      return {
        value: r.value as Ran['value'],
        node: r.node,
        where: Object.fromEntries(r.trace.map((e) => [e.service, e.node])),
        exits: Object.fromEntries(
          r.trace.filter((e) => e.kind === 'model').map((e) => [e.service, e.exit]),
        ),
      };
    },
    { input: digitInput(), exits, qos },
  );
}

test('a digits-ee request leaves at each tier in real tabs, and privacy device keeps it home', async ({
  browser,
  page,
}) => {
  const auth = { authorization: `Bearer ${relay.token}` };
  const fog = await tab(browser, '?role=fog');
  const trusted = await fetch(`${relay.url}/api/trust`, {
    method: 'POST',
    headers: { ...auth, 'content-type': 'application/json' },
    body: JSON.stringify({ publicKey: fog.publicKey, label: 'digits-ee fog' }),
  });
  expect(trusted.status).toBe(201);
  const dew = await tab(browser);
  const nodes = (await (await fetch(`${relay.url}/api/nodes`, { headers: auth })).json()) as {
    id: string;
    role: string;
  }[];
  const cloud = nodes.find((n) => n.role === 'cloud')!.id;
  await untilIdleHolding(relay, 'digits-ee', [dew.id, fog.id, cloud]);

  // 1: the dew's head takes whatever it sees.
  const one = await classify(dew, { dew: { rule: 'top', threshold: 0 } });
  expect(one.value).toMatchObject({ exit: 1, bytesUp: 0 });
  expect(one.where).toEqual({ classify: dew.id, dew: dew.id });
  expect(one.exits).toEqual({ dew: true });

  // 2: the dew's exit off; the fog's always taken. Only the features go up.
  const two = await classify(dew, { dew: { off: true }, fog: { rule: 'top', threshold: 0 } });
  expect(two.value.exit).toBe(2);
  expect(two.where).toEqual({ classify: dew.id, dew: dew.id, 'fog-step': fog.id, fog: fog.id });
  expect(two.exits).toEqual({ dew: false, fog: true });
  expect(two.value.bytesUp).toBeGreaterThan(0);
  expect(two.value.bytesUp).toBeLessThan(784 * 4);

  // 3: both off: the fog's features go on to the cloud node.
  const three = await classify(dew, { dew: { off: true }, fog: { off: true } });
  expect(three.value.exit).toBe(3);
  expect(three.where).toEqual({
    classify: dew.id,
    dew: dew.id,
    'fog-step': fog.id,
    fog: fog.id,
    'cloud-step': cloud,
    cloud,
  });

  // Privacy "device": every tier on the dew tab, whatever the tiers say.
  const home = await classify(
    dew,
    { dew: { off: true }, fog: { off: true } },
    { privacy: 'device' },
  );
  expect(home.value.exit).toBe(3);
  expect(home.node).toBe(dew.id);
  for (const s of ['classify', 'dew', 'fog-step', 'fog', 'cloud-step', 'cloud']) {
    expect(home.where[s], s).toBe(dew.id);
  }

  // The console: the dew part ran 4 times on the dew (one exit), the fog part twice on the fog
  // (one exit) and once on the dew (privacy "device").
  await page.addInitScript((t) => sessionStorage.setItem('brume-admin-token', t), relay.token);
  await page.goto(`${relay.url}/admin`);
  const panel = page.locator('#exits');
  const row = (service: string, role: string) =>
    panel.locator(`[data-exit="digits-ee/${service}"][data-role="${role}"]`);
  // Each node reports on its own heartbeat: wait for each row.
  const soon = { timeout: 30_000 };
  await expect(row('dew', 'dew').locator('.calls')).toHaveText('4', soon);
  await expect(row('dew', 'dew').locator('.taken')).toHaveText('1');
  await expect(row('dew', 'dew').locator('.share')).toHaveText('25.0%');
  await expect(row('fog', 'fog').locator('.calls')).toHaveText('2', soon);
  await expect(row('fog', 'fog').locator('.taken')).toHaveText('1');
  await expect(row('fog', 'dew').locator('.calls')).toHaveText('1', soon);
  await expect(panel.locator('[data-exit="digits-ee/cloud"]')).toHaveCount(0);
});
