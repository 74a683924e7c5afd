// Several real tabs, each its own browser context (its own IndexedDB, so its own node key), on one
// relay started without its cloud node, so every remote call lands on a tab.
import { rmSync } from 'node:fs';
import type { Browser, BrowserContext } from '@playwright/test';
import { testBundles } from '../apps';
import { deploy, type RelayProcess, startProxy, startRelay } from '../relay-process';
import {
  deployApp,
  expect,
  type JoinedTab,
  joinTab,
  netns,
  noRtc,
  test,
  writeHeaders,
} from './fixtures';

type Proxy = Awaited<ReturnType<typeof startProxy>>;
let relay: RelayProcess;
let proxy: Proxy;

test.beforeAll(async () => {
  // The proxy's port is known first, so the relay can let pages served through it connect.
  proxy = await startProxy();
  relay = await startRelay({
    args: ['--no-cloud', '--origin', proxy.url, '--allow-host', new URL(proxy.url).host],
  });
  proxy.target = relay.url;
  for (const b of await testBundles()) expect((await deploy(relay, b)).ok).toBe(true);
});

test.afterAll(async () => {
  await proxy.close();
  await relay.stop();
  rmSync(relay.dataDir, { recursive: true, force: true });
});

const contexts: BrowserContext[] = [];
test.afterEach(async () => {
  for (const c of contexts.splice(0)) await c.close();
});

type Tab = JoinedTab;

const direct = netns ? 'peer' : 'relay';

/** A tab joined to the fabric; `init` runs before the page's scripts (e.g. to break WebRTC). */
const tab = (
  browser: Browser,
  query = '',
  base = relay.url,
  init: (() => void) | undefined = netns ? undefined : noRtc,
): Promise<Tab> => joinTab(browser, `${base}/${query}`, contexts, { init });

const digitInput = () => {
  // A "7"-like stroke: enough for the model to answer; the tests check where it ran.
  const pixels = new Uint8Array(100 * 90);
  for (let x = 30; x < 70; x++) for (let y = 20; y < 26; y++) pixels[y * 100 + x] = 255;
  for (let i = 0; i < 50; i++)
    for (let w = 0; w < 6; w++) pixels[(25 + i) * 100 + 66 - i / 2 + w] = 255;
  return { width: 100, height: 90, pixels: Array.from(pixels) };
};

/** Calls digits/classify in `t` with `qos`; answers where and how it ran (or the error). */
function classify(t: Tab, qos: Record<string, unknown>) {
  return t.page.evaluate(
    async ({ input, qos }) => {
      try {
        const r = await window.brume.invoke(
          'digits',
          'classify',
          { ...input, pixels: Uint8Array.from(input.pixels) },
          qos,
        );
        const v = r.value as { digit: number; variant: string };
        return {
          ok: true as const,
          node: r.node,
          via: r.via,
          variant: v.variant,
          digit: v.digit,
          reason: r.reason,
        };
      } catch (e) {
        const err = e as { code?: string; constraint?: string; message: string };
        return {
          ok: false as const,
          code: err.code,
          constraint: err.constraint,
          message: err.message,
        };
      }
    },
    { input: digitInput(), qos },
  );
}

test('a dew that cannot meet the accuracy asked runs it on another tab, over a data channel', async ({
  browser,
}) => {
  // 0.5 MiB: this dew can hold the small variant (0.1 MB) but not the large one (0.9 MB).
  const small = await tab(browser, '?maxModelMiB=0.5');
  const big = await tab(browser);
  const local = await classify(small, {});
  expect(local).toMatchObject({ ok: true, via: 'local', node: small.id, variant: 'small' });
  const far = await classify(small, { accuracy: 0.96 });
  expect(far).toMatchObject({ ok: true, via: direct, node: big.id, variant: 'large' });
  expect(far.ok && far.digit).toBe(local.ok && local.digit);
  const served = await big.page.evaluate(async () => (await window.brumeDebug.fabric).served);
  expect(served).toBe(1);
});

test('with WebRTC broken, the same request goes through the relay', async ({ browser }) => {
  const small = await tab(browser, '?maxModelMiB=0.5', relay.url, noRtc);
  const big = await tab(browser, '', relay.url, noRtc);
  const far = await classify(small, { accuracy: 0.96 });
  expect(far).toMatchObject({ ok: true, via: 'relay', node: big.id, variant: 'large' });
});

