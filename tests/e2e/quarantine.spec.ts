// The admin console's quarantine panel in real Chromium: a dew that answers wrong digits is caught
// by a trusted fog's check (a relay process with --verify-fraction 1), shown with its evidence,
// and released from the console. The nodes are hand-driven (tests/raw-node.ts).
import { rmSync } from 'node:fs';
import { loadOrCreateIdentity, memoryKeyStore } from '../../core/identity';
import { claim, honestBundle, right, serve, wrong } from '../honest-app';
import { joinRaw } from '../raw-node';
import { type RelayProcess, startRelay } from '../relay-process';
import { expect, test } from './fixtures';

let relay: RelayProcess;
test.beforeAll(async () => {
  relay = await startRelay({ args: ['--no-cloud', '--verify-fraction', '1'] });
});
test.afterAll(async () => {
  await relay.stop();
  rmSync(relay.dataDir, { recursive: true, force: true });
});

test('the admin console lists a quarantined node with its evidence and releases it', async ({
  browser,
}) => {
  const headers = { authorization: `Bearer ${relay.token}`, 'content-type': 'application/json' };
  const dep = await fetch(`${relay.url}/api/apps`, {
    method: 'POST',
    headers: { ...headers, 'content-type': 'application/vnd.brume.bundle' },
    body: Buffer.from(await honestBundle()),
  });
  expect(dep.status).toBeLessThan(300);
  const ws = `${relay.url.replace('http', 'ws')}/ws`;
  const fogKey = await loadOrCreateIdentity(memoryKeyStore(), 'fog');
  await fetch(`${relay.url}/api/trust`, {
    method: 'POST',
    headers,
    body: JSON.stringify({ publicKey: fogKey.publicKey }),
  });
  const { node: fog, welcome: fogWelcome } = await joinRaw(ws, 'fog', { identity: fogKey });
  const { node: liar, welcome } = await joinRaw(ws, 'dew');
  claim(fog, 30);
  claim(liar, 0);
  serve(fog, right, 5);
  serve(liar, wrong, 0);
  // The liar is placed once the relay has both heartbeats.
  await expect
    .poll(async () => {
      const r = await fetch(`${relay.url}/api/schedule/honest/classify`, {
        method: 'POST',
        headers,
        body: '{}',
      });
      return ((await r.json()) as { node?: string }).node;
    })
    .toBe(welcome.nodeId);
  const call = await fetch(`${relay.url}/api/call/honest/classify`, {
    method: 'POST',
    headers,
    body: JSON.stringify({ input: 3 }),
  });
  expect(call.status).toBe(200);

  const page = await (await browser.newContext()).newPage();
  await page.goto(`${relay.url}/admin`);
  await page.locator('#token').fill(relay.token);
  await page.locator('button[type=submit]').click();
  const row = page.locator(`#quarantine tr[data-node="${welcome.nodeId}"]`);
  await expect(row).toContainText('honest/classify/small');
  await expect(row).toContainText('value.label: 4 ≠ 3');
  await expect(row).toContainText(fogWelcome.nodeId.slice(0, 8));
  await expect(row).toContainText('trusted');
  await expect(page.locator(`#nodes tr[data-node="${welcome.nodeId}"]`)).toContainText(
    'quarantined',
  );
  await row.locator('button.release').click();
  await expect(page.locator('#quarantine')).toContainText(`released ${welcome.nodeId.slice(0, 8)}`);
  await expect(row).toHaveCount(0);
  const left = (await (
    await fetch(`${relay.url}/api/quarantine`, { headers })
  ).json()) as unknown[];
  expect(left).toEqual([]);
  fog.ws.close();
  liar.ws.close();
});
