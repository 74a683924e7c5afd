import { rmSync } from 'node:fs';
import { test as base, expect, type Page } from '@playwright/test';
import { testBundles } from '../apps';
import { deploy, type RelayProcess, startRelay } from '../relay-process';

/** Opens the join page and waits until the node knows the deployed apps. */
export async function openNode(page: Page, relayUrl: string): Promise<void> {
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(relayUrl);
  await expect(page.locator('#node-state')).toHaveText('ready', { timeout: 30_000 });
  expect(errors).toEqual([]);
}

/** A relay shared by the tests of one worker, with the sample apps and the test apps deployed. */
export const test = base.extend<object, { relay: RelayProcess }>({
  relay: [
    // biome-ignore lint/correctness/noEmptyPattern: Playwright reads fixture dependencies from this pattern
    async ({}, use) => {
      const relay = await startRelay();
      for (const b of await testBundles()) {
        const res = await deploy(relay.url, b);
        if (!res.ok) throw new Error(`deploying a test bundle failed: ${await res.text()}`);
      }
      await use(relay);
      await relay.stop();
      rmSync(relay.dataDir, { recursive: true, force: true });
    },
    { scope: 'worker' },
  ],
});

export { deploy, expect, startRelay };
