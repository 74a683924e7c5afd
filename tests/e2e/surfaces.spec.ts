// The web surfaces in real Chromium: the join page, the embed script on another origin, and the
// admin console. Screenshots go to the test's output folder (test-results/e2e/...).
import { createHash } from 'node:crypto';
import { readFileSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Browser, Page, TestInfo } from '@playwright/test';
import { encode } from '../../core/codec';
import { packBundle } from '../../core/manifest';
import { hopsApp, hostileApp } from '../apps';
import { deploy, type RelayProcess, startRelay } from '../relay-process';
import { expect, test } from './fixtures';

let relay: RelayProcess;
test.beforeAll(async () => {
  relay = await startRelay(); // with its cloud node, and only the sample app
});
test.afterAll(async () => {
  await relay.stop();
  rmSync(relay.dataDir, { recursive: true, force: true });
});

async function shot(page: Page, info: TestInfo, name: string) {
  await page.screenshot({ path: info.outputPath(`${name}.png`), fullPage: true });
}

async function joinPage(browser: Browser, query = '') {
  const context = await browser.newContext();
  await context.grantPermissions(['microphone', 'camera'], { origin: relay.url });
  const page = await context.newPage();
  const t0 = Date.now();
  await page.goto(`${relay.url}/${query}`);
  await expect(page.locator('#node-fabric')).toHaveText('joined', { timeout: 30_000 });
  await expect(page.locator('#node-state')).toHaveAttribute('data-warm', 'digits', {
    timeout: 30_000,
  });
  const readyMs = Date.now() - t0;
  const id = await page.evaluate(async () => (await window.brumeDebug.fabric).nodeId);
  return {
    page,
    id,
    readyMs,
    publicKey: await page.evaluate(async () => (await window.brumeDebug.fabric).publicKey),
  };
}

const adminHeaders = () => ({ authorization: `Bearer ${relay.token}` });
async function relayNode(id: string) {
  const nodes = (await (
    await fetch(`${relay.url}/api/nodes`, { headers: adminHeaders() })
  ).json()) as {
    id: string;
    paused: boolean;
    role: string;
  }[];
  return nodes.find((n) => n.id === id);
}

test('the join page shows the node and pauses on request', async ({ browser }, info) => {
  const first = await joinPage(browser);
  await first.page.reload();
  const t0 = Date.now();
  await expect(first.page.locator('#node-state')).toHaveAttribute('data-warm', 'digits');
  const warmReload = Date.now() - t0;
  console.log(
    `join page to a ready node with the digits app cached: ${first.readyMs} ms first visit, ${warmReload} ms on reload`,
  );
  const page = first.page;
  await expect(page.locator('#node-id')).toHaveText(first.id.slice(0, 8));
  await expect(page.locator('#node-role')).toHaveText('dew');
  await expect(page.locator('#node-backends')).toContainText(/wasm \(.*thread/);
  await expect(page.locator('#node-apps')).toContainText(
    /digits@1\.0\.0, digits-ee@1\.0\.0, ocr@1\.0\.0, squeezenet@1\.0\.0, top3@1\.0\.0, vad@1\.0\.0 · [1-9]\d* files cached/,
  );
  await expect(page.locator('#node-contributing')).toContainText('Contributing');
  // schedule answers one shape on the page and over HTTP: the rpc called there, and the variant.
  const shape = ['estimateMs', 'node', 'reason', 'rpc', 'variant'];
  const local = await page.evaluate(() => window.brume.schedule('digits', 'classify'));
  expect(Object.keys(local).sort()).toEqual(shape);
  expect(local).toMatchObject({ node: first.id, rpc: 'classify' });
  expect(['small', 'large']).toContain(local.variant);
  const http = await (
    await fetch(`${relay.url}/api/schedule/digits/model`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{}',
    })
  ).json();
  expect(Object.keys(http).sort()).toEqual(shape);
  expect(http.rpc).toBe(http.variant);
  // Each deployed app with a demo input gets a button (the test app has one).
  const b = await hostileApp();
  expect((await deploy(relay, packBundle(b.manifest, b.files))).ok).toBe(true);
  await page.reload();
  await page.getByRole('button', { name: 'hostile: Echo a greeting' }).click();
  await expect(page.locator('#demos output')).toContainText('"hello, fabric" · this tab');
  await shot(page, info, 'join-page');

  await page.locator('#pause').click();
  await expect(page.locator('#node-contributing')).toContainText('Paused (user)');
  await expect(page.locator('#pause')).toHaveText('Resume contributing');
  await expect.poll(async () => (await relayNode(first.id))?.paused).toBe(true);
  await shot(page, info, 'join-page-paused');
  await page.locator('#pause').click();
  await expect.poll(async () => (await relayNode(first.id))?.paused).toBe(false);
  await page.context().close();
});