test('privacy pinned to a fog key runs only there, and device never leaves the tab', async ({
  browser,
}) => {
  const dew = await tab(browser, '?maxModelMiB=0.5');
  const other = await tab(browser);
  const fog = await tab(browser, '?role=fog');
  // Not on the trust list yet: refused, with the constraint named.
  const refused = await classify(dew, { privacy: fog.publicKey });
  expect(refused).toMatchObject({ ok: false, code: 'E_QOS', constraint: 'privacy' });
  expect(refused.ok || refused.message).toMatch(/not trusted/);

  const auth = { authorization: `Bearer ${relay.token}`, 'content-type': 'application/json' };
  const wrong = await fetch(`${relay.url}/api/trust`, {
    method: 'POST',
    headers: { ...auth, authorization: 'Bearer nope' },
    body: JSON.stringify({ publicKey: fog.publicKey }),
  });
  expect(wrong.status).toBe(401);
  const trusted = await fetch(`${relay.url}/api/trust`, {
    method: 'POST',
    headers: auth,
    body: JSON.stringify({ publicKey: fog.publicKey, label: 'test fog' }),
  });
  expect(trusted.status).toBe(201);
  expect(((await trusted.json()) as { nodeId: string }).nodeId).toBe(fog.id);

  for (let i = 0; i < 4; i++) {
    const r = await classify(dew, { privacy: fog.publicKey, accuracy: 0.96 });
    expect(r).toMatchObject({ ok: true, node: fog.id, variant: 'large' });
  }
  // By node id too; and the other dew never served any of it.
  expect(await classify(dew, { privacy: fog.id })).toMatchObject({ ok: true, node: fog.id });
  expect(await other.page.evaluate(async () => (await window.brumeDebug.fabric).served)).toBe(0);

  const before = await decisions();
  const device = await classify(dew, { privacy: 'device' });
  expect(device).toMatchObject({ ok: true, via: 'local', node: dew.id, variant: 'small' });
  // This tab cannot reach 0.96 itself, and device forbids asking anyone: a typed refusal.
  const cannot = await classify(dew, { privacy: 'device', accuracy: 0.96 });
  expect(cannot).toMatchObject({ ok: false, code: 'E_QOS', constraint: 'accuracy' });
  expect(await decisions()).toBe(before); // the relay was never asked

  const revoked = await fetch(`${relay.url}/api/trust/${fog.publicKey}`, {
    method: 'DELETE',
    headers: { authorization: auth.authorization },
  });
  expect(revoked.status).toBe(204);
  expect(await classify(dew, { privacy: fog.publicKey })).toMatchObject({
    ok: false,
    constraint: 'privacy',
  });
});

test('a dew offers work to its parent fog first, and large payloads cross in chunks', async ({
  browser,
}) => {
  const fog = await tab(browser, '?role=fog');
  const auth = { authorization: `Bearer ${relay.token}` };
  const trusted = await fetch(`${relay.url}/api/trust`, {
    method: 'POST',
    headers: { ...auth, 'content-type': 'application/json' },
    body: JSON.stringify({ publicKey: fog.publicKey, label: 'parent' }),
  });
  expect(trusted.status).toBe(201);
  const dew = await tab(browser, '?maxModelMiB=0.5');
  expect(await dew.page.evaluate(async () => (await window.brumeDebug.fabric).parent)).toBe(fog.id);

  const before = await decisions();
  const r = await classify(dew, { accuracy: 0.96 });
  expect(r).toMatchObject({ ok: true, node: fog.id, variant: 'large', via: direct });
  if (netns) {
    // Straight to the parent over the data channel: the relay was not asked.
    expect(r.ok && r.reason).toMatch(/parent fog/);
    expect(await decisions()).toBe(before);
  }

  // 300 KB each way: five chunks out, five back.
  const echoed = await dew.page.evaluate(async (to) => {
    const big = 'brume '.repeat(50_000);
    // The page's own trace id: it crosses to the fog with the call and comes back in its entries.
    const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
    const r = await window.brume.invoke('hostile', 'echo', big, { privacy: to }, { traceId });
    const traced = r.traceId === traceId && r.trace.every((t) => t.traceId === traceId);
    return { same: r.value === big, via: r.via, node: r.node, traced, entries: r.trace.length };
  }, fog.id);
  expect(echoed).toEqual({ same: true, via: direct, node: fog.id, traced: true, entries: 1 });
  await fetch(`${relay.url}/api/trust/${fog.publicKey}`, { method: 'DELETE', headers: auth });
});

