// Real tabs on a cluster (issue 17): three relay processes sharing a Redis behind a real HAProxy,
// every tab opened at the balancer's URL. A call sent to one relay is served by a tab joined to
// another; a context write through one relay reaches tabs watching through the others; a relay
// killed with SIGKILL while calls run loses none of them (each answered once), and its tabs
// rejoin through the balancer with their node ids and the apps they already hold.
import type { Browser, BrowserContext } from '@playwright/test';
import type { NodeRecord } from '../../core/api';
import { decode, encode } from '../../core/codec';
import { testBundles } from '../apps';
import { type ClusterProcess, startCluster } from '../cluster-process';
import { deploy, expect, type JoinedTab, joinTab, test } from './fixtures';

let cluster: ClusterProcess;

test.beforeAll(async () => {
  test.setTimeout(180_000);
  // No cloud nodes: every call lands on a tab.
  cluster = await startCluster({ relays: 3, args: ['--no-cloud'] });
  for (const b of await testBundles()) expect((await deploy(cluster, b)).ok).toBe(true);
});

test.afterAll(async () => {
  await cluster?.stop();
});

const contexts: BrowserContext[] = [];
test.afterEach(async () => {
  for (const c of contexts.splice(0)) await c.close();
});

/** Turns WebRTC off in a page: calls between tabs then go through the relays. */
const noRtc = () => {
  const broken = class {
    constructor() {
      throw new Error('WebRTC is disabled by this test');
    }
  };
  for (const name of ['RTCPeerConnection', 'webkitRTCPeerConnection']) {
    Object.defineProperty(globalThis, name, { value: broken, configurable: true });
  }
};
// Outside a loopback-only namespace tabs must not open peer connections (ENVIRONMENT.md).
const netns = !process.env.BRUME_NO_NETNS;

/** A tab joined at the balancer, with every request it (or its workers) makes counted by path. */
interface Tab extends JoinedTab {
  requests: string[];
}
async function tab(browser: Browser, init = netns ? undefined : noRtc): Promise<Tab> {
  const requests: string[] = [];
  const joined = await joinTab(browser, `${cluster.url}/`, contexts, {
    init,
    before: async (page) => {
      page.context().on('request', (r) => requests.push(new URL(r.url()).pathname));
    },
  });
  return { ...joined, requests };
}

const admin = () => ({ authorization: `Bearer ${cluster.token}` });

/** The cluster's nodes as `url` (the balancer, or one relay) lists them. */
async function nodes(url = cluster.url): Promise<NodeRecord[]> {
  const res = await fetch(`${url}/api/nodes`, { headers: admin() });
  expect(res.status).toBe(200);
  return (await res.json()) as NodeRecord[];
}

/** Relay `i`'s id in the cluster, from the line it prints when it starts. */
function relayId(i: number): string {
  const m = /cluster: relay ([0-9a-f-]{36})/.exec(cluster.relays[i]!.output());
  if (!m) throw new Error(`relay ${i} printed no cluster id:\n${cluster.relays[i]!.output()}`);
  return m[1]!;
}

/** Which relay (index) each of `tabs` is joined to, once every one is listed with the app. */
async function placement(tabs: Tab[], app = 'digits'): Promise<number[]> {
  const ids = cluster.relays.map((_, i) => relayId(i));
  let found: number[] = [];
  await expect
    .poll(
      async () => {
        const listed = await nodes();
        found = tabs.map((t) => {
          const n = listed.find((r) => r.id === t.id && r.apps.includes(app));
          return n?.relay === undefined ? -1 : ids.indexOf(n.relay);
        });
        return found.every((i) => i >= 0);
      },
      { timeout: 60_000 },
    )
    .toBe(true);
  return found;
}

/** A "7"-like stroke on 28×28, as msgpack for `POST /api/call/digits/classify`. */
function digitCall(): Buffer {
  const pixels = new Uint8Array(28 * 28);
  for (let x = 6; x < 22; x++) pixels[5 * 28 + x] = 255;
  for (let y = 6; y < 24; y++) pixels[y * 28 + 21 - Math.floor(y / 3)] = 255;
  return Buffer.from(encode({ input: { width: 28, height: 28, pixels } }));
}

/** Calls digits/classify at relay `i` directly; the answer's status and body. */
async function classifyAt(i: number): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`${cluster.relays[i]!.url}/api/call/digits/classify`, {
    method: 'POST',
    headers: { 'content-type': 'application/msgpack' },
    body: digitCall(),
  });
  const bytes = new Uint8Array(await res.arrayBuffer());
  return { status: res.status, body: decode(bytes) as Record<string, unknown> };
}

test('a call sent to one relay is served by the only tab that can, joined to another', async ({
  browser,
}) => {
  const t = await tab(browser);
  const [a] = await placement([t]);
  const others = [0, 1, 2].filter((i) => i !== a);
  for (const b of others) {
    const r = await classifyAt(b);
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    expect(r.body).toMatchObject({ node: t.id });
    expect(typeof (r.body.value as { digit: number }).digit).toBe('number');
  }
  const served = await t.page.evaluate(async () => (await window.brumeDebug.fabric).served);
  expect(served).toBe(others.length);
});
