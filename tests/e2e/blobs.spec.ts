// The admin console's blobs panel in real Chromium against a relay process: a file uploaded with
// a progress bar that moves (XHR upload progress), the hash the relay answers, the blob listed,
// and its download byte for byte.
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type RelayProcess, startRelay } from '../relay-process';
import { expect, test } from './fixtures';

let relay: RelayProcess;
const empty = mkdtempSync(join(tmpdir(), 'brume-no-apps-'));
test.beforeAll(async () => {
  relay = await startRelay({ args: ['--no-cloud', '--apps', empty] });
});
test.afterAll(async () => {
  await relay.stop();
  rmSync(relay.dataDir, { recursive: true, force: true });
  rmSync(empty, { recursive: true, force: true });
});

test('the blobs panel uploads with progress, shows the hash, lists and downloads it', async ({
  page,
}, info) => {
  await page.goto(`${relay.url}/admin`);
  await page.locator('#token').fill(relay.token);
  await page.locator('button[type=submit]').click();
  await expect(page.locator('#blobs')).toBeVisible();

  // Every value the progress bar takes, as the page changes it (no sampling that could miss one).
  await page.evaluate(() => {
    const seen: number[] = [];
    (window as unknown as { progressSeen: number[] }).progressSeen = seen;
    new MutationObserver(() => {
      const bar = document.querySelector<HTMLProgressElement>('#blob-progress');
      if (bar && seen[seen.length - 1] !== bar.value) seen.push(bar.value);
    }).observe(document.body, { subtree: true, childList: true, attributes: true });
  });
  const bytes = randomBytes(48 * 2 ** 20);
  const hash = createHash('sha256').update(bytes).digest('hex');
  await page
    .locator('#blob-file')
    .setInputFiles({ name: 'input.bin', mimeType: 'application/octet-stream', buffer: bytes });
  await expect(page.locator('#blob-result')).toHaveText(`stored ${hash} (${bytes.length} bytes)`, {
    timeout: 60_000,
  });
  const seen = await page.evaluate(
    () => (window as unknown as { progressSeen: number[] }).progressSeen,
  );
  // The bar moved through the upload: some value strictly between nothing and all of it.
  expect(
    seen.some((v) => v > 0 && v <= bytes.length),
    `progress values ${seen}`,
  ).toBe(true);
  expect(seen).toEqual([...seen].sort((a, b) => a - b));

  const row = page.locator(`#blobs tr[data-hash="${hash}"]`);
  await expect(row).toContainText('48.0 MiB');
  await expect(row).toContainText('nothing (collected after the grace)');
  await page.screenshot({ path: info.outputPath('blobs-panel.png'), fullPage: true });

  const download = page.waitForEvent('download');
  await row.locator('button.download').click();
  const file = await (await download).path();
  expect(createHash('sha256').update(readFileSync(file)).digest('hex')).toBe(hash);
});