/** A page on another origin (another port) with a strict CSP, loading the embed script. */
async function hostSite(
  contribute: boolean,
  timeoutMs?: number,
): Promise<{ url: string; server: Server }> {
  const js = readFileSync('dist/web/brume.js');
  const integrity = `sha384-${createHash('sha384').update(js).digest('base64')}`;
  const csp = `default-src 'none'; script-src ${relay.url}/brume.js; frame-src ${relay.url}`;
  const html = `<!doctype html><title>A site</title><h1>Someone's site</h1>
<script src="${relay.url}/brume.js" integrity="${integrity}" crossorigin="anonymous"
  data-role="dew" data-contribute="${contribute}"${timeoutMs ? ` data-timeout-ms="${timeoutMs}"` : ''} async></script>`;
  const server = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/html', 'content-security-policy': csp });
    res.end(html);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/`, server };
}

test('the README shows the embed tag with the integrity hash of this build', () => {
  const js = readFileSync('dist/web/brume.js');
  const integrity = `sha384-${createHash('sha384').update(js).digest('base64')}`;
  expect(readFileSync('README.md', 'utf8'), 'update the hash in README.md').toContain(
    `integrity="${integrity}"`,
  );
});

test('a page on another origin joins with one script tag, calls an app, and cannot reach the node', async ({
  browser,
}, info) => {
  const host = await hostSite(true);
  const context = await browser.newContext();
  const page = await context.newPage();
  const violations: string[] = [];
  page.on('console', (m) => {
    if (/Content Security Policy|Refused to/.test(m.text())) violations.push(m.text());
  });
  try {
    await page.goto(host.url);
    const r = await page.evaluate(async () => {
      const brume = window.brume;
      await brume.ready;
      const pixels = new Uint8Array(28 * 28);
      for (let i = 200; i < 600; i += 29) pixels[i] = 255;
      const out = await brume.invoke('digits', 'classify', { width: 28, height: 28, pixels });
      return { out, status: brume.status() };
    });
    expect(r.out).toMatchObject({ value: { digit: expect.any(Number) }, via: 'local' });
    expect(r.status).toMatchObject({ ready: true, contributing: true });
    const node = (r.status as { node: string }).node;
    await expect.poll(async () => (await relayNode(node))?.role).toBe('dew');

    // The same API as the join page's: schedule in its one shape, and the app's context, a
    // watch included, over the messages between the page and the iframe.
    const where = await page.evaluate(() => window.brume.schedule('digits', 'classify'));
    expect(Object.keys(where).sort()).toEqual(['estimateMs', 'node', 'reason', 'rpc', 'variant']);
    expect(where).toMatchObject({ rpc: 'classify', variant: expect.stringMatching(/small|large/) });
    await page.evaluate(() => {
      const seen: unknown[] = [];
      Object.assign(window, { seen });
      window.brume.context('digits').watch('embed-', (key, read) => seen.push([key, read]));
    });
    await page.evaluate(() => window.brume.context('digits').put('embed-key', { n: 1 }));
    expect(await page.evaluate(() => window.brume.context('digits').get('embed-key'))).toEqual({
      value: { n: 1 },
    });
    await expect
      .poll(() => page.evaluate(() => (window as unknown as { seen: unknown[] }).seen))
      .toContainEqual(['embed-key', { value: { n: 1 } }]);
    await page.evaluate(() => window.brume.context('digits').delete('embed-key'));
    expect(await page.evaluate(() => window.brume.context('digits').get('embed-key'))).toBe(
      undefined,
    );

    // The node's keys, storage and context live in the relay's origin, out of the host's reach.
    const reach = await page.evaluate(async () => {
      const frame = document.querySelector('iframe')!;
      let inside = 'readable';
      try {
        void (frame.contentWindow as unknown as { brume: unknown }).brume;
        void frame.contentDocument!.cookie;
      } catch (e) {
        inside = (e as Error).name;
      }
      const dbs = (await indexedDB.databases()).map((d) => d.name);
      return { inside, dbs, contentDocument: frame.contentDocument === null };
    });
    expect(reach.inside).toBe('SecurityError');
    expect(reach.contentDocument).toBe(true);
    expect(reach.dbs).not.toContain('brume-identity');
    await expect(
      page.locator('button', { hasText: 'Brume: this page shares your computer' }),
    ).toBeVisible();
    await shot(page, info, 'embed-host');
    expect(violations).toEqual([]);
  } finally {
    await context.close();
    host.server.close();
  }

  // data-contribute="false": the node serves only its page, and says so.
  const quiet = await hostSite(false);
  const c2 = await browser.newContext();
  const p2 = await c2.newPage();
  try {
    await p2.goto(quiet.url);
    const status = await p2.evaluate(async () => {
      await window.brume.ready;
      return window.brume.status();
    });
    expect(status.contributing).toBe(false);
    await expect.poll(async () => (await relayNode(status.node))?.paused).toBe(true);
    await expect(p2.locator('button', { hasText: 'not sharing' })).toBeVisible();
  } finally {
    await c2.close();
    quiet.server.close();
  }
});

test('a call through the embed script that gets no answer in time rejects with E_TIMEOUT', async ({
  browser,
}) => {
  // 1 ms: the iframe cannot even have loaded, so the call is still waiting when its time is up.
  const host = await hostSite(true, 1);
  const context = await browser.newContext();
  const page = await context.newPage();
  try {
    await page.goto(host.url);
    await page.waitForFunction(() => window.brume);
    const e = await page.evaluate(() =>
      window.brume.invoke('digits', 'classify', {}).then(
        () => undefined,
        (e: { name: string; code: string; message: string }) => ({
          ...e,
          name: e.name,
          message: e.message,
        }),
      ),
    );
    expect(e).toMatchObject({ name: 'TimeoutError', code: 'E_TIMEOUT' });
    expect(e?.message).toContain('"invoke" got no answer within 1 ms');
  } finally {
    await context.close();
    host.server.close();
  }
});

test('the admin console: token, roles, trust, deploys, decisions and latency plots', async ({
  browser,
}, info) => {
  const fog = await joinPage(browser, '?role=fog');
  const dews = [await joinPage(browser), await joinPage(browser, '?maxModelMiB=0.5')];
  const context = await browser.newContext();
  const page = await context.newPage();
  const consolePage = await page.goto(`${relay.url}/admin`);
  // No other page may frame the console (clickjacking).
  expect(consolePage?.headers()['content-security-policy']).toBe("frame-ancestors 'none'");
  expect(consolePage?.headers()['x-frame-options']).toBe('DENY');

  // A wrong token shows nothing but the refusal.
  await page.locator('#token').fill('not-the-token');
  await page.locator('button[type=submit]').click();
  await expect(page.locator('#login-error')).toContainText('refused');
  await expect(page.locator('#nodes')).toHaveCount(0);
  await page.locator('#token').fill(relay.token);
  await page.locator('button[type=submit]').click();
  // The token lives for this tab only: sessionStorage, never localStorage.
  await expect
    .poll(() => page.evaluate(() => sessionStorage.getItem('brume-admin-token')))
    .toBe(relay.token);
  expect(await page.evaluate(() => localStorage.getItem('brume-admin-token'))).toBeNull();

  // Three tabs in their roles (and the relay's cloud node).
  const row = (id: string) => page.locator(`#nodes tr[data-node="${id}"]`);
  await expect(row(fog.id)).toContainText('fog');
  for (const d of dews) await expect(row(d.id)).toContainText('dew');
  await expect(page.locator('#topology .badge.cloud')).toHaveCount(1);

  // Approve the fog's key here; the relay trusts it.
  await row(fog.id).locator('button.approve').click();
  await expect(row(fog.id)).toContainText('trusted');
  const trust = (await (
    await fetch(`${relay.url}/api/trust`, { headers: adminHeaders() })
  ).json()) as {
    publicKey: string;
  }[];
  expect(trust.map((t) => t.publicKey)).toContain(fog.publicKey);

  // Deploy by upload; a tampered bundle is refused with a readable reason.
  const b = await hopsApp();
  const good = packBundle(b.manifest, b.files);
  await page.locator('#bundle').setInputFiles({
    name: 'hops.brume',
    mimeType: 'application/octet-stream',
    buffer: Buffer.from(good),
  });
  await expect(page.locator('#deploy-result')).toHaveText('deployed hops@1.0.0');
  await expect(page.locator('#apps')).toContainText('hops@1.0.0');
  const tampered = packBundle(
    { ...b.manifest, version: '1.0.1' },
    {
      ...b.files,
      'small.onnx': Uint8Array.from(b.files['small.onnx']!, (v, i) => (i === 100 ? v ^ 1 : v)),
    },
  );
  await page.locator('#bundle').setInputFiles({
    name: 'tampered.brume',
    mimeType: 'application/octet-stream',
    buffer: Buffer.from(tampered),
  });
  await expect(page.locator('#deploy-result')).toContainText(/refused: .*small\.onnx/);

  // Real calls, through the relay: the decision log and both plots fill.
  for (const [i, qos] of [{}, { accuracy: 0.96 }, { latencyMs: 500 }].entries()) {
    for (let k = 0; k < 5; k++) {
      const r = await dews[i % 2]!.page.evaluate(
        async (qos) => {
          const pixels = new Uint8Array(28 * 28);
          for (let j = 300; j < 500; j += 3) pixels[j] = 255;
          return (
            await window.brume.invoke('digits', 'classify', { width: 28, height: 28, pixels }, qos)
          ).via;
        },
        { ...qos },
      );
      expect(['local', 'peer', 'relay']).toContain(r);
    }
  }
  const stroke = new Uint8Array(784);
  for (let j = 300; j < 500; j += 3) stroke[j] = 255;
  const bytes = encode({
    input: { width: 28, height: 28, pixels: stroke },
    qos: { accuracy: 0.95 },
  });
  for (let k = 0; k < 10; k++) {
    const res = await fetch(`${relay.url}/api/call/digits/classify`, {
      method: 'POST',
      headers: { 'content-type': 'application/msgpack' },
      body: Buffer.from(bytes),
    });
    expect(res.status, await res.clone().text()).toBe(200);
  }
  // The console polls once a second: wait until it shows the HTTP calls' decisions. (The tabs'
  // calls may make none: once the fog is approved it adopts the dews, which offer it their
  // misses before they ask the relay.)
  const httpDecisions = page
    .locator('#decisions tbody tr')
    .filter({ hasText: 'digits/classify' })
    .filter({ hasText: 'HTTP' });
  await expect.poll(() => httpDecisions.count()).toBeGreaterThanOrEqual(10);
  await expect(page.locator('#latency-plot canvas')).toHaveCount(1);
  await expect(page.locator('#distribution-plot canvas')).toHaveCount(1);
  await expect(page.locator('#latency .u-legend')).toContainText('digits/classify/large');
  // The nodes that ran classify report its Logic workers (their pools grew from none): the
  // workers panel plots them and lists the pool.
  await expect(page.locator('#workers-chart canvas')).toHaveCount(1);
  await expect(page.locator('#workers td.now').first()).toContainText(/digits\/classify: [1-9]/);
  await expect(page.locator('#workers td.grows').first()).toContainText(/[1-9]/);
  // The context store: keys with scope and expiry, never their values.
  await fetch(`${relay.url}/api/context/digits/last-digit`, {
    method: 'PUT',
    headers: { ...adminHeaders(), 'content-type': 'application/json' },
    body: JSON.stringify({ value: 'the value stays hidden', ttlMs: 60_000 }),
  });
  await expect(page.locator('#context')).toContainText('last-digit');
  await expect(page.locator('#context')).toContainText(/in \d+\.\d s/);
  await expect(page.locator('#context')).not.toContainText('the value stays hidden');
  // How changes went out, and each node's own store (keys and bytes; evictions when full).
  await expect(page.locator('#context .fanout')).toContainText(/Changes sent: \d+ straight/);
  await expect(page.locator('#nodes td.context').first()).toContainText(/\d+ keys · \d/);
  await shot(page, info, 'admin-console');
  await context.close();
  for (const t of [fog, ...dews]) await t.page.context().close();
});
