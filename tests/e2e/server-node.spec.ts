// A real tab and a server node (`brume node`, its own process) on a relay started without its
// cloud node: the tab's call that needs more accuracy than it can hold runs on the server node,
// through the relay (a server node has no WebRTC), also when that node is the tab's parent fog.
import { rmSync } from 'node:fs';
import type { BrowserContext } from '@playwright/test';
import { type NodeProcess, startNodeProcess } from '../node-process';
import { type RelayProcess, startRelay } from '../relay-process';
import { expect, joinTab, netns, noRtc, test } from './fixtures';

let relay: RelayProcess;
let server: NodeProcess;
const contexts: BrowserContext[] = [];

test.beforeAll(async () => {
  relay = await startRelay({ args: ['--no-cloud'] });
  server = await startNodeProcess(relay.url, { args: ['--role', 'fog', '--apps', 'digits'] });
  const res = await fetch(`${relay.url}/api/trust`, {
    method: 'POST',
    headers: { authorization: `Bearer ${relay.token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ publicKey: server.publicKey, label: 'server fog' }),
  });
  expect(res.status, await res.text()).toBeLessThan(300);
  await expect
    .poll(async () => {
      const nodes = (await (
        await fetch(`${relay.url}/api/nodes`, {
          headers: { authorization: `Bearer ${relay.token}` },
        })
      ).json()) as { id: string; trusted: boolean; apps: string[] }[];
      const me = nodes.find((n) => n.id === server.id);
      return me?.trusted && me.apps.includes('digits');
    })
    .toBe(true);
});

test.afterAll(async () => {
  for (const c of contexts.splice(0)) await c.close();
  await server?.kill();
  await relay?.stop();
  if (relay) rmSync(relay.dataDir, { recursive: true, force: true });
  if (server) rmSync(server.dataDir, { recursive: true, force: true });
});

test("a tab's call that needs more accuracy than it holds is served by the server node", async ({
  browser,
}) => {
  // 0.5 MiB: the tab holds the small variant (0.1 MB), not the large one (0.9 MB).
  const dew = await joinTab(browser, `${relay.url}/?maxModelMiB=0.5`, contexts, {
    // Outside a loopback-only namespace tabs open no peer connections (ENVIRONMENT.md).
    ...(!netns && { init: noRtc }),
  });
  // The server fog is its parent (the only trusted fog).
  await expect
    .poll(() => dew.page.evaluate(async () => (await window.brumeDebug.fabric).parent))
    .toBe(server.id);
  for (let i = 0; i < 2; i++) {
    const r = await dew.page.evaluate(async () => {
      const pixels = new Uint8Array(100 * 90);
      for (let x = 30; x < 70; x++) for (let y = 20; y < 26; y++) pixels[y * 100 + x] = 255;
      const r = await window.brume.invoke(
        'digits',
        'classify',
        { width: 100, height: 90, pixels },
        { accuracy: 0.96 },
      );
      return { node: r.node, via: r.via, variant: (r.value as { variant: string }).variant };
    });
    expect(r).toEqual({ node: server.id, via: 'relay', variant: 'large' });
  }
});