/** Echoes 4 MiB of patterned bytes from `from` on node `to`; answers whether every byte came back. */
function echo4MiB(from: Tab, to: string) {
  return from.page.evaluate(async (to) => {
    const big = new Uint8Array(4 * 1024 * 1024);
    for (let i = 0; i < big.length; i++) big[i] = (i * 2654435761) >>> 24;
    const r = await window.brume.invoke('hostile', 'echo', big, { privacy: to });
    const back = r.value as Uint8Array;
    let same = back instanceof Uint8Array && back.length === big.length;
    for (let i = 0; same && i < big.length; i++) same = back[i] === big[i];
    return { same, via: r.via, node: r.node };
  }, to);
}

test('4 MiB cross a data channel and the relay intact, each way', async ({ browser }) => {
  const a = await tab(browser);
  const b = await tab(browser);
  expect(await echo4MiB(a, b.id)).toEqual({ same: true, via: direct, node: b.id });
  const c = await tab(browser, '', relay.url, noRtc);
  expect(await echo4MiB(a, c.id)).toEqual({ same: true, via: 'relay', node: c.id });
});

test('a fog passes context changes on to its dew children over their data channels', async ({
  browser,
}) => {
  test.skip(!netns, 'needs data channels: run inside a network namespace');
  const fog = await tab(browser, '?role=fog');
  const auth = { authorization: `Bearer ${relay.token}` };
  await fetch(`${relay.url}/api/trust`, {
    method: 'POST',
    headers: { ...auth, 'content-type': 'application/json' },
    body: JSON.stringify({ publicKey: fog.publicKey, label: 'parent' }),
  });
  const dews = [await tab(browser), await tab(browser)];
  for (const d of dews) {
    expect(await d.page.evaluate(async () => (await window.brumeDebug.fabric).parent)).toBe(fog.id);
    await d.page.evaluate(() => {
      (globalThis as { seen?: unknown[] }).seen = [];
      window.brume.context('fanned').watch('', (k, read) => {
        (globalThis as unknown as { seen: unknown[] }).seen.push([k, read]);
      });
    });
  }
  await fog.page.evaluate(() => window.brume.context('fanned').get('x'));
  // The fog tells the relay (heartbeat) which children it has a channel to.
  const nodes = async () =>
    (await (await fetch(`${relay.url}/api/nodes`, { headers: auth })).json()) as {
      id: string;
      links?: string[];
    }[];
  await expect
    .poll(async () => (await nodes()).find((n) => n.id === fog.id)?.links?.sort())
    .toEqual(dews.map((d) => d.id).sort());
  const fanout = async () =>
    (await (await fetch(`${relay.url}/api/context/fanout`, { headers: auth })).json()) as {
      direct: number;
      viaFog: number;
    };
  await deployApp(relay, 'fanned');
  const before = await fanout();
  for (let i = 0; i < 5; i++) {
    await fetch(`${relay.url}/api/context/fanned/k${i}`, {
      method: 'PUT',
      headers: writeHeaders(relay),
      body: JSON.stringify({ value: i }),
    });
  }
  for (const d of dews) {
    await expect
      .poll(() => d.page.evaluate(() => (globalThis as { seen?: unknown[] }).seen))
      .toEqual([0, 1, 2, 3, 4].map((i) => [`k${i}`, { value: i }]));
  }
  // Both children got all five through the fog; the relay sent them only to the fog.
  const after = await fanout();
  expect(after.viaFog - before.viaFog).toBe(10);
  expect(after.direct - before.direct).toBe(5);
  await fetch(`${relay.url}/api/trust/${fog.publicKey}`, { method: 'DELETE', headers: auth });
});

async function decisions(): Promise<number> {
  const res = await fetch(`${relay.url}/api/decisions`, {
    headers: { authorization: `Bearer ${relay.token}` },
  });
  return ((await res.json()) as unknown[]).length;
}

