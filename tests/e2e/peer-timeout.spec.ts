// A tab that keeps its data channel open but never answers: the caller's call over that channel
// fails after the peer timeout with E_TIMEOUT naming the time, instead of waiting for ever, and
// the caller places it again without that tab (here no other tab may take it).
import { rmSync } from 'node:fs';
import type { BrowserContext } from '@playwright/test';
import { testBundles } from '../apps';
import { deploy, type RelayProcess, startRelay } from '../relay-process';
import { expect, joinTab, test } from './fixtures';

let relay: RelayProcess;
const contexts: BrowserContext[] = [];

test.beforeAll(async () => {
  relay = await startRelay({ args: ['--no-cloud'] });
  for (const b of await testBundles()) expect((await deploy(relay, b)).ok).toBe(true);
});
test.afterAll(async () => {
  for (const c of contexts.splice(0)) await c.close();
  await relay.stop();
  rmSync(relay.dataDir, { recursive: true, force: true });
});

// Data channels need WebRTC, which tabs may use only in a loopback-only namespace.
test.skip(!!process.env.BRUME_NO_NETNS, 'needs WebRTC (a loopback-only network namespace)');

test('a call to a tab that never answers over its channel fails with E_TIMEOUT', async ({
  browser,
}) => {
  const caller = await joinTab(browser, `${relay.url}/?peerTimeoutMs=1500`, contexts);
  const hung = await joinTab(browser, `${relay.url}/`, contexts);
  // The hung tab takes calls from its channels and never answers them; its channel stays open.
  await hung.page.evaluate(async () => {
    const f = await window.brumeDebug.fabric;
    const g = globalThis as { asked?: number };
    g.asked = 0;
    f.serveCall = () => {
      g.asked! += 1;
      return new Promise(() => {});
    };
  });
  const outcome = await caller.page.evaluate(
    (to) =>
      window.brume.invoke('hostile', 'echo', 'hello', { privacy: to }, { rpc: 'echo' }).then(
        (r) => ({ ok: true, via: r.via, node: r.node }),
        (e: { code?: string; message: string }) => ({
          ok: false,
          code: e.code,
          message: e.message,
        }),
      ),
    hung.id,
  );
  expect(outcome).toMatchObject({ ok: false, code: 'E_TIMEOUT' });
  expect((outcome as { message: string }).message).toBe(
    `${hung.id.slice(0, 8)} did not answer within 1500 ms over its data channel`,
  );
  // It was asked over the channel, once, and the caller is still joined.
  expect(await hung.page.evaluate(() => (globalThis as { asked?: number }).asked)).toBe(1);
  expect(await caller.page.evaluate(async () => (await window.brumeDebug.fabric).status)).toBe(
    'joined',
  );
});
