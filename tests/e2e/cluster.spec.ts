// Real tabs on a cluster (issue 17): three relay processes sharing a Redis behind a real HAProxy,
// every tab opened at the balancer's URL. A call sent to one relay is served by a tab joined to
// another; a context write through one relay reaches tabs watching through the others; a relay
// killed with SIGKILL while calls run loses none of them (each answered once), and its tabs
// rejoin through the balancer with their node ids and the apps they already hold. Two tabs of
// different relays open a data channel: the relays carry their signalling between them. The admin
// console at one relay shows every relay, and a tab joined to another under its relay.
import type { Browser, BrowserContext } from '@playwright/test';
import type { NodeRecord } from '../../core/api';
import { decode, encode } from '../../core/codec';
import { testBundles } from '../apps';
import { type ClusterProcess, startCluster } from '../cluster-process';
import {
  deploy,
  deployApp,
  expect,
  type JoinedTab,
  joinTab,
  netns,
  noRtc,
  test,
  writeHeaders,
} from './fixtures';

let cluster: ClusterProcess;
/** Each relay's id in the cluster, by index, read from the line it prints when it starts. */
let relayIds: string[];

test.beforeAll(async () => {
  test.setTimeout(180_000);
  // No cloud nodes: every call lands on a tab.
  cluster = await startCluster({ relays: 3, args: ['--no-cloud'] });
  relayIds = cluster.relays.map((r, i) => {
    const m = /cluster: relay ([0-9a-f-]{36})/.exec(r.output());
    if (!m) throw new Error(`relay ${i} printed no cluster id:\n${r.output()}`);
    return m[1]!;
  });
  for (const b of await testBundles()) expect((await deploy(cluster, b)).ok).toBe(true);
});

test.afterAll(async () => {
  await cluster?.stop();
});

const contexts: BrowserContext[] = [];
test.afterEach(async () => {
  for (const c of contexts.splice(0)) await c.close();
});

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

/** Which relay (index) each of `tabs` is joined to, once every one is listed with the app. */
async function placement(tabs: Tab[], app = 'digits'): Promise<number[]> {
  const ids = relayIds;
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
function digitCall(): Uint8Array<ArrayBuffer> {
  const pixels = new Uint8Array(28 * 28);
  for (let x = 6; x < 22; x++) pixels[5 * 28 + x] = 255;
  for (let y = 6; y < 24; y++) pixels[y * 28 + 21 - Math.floor(y / 3)] = 255;
  return Uint8Array.from(encode({ input: { width: 28, height: 28, pixels } }));
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

test('the console at one relay lists every relay and a tab of another with its relay', async ({
  browser,
}) => {
  const t = await tab(browser);
  const a = (await placement([t]))[0]!;
  const b = (a + 1) % 3;
  const [there, here] = [relayIds[a]!, relayIds[b]!];
  const context = await browser.newContext();
  contexts.push(context);
  const page = await context.newPage();
  await page.goto(`${cluster.relays[b]!.url}/admin`);
  await page.locator('#token').fill(cluster.token);
  await page.locator('button[type=submit]').click();
  // The relays panel: the three relays, the one serving this console marked, Redis reached.
  const rows = page.locator('#relays tr[data-relay]');
  await expect(rows).toHaveCount(3, { timeout: 30_000 });
  expect(
    (await rows.evaluateAll((r) => r.map((e) => e.getAttribute('data-relay')))).sort(),
  ).toEqual([...relayIds].sort());
  await expect(page.locator(`#relays tr[data-relay="${here}"]`)).toContainText('this relay');
  // Tabs of earlier tests have left (their contexts closed): this one alone is at relay a.
  await expect(page.locator(`#relays tr[data-relay="${there}"] td.nodes`)).toHaveText('1', {
    timeout: 30_000,
  });
  await expect(page.locator('#relays .redis .ok')).toContainText('answers in');
  // The tab, joined to relay a, in the node table with a's short id, and under a in the topology.
  const row = page.locator(`#nodes tr[data-node="${t.id}"]`);
  await expect(row.locator('td.relay')).toHaveText(there.slice(0, 8));
  await expect(
    page.locator(`#topology li[data-relay="${there}"] li[data-node="${t.id}"]`),
  ).toHaveCount(1);
});

/** Opens tabs at the balancer until they are joined to at least two relays; with where each is. */
async function spread(browser: Browser, app: string): Promise<{ tabs: Tab[]; at: number[] }> {
  const tabs: Tab[] = [];
  // Round robin spreads sockets; a few more tabs in the rare case it did not.
  for (let k = 0; k < 8; k++) {
    tabs.push(await tab(browser));
    if (tabs.length < 3) continue;
    const at = await placement(tabs, app);
    if (new Set(at).size >= 2) return { tabs, at };
  }
  throw new Error('eight tabs opened at the balancer all joined one relay');
}

test('a context write through one relay reaches tabs watching through the others', async ({
  browser,
}) => {
  await deployApp(cluster, 'demo');
  const { tabs, at } = await spread(browser, 'demo');
  const writer = tabs[0]!;
  const a = at[0]!;
  const watchers = tabs.filter((_, k) => at[k] !== a);
  for (const w of watchers)
    await w.page.evaluate(() => {
      (globalThis as { seen?: unknown[] }).seen = [];
      window.brume.context('demo').watch('greet', (key, read) => {
        (globalThis as unknown as { seen: unknown[] }).seen.push([key, read]);
      });
    });
  // From a tab joined to relay A...
  await writer.page.evaluate(() => window.brume.context('demo').put('greeting', { text: 'hi' }));
  for (const w of watchers)
    await expect
      .poll(() => w.page.evaluate(() => (globalThis as { seen?: unknown[] }).seen))
      .toEqual([['greeting', { value: { text: 'hi' } }]]);
  // ...and over HTTP at relay A itself: read back through every relay.
  const put = await fetch(`${cluster.relays[a]!.url}/api/context/demo/greeting`, {
    method: 'PUT',
    headers: writeHeaders(cluster),
    body: JSON.stringify({ value: { text: 'again' } }),
  });
  expect(put.status, await put.clone().text()).toBeLessThan(300);
  for (const w of watchers)
    await expect
      .poll(() => w.page.evaluate(() => window.brume.context('demo').get('greeting')))
      .toEqual({ value: { text: 'again' } });
  for (const r of cluster.relays) {
    const read = await fetch(`${r.url}/api/context/demo/greeting`);
    expect(await read.json()).toMatchObject({ value: { text: 'again' } });
  }
});

/** Calls sent while waiting for one to run on a tab of the relay to kill, at most. */
const MAX_CALLS = 200;

/** Calls hostile/spin at relay `i` directly: a call that keeps its tab busy a while. */
async function spinAt(i: number, n: number) {
  const res = await fetch(`${cluster.relays[i]!.url}/api/call/hostile/echo`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ input: { n }, rpc: 'spin' }),
  });
  return {
    status: res.status,
    body: (await res.json()) as { node?: string; value?: { n: number } },
  };
}

