import { rmSync } from 'node:fs';
import {
  type Browser,
  type BrowserContext,
  test as base,
  expect,
  type Page,
} from '@playwright/test';
import { packBundle } from '../../core/manifest';
import { brokenApp, contextApp, plantApp, testBundles } from '../apps';
import { deploy, type RelayProcess, startRelay } from '../relay-process';

/**
 * Whether tabs may open peer connections: only inside a loopback-only network namespace
 * (ENVIRONMENT.md), which BRUME_NO_NETNS says the run is not in.
 */
export const netns = !process.env.BRUME_NO_NETNS;

/**
 * Turns WebRTC off in a page (as `joinTab`'s `init`): outside a loopback-only namespace, what
 * would cross a data channel between tabs then goes through the relays.
 */
export const noRtc = () => {
  const broken = class {
    constructor() {
      throw new Error('WebRTC is disabled by this test');
    }
  };
  for (const name of ['RTCPeerConnection', 'webkitRTCPeerConnection']) {
    Object.defineProperty(globalThis, name, { value: broken, configurable: true });
  }
};

/** Opens the join page and waits until the node knows the deployed apps. */
export async function openNode(page: Page, relayUrl: string): Promise<void> {
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(relayUrl);
  await expect(page.locator('#node-state')).toHaveText('ready', { timeout: 30_000 });
  expect(errors).toEqual([]);
}

export interface JoinedTab {
  page: Page;
  id: string;
  publicKey: string;
}

/**
 * A tab in its own browser context (its own IndexedDB, so its own node key) joined to the fabric
 * at `url`; the context goes into `contexts` for the caller to close. `init` runs before the
 * page's scripts (e.g. to break WebRTC); `before` gets the page before it loads (e.g. a CDP
 * setting). Media permission is granted: Chromium gathers loopback ICE candidates only then.
 */
export async function joinTab(
  browser: Browser,
  url: string,
  contexts: BrowserContext[],
  o: { init?: () => void; before?: (page: Page) => Promise<void> } = {},
): Promise<JoinedTab> {
  const context = await browser.newContext();
  contexts.push(context);
  await context.grantPermissions(['microphone', 'camera'], { origin: new URL(url).origin });
  const page = await context.newPage();
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  if (o.init) await page.addInitScript(o.init);
  await page.addInitScript(() => {
    (globalThis as { __name?: unknown }).__name = (f: unknown) => f;
  });
  await o.before?.(page);
  await page.goto(url);
  const me = await page.evaluate(async () => {
    await window.brume.ready;
    const f = await window.brumeDebug.fabric;
    await f.whenJoined(20_000);
    return { id: f.nodeId, publicKey: f.publicKey };
  });
  expect(errors).toEqual([]);
  return { page, ...me };
}

/** A relay shared by the tests of one worker, with the sample apps and the test apps deployed. */
export const test = base.extend<object, { relay: RelayProcess }>({
  relay: [
    // biome-ignore lint/correctness/noEmptyPattern: Playwright reads fixture dependencies from this pattern
    async ({}, use) => {
      const relay = await startRelay();
      for (const b of await testBundles()) {
        const res = await deploy(relay, b);
        if (!res.ok) throw new Error(`deploying a test bundle failed: ${await res.text()}`);
      }
      await plantApp(relay.dataDir, await brokenApp());
      await use(relay);
      await relay.stop();
      rmSync(relay.dataDir, { recursive: true, force: true });
    },
    { scope: 'worker' },
  ],
});

/**
 * Waits until the relay sees every node of `ids` holding `app` with nothing queued: placement
 * judges nodes by their last report, so a test that asserts where stages go waits for it.
 */
export async function untilIdleHolding(
  relay: { url: string; token: string },
  app: string,
  ids: string[],
): Promise<void> {
  const headers = { authorization: `Bearer ${relay.token}` };
  await expect
    .poll(
      async () => {
        const res = await fetch(`${relay.url}/api/nodes`, { headers });
        const nodes = (await res.json()) as { id: string; apps: string[]; queue: number }[];
        return ids.every((id) =>
          nodes.some((n) => n.id === id && n.apps.includes(app) && n.queue === 0),
        );
      },
      { timeout: 60_000 },
    )
    .toBe(true);
}

/** Deploys a one-Logic app named `name`: HTTP context writes need the app deployed. */
export async function deployApp(relay: { url: string; token: string }, name: string) {
  const b = await contextApp(name);
  const res = await deploy(relay, packBundle(b.manifest, b.files));
  if (!res.ok) throw new Error(`deploying ${name} failed: ${await res.text()}`);
}

/** The headers of an HTTP context write with the relay's admin token. */
export const writeHeaders = (relay: { token: string }) => ({
  'content-type': 'application/json',
  authorization: `Bearer ${relay.token}`,
});

export { deploy, expect, startRelay };