test('a dew cut off from the relay still answers from its cached apps, and starts offline', async ({
  browser,
}) => {
  const dew = await tab(browser, '?maxModelMiB=0.5', proxy.url);
  await dew.page.evaluate(() => window.brumeDebug.runtime.warm('digits'));
  proxy.cut();
  await dew.page.evaluate(async () => {
    const f = await window.brumeDebug.fabric;
    while (f.status === 'joined') await new Promise((r) => setTimeout(r, 50));
  });
  // It cannot reach 0.96 alone and cannot ask: the best it can run, saying so.
  const offline = await classify(dew, { accuracy: 0.96 });
  expect(offline).toMatchObject({ ok: true, via: 'local', node: dew.id, variant: 'small' });
  expect(offline.ok && offline.reason).toMatch(/offline/);

  // Back online: it rejoins by itself; a reload reads every app file from the Cache API.
  proxy.heal();
  await dew.page.evaluate(async () => (await window.brumeDebug.fabric).whenJoined(20_000));
  const blobs: string[] = [];
  dew.page.on('request', (r) => {
    if (r.url().includes('/api/blobs/')) blobs.push(r.url());
  });
  await dew.page.reload();
  const again = await dew.page.evaluate(async () => {
    await window.brume.ready;
    await window.brumeDebug.runtime.warm('digits');
    return (await window.brumeDebug.fabric).nodeId;
  });
  expect(again).toBe(dew.id); // the same key from IndexedDB: the same node
  expect(blobs).toEqual([]);

  // An offline start: the relay unreachable, the page comes from its service worker and the
  // apps from the Cache API, and the tab answers by itself.
  proxy.cut();
  await dew.page.reload();
  const cold = await classify(dew, {});
  expect(cold).toMatchObject({ ok: true, via: 'local', node: dew.id, variant: 'small' });
  expect(await dew.page.evaluate(async () => (await window.brumeDebug.fabric).status)).not.toBe(
    'joined',
  );
  proxy.heal();
});

test('closing the executing tab mid-request gives exactly one correct result', async ({
  browser,
}) => {
  const caller = await tab(browser);
  const a = await tab(browser);
  const b = await tab(browser);
  const n = 1_000_000_000;
  // What the Logic computes, here: n rounds of x = x * 1664525 + 1013904223 (mod 2^32) from 1.
  let x = 1;
  for (let i = 0; i < n; i++) x = (Math.imul(x, 1664525) + 1013904223) >>> 0;

  // The caller learns that spin takes over 200 ms here, so a 100 ms budget is a QoS miss it
  // forwards (the others have no figures yet: the relay's estimate for them is the network and
  // a 1 ms prior).
  await caller.page.evaluate(async () => {
    for (let i = 0; i < 3; i++) {
      await window.brume.invoke('hostile', 'echo', { n: 200_000_000 }, {}, { rpc: 'spin' });
    }
  });
  const answer = caller.page.evaluate(async (n) => {
    const r = await window.brume.invoke(
      'hostile',
      'echo',
      { n },
      { latencyMs: 100 },
      { rpc: 'spin' },
    );
    return { value: r.value as { n: number; x: number }, node: r.node, via: r.via };
  }, n);
  const executing = await whoIsBusy([a, b], answer);
  await executing.page.context().close();
  const result = await answer;
  const survivor = executing === a ? b : a;
  expect(result).toMatchObject({ node: survivor.id, via: direct, value: { n, x } });
  // One result: the survivor ran it once, and nothing else arrives later. A sentinel call on the
  // same path instead of a pause: a second copy sent before it would be served or running by
  // the time the sentinel is answered.
  await caller.page.evaluate(
    (id) => window.brume.invoke('hostile', 'echo', { n: 1 }, { privacy: id }, { rpc: 'spin' }),
    survivor.id,
  );
  expect(
    await survivor.page.evaluate(async () => {
      const f = await window.brumeDebug.fabric;
      return { served: f.served, busy: f.busy };
    }),
  ).toEqual({ served: 2, busy: 0 });
});

/** The tab running a request for someone else; fails if `done` settles first. */
async function whoIsBusy(tabs: Tab[], done: Promise<unknown>): Promise<Tab> {
  let settled = false;
  void done.finally(() => {
    settled = true;
  });
  while (!settled) {
    for (const t of tabs) {
      if (await t.page.evaluate(async () => (await window.brumeDebug.fabric).busy)) return t;
    }
  }
  throw new Error(
    `the request finished before any tab was seen running it: ${JSON.stringify(await done)}`,
  );
}

test('an HTTP client gets one result when the executing tab closes mid-request', async ({
  browser,
}) => {
  const a = await tab(browser);
  const b = await tab(browser);
  const n = 1_000_000_000;
  const call = fetch(`${relay.url}/api/call/hostile/echo`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ input: { n }, rpc: 'spin' }),
  });
  const executing = await whoIsBusy([a, b], call);
  await executing.page.context().close();
  const res = await call;
  expect(res.status).toBe(200);
  const body = (await res.json()) as { node: string; value: { n: number } };
  expect(body.node).toBe((executing === a ? b : a).id);
  expect(body.value.n).toBe(n);
});