test('a relay killed while its tabs run calls: each call answered once, its tabs rejoin elsewhere keeping ids and apps', async ({
  browser,
}) => {
  test.setTimeout(240_000);
  const { tabs, at } = await spread(browser, 'hostile');
  const a = at[0]!;
  const survivors = [0, 1, 2].filter((i) => i !== a);
  const onA = tabs.filter((_, k) => at[k] === a);

  // Calls at the surviving relays, topped up until one runs on a tab of A; then A dies.
  const n = 100_000_000;
  const calls: ReturnType<typeof spinAt>[] = [];
  let running = 0;
  const more = () => {
    while (running < tabs.length * 3 && calls.length < MAX_CALLS) {
      running++;
      const k = calls.length;
      calls.push(spinAt(survivors[k % survivors.length]!, n + k).finally(() => running--));
    }
  };
  await expect
    .poll(
      async () => {
        more();
        for (const t of onA)
          if (await t.page.evaluate(async () => (await window.brumeDebug.fabric).busy)) return true;
        return false;
      },
      { timeout: 120_000, intervals: [50] },
    )
    .toBe(true);
  // The tabs fetched the apps' files (the counter sees those requests) before A dies.
  const fetchedBefore = onA.map((t) => t.requests.length);
  for (const t of onA)
    expect(t.requests.filter((p) => p.startsWith('/api/blobs/'))).not.toEqual([]);
  await cluster.kill(a);

  const answers = await Promise.all(calls);
  answers.forEach((r, k) => {
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    expect(r.body.value).toMatchObject({ n: n + k });
  });

  // A's tabs rejoin through the balancer (so at another relay) as the same nodes...
  const alive = survivors.map((i) => relayIds[i]!);
  await expect
    .poll(
      async () => {
        const listed = await nodes();
        return onA.every((t) =>
          listed.some((r) => r.id === t.id && r.relay !== undefined && alive.includes(r.relay)),
        );
      },
      { timeout: 90_000 },
    )
    .toBe(true);
  for (const t of onA)
    expect(await t.page.evaluate(async () => (await window.brumeDebug.fabric).nodeId)).toBe(t.id);
  // ...holding the apps they had: no app file they held fetched again (a Logic's file is
  // fetched when its first call comes, so a call moved to a tab may fetch one it never held).
  onA.forEach((t, k) => {
    const blobs = (ps: string[]) => ps.filter((p) => p.startsWith('/api/blobs/'));
    const held = new Set(blobs(t.requests.slice(0, fetchedBefore[k])));
    expect(blobs(t.requests.slice(fetchedBefore[k])).filter((p) => held.has(p))).toEqual([]);
  });
  // And they serve again: a call at each surviving relay answered.
  for (const i of survivors) {
    const r = await spinAt(i, 1);
    expect(r.status).toBe(200);
  }
});

test('two tabs joined to different relays call each other over a data channel', async ({
  browser,
}) => {
  test.skip(!netns, 'needs data channels: run inside a network namespace');
  // Their signalling sockets land wherever the balancer sends them; the relays hand offers,
  // answers and candidates to the one holding the other's socket (PROTOCOL.md §5.10).
  const { tabs, at } = await spread(browser, 'hostile');
  const from = tabs[0]!;
  const to = tabs.find((_, k) => at[k] !== at[0])!;
  const echo = () =>
    from.page.evaluate(async (node) => {
      const r = await window.brume.invoke('hostile', 'echo', 'across', { privacy: node });
      return { value: r.value, via: r.via, node: r.node };
    }, to.id);
  // A channel that did not open in time (a busy machine) sends calls through the relays for 30 s,
  // answered all the same; then the tab tries again. What must come is a call over the channel.
  let echoed = await echo();
  expect(echoed).toMatchObject({ value: 'across', node: to.id });
  await expect
    .poll(
      async () => {
        echoed = await echo();
        return echoed.via;
      },
      { timeout: 90_000, intervals: [1000] },
    )
    .toBe('peer');
  expect(echoed).toEqual({ value: 'across', via: 'peer', node: to.id });
});
