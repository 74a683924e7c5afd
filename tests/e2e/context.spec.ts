// The context store with real tabs: a write in one tab reaches another; a reload keeps it; expiry
// reads as such everywhere; node-scoped and device-private values stay where they belong; a value
// private to a tab's key reaches that tab only and rests sealed at the relay; a relay killed with
// SIGKILL loses no write it acknowledged; a tab cut off converges when it returns.
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { Browser, BrowserContext, CDPSession, Page } from '@playwright/test';
import type { NodeRecord } from '../../core/api';
import { startProxy, startRelay } from '../relay-process';
import { deployApp, expect, joinTab, test, writeHeaders } from './fixtures';

const contexts: BrowserContext[] = [];
test.afterEach(async () => {
  for (const c of contexts.splice(0)) await c.close();
});

const tab = async (browser: Browser, url: string, before?: (page: Page) => Promise<void>) =>
  (await joinTab(browser, url, contexts, { before })).page;

test('context: shared, persisted, expiring, scoped, private, and durable at the relay', async ({
  browser,
  relay,
}) => {
  await deployApp(relay, 'demo');
  const a = await tab(browser, relay.url);
  const b = await tab(browser, relay.url);

  // B watches; A writes; B sees the change once, and reads it.
  await b.evaluate(() => {
    (globalThis as { seen?: unknown[] }).seen = [];
    window.brume.context('demo').watch('greet', (key, read) => {
      (globalThis as unknown as { seen: unknown[] }).seen.push([key, read]);
    });
  });
  await a.evaluate(() => window.brume.context('demo').put('greeting', { text: 'hello' }));
  await expect
    .poll(() => b.evaluate(() => (globalThis as { seen?: unknown[] }).seen))
    .toEqual([['greeting', { value: { text: 'hello' } }]]);

  // Over HTTP too, and the other way.
  const http = await (await fetch(`${relay.url}/api/context/demo/greeting`)).json();
  expect(http).toMatchObject({ value: { text: 'hello' } });
  await fetch(`${relay.url}/api/context/demo/short`, {
    method: 'PUT',
    headers: writeHeaders(relay),
    body: JSON.stringify({ value: 42, ttlMs: 800 }),
  });
  await expect
    .poll(() => a.evaluate(() => window.brume.context('demo').get('short')))
    .toMatchObject({ value: 42 });
  await expect
    .poll(() => a.evaluate(() => window.brume.context('demo').get('short')))
    .toEqual({ expired: true });
  expect((await fetch(`${relay.url}/api/context/demo/short`)).status).toBe(410);

  // Node scope stays with its node; device privacy never leaves it; limits are clear errors.
  await a.evaluate(async () => {
    const ctx = window.brume.context('demo');
    await ctx.put('mine', 1, { scope: 'node' });
    await ctx.put('secret', 's3cr3t', { privacy: ['device'] });
  });
  expect(await a.evaluate(() => window.brume.context('demo').get('secret'))).toEqual({
    value: 's3cr3t',
  });
  // A sentinel instead of a pause: a public write after the private ones; once b has it, anything
  // the relay would have sent b before it has arrived too.
  await a.evaluate(() => window.brume.context('demo').put('sentinel', 1));
  await expect
    .poll(() => b.evaluate(() => window.brume.context('demo').get('sentinel')))
    .toEqual({ value: 1 });
  expect(await b.evaluate(() => window.brume.context('demo').get('mine', 'node'))).toBeUndefined();
  expect(await b.evaluate(() => window.brume.context('demo').get('secret'))).toBeUndefined();
  expect((await fetch(`${relay.url}/api/context/demo/secret`)).status).toBe(404);
  const tooBig = await a.evaluate(() =>
    window.brume
      .context('demo')
      .put('big', 'x'.repeat(70_000))
      .then(
        () => 'stored',
        (e: { code?: string; message: string }) => `${e.code}: ${e.message}`,
      ),
  );
  expect(tooBig).toMatch(/^E_LIMIT: .*over the limit of 65536/);

  // A reload keeps the tab's context (IndexedDB), before it has even rejoined.
  await b.reload();
  const kept = await b.evaluate(() => window.brume.context('demo').get('greeting'));
  expect(kept).toEqual({ value: { text: 'hello' } });
});

/** Every record of this tab's context store in IndexedDB, bytes as latin1 text. */
function storedContext(page: Page): Promise<string> {
  return page.evaluate(async () => {
    const id = (await window.brumeDebug.fabric).nodeId;
    const db = await new Promise<IDBDatabase>((resolve, reject) => {
      const r = indexedDB.open(`brume-context-${id}`);
      r.onsuccess = () => resolve(r.result);
      r.onerror = () => reject(r.error);
    });
    const all = await new Promise<unknown[]>((resolve, reject) => {
      const r = db.transaction('ops').objectStore('ops').getAll();
      r.onsuccess = () => resolve(r.result);
      r.onerror = () => reject(r.error);
    });
    db.close();
    return JSON.stringify(all, (_k, v) =>
      v instanceof Uint8Array ? { bytes: String.fromCharCode(...v) } : v,
    );
  });
}

test('a private value reaches only its trusted tab: sealed at the relay, absent from a stranger', async ({
  browser,
  relay,
}) => {
  const [writer, trusted, stranger] = await Promise.all([
    tab(browser, relay.url),
    tab(browser, relay.url),
    tab(browser, relay.url),
  ]);
  const key = await trusted.evaluate(async () => (await window.brumeDebug.fabric).publicKey);
  for (const p of [trusted, stranger]) {
    await p.evaluate(() => {
      (globalThis as { seen?: unknown[] }).seen = [];
      window.brume.context('vault').watch('pin', (k, read) => {
        (globalThis as unknown as { seen: unknown[] }).seen.push([k, read ?? null]);
      });
    });
  }
  const secret = 'PLAINTEXT-SECRET-91c2';
  await writer.evaluate(
    ([secret, key]) => window.brume.context('vault').put('pin', { secret }, { privacy: [key] }),
    [secret, key] as const,
  );
  const seen = (p: Page) => p.evaluate(() => (globalThis as { seen?: unknown[] }).seen);
  await expect.poll(() => seen(trusted)).toEqual([['pin', { value: { secret } }]]);
  // The stranger learns that the key changed, and nothing it holds can be read.
  await expect.poll(() => seen(stranger)).toEqual([['pin', null]]);
  expect(await stranger.evaluate(() => window.brume.context('vault').get('pin'))).toBeUndefined();
  const strangerDb = await storedContext(stranger);
  expect(strangerDb).toContain('"privacy"');
  expect(strangerDb).not.toContain(secret);
  expect(strangerDb).not.toContain('"sealed"');
  // The trusted tab keeps the envelope in IndexedDB, never the plaintext; a reload opens it again.
  const trustedDb = await storedContext(trusted);
  expect(trustedDb).toContain('"sealed"');
  expect(trustedDb).not.toContain(secret);
  await trusted.reload();
  expect(await trusted.evaluate(() => window.brume.context('vault').get('pin'))).toEqual({
    value: { secret },
  });
  // At the relay: the envelope on disk, no plaintext, and HTTP will not serve it.
  const log = readFileSync(join(relay.dataDir, 'context.log'));
  expect(log.includes(secret)).toBe(false);
  expect(log.includes('pin')).toBe(true);
  expect((await fetch(`${relay.url}/api/context/vault/pin`)).status).toBe(403);
});

test('a tab whose storage is full evicts expired entries, then its least recently used keys', async ({
  browser,
  relay,
}) => {
  // Chromium's own quota for this origin, set before the page stores anything: IndexedDB throws
  // QuotaExceededError for real once the writes below pass it.
  const origin = new URL(relay.url).origin;
  let cdp: CDPSession | undefined;
  const page = await tab(browser, relay.url, async (p) => {
    cdp = await p.context().newCDPSession(p);
    await cdp.send('Storage.overrideQuotaForOrigin', { origin, quotaSize: 400_000 });
  });
  await page.evaluate(async () => {
    const ctx = window.brume.context('quota');
    // Random bytes: IndexedDB compresses, so repeated characters would hardly use any quota.
    const noise = () => crypto.getRandomValues(new Uint8Array(20_000));
    for (let i = 0; i < 5; i++) await ctx.put(`short-${i}`, noise(), { ttlMs: 200 });
    await ctx.put('first', noise(), { scope: 'node' });
  });
  await expect
    .poll(() => page.evaluate(() => window.brume.context('quota').get('short-4')))
    .toEqual({ expired: true });
  const outcome = await page.evaluate(async () => {
    const ctx = window.brume.context('quota');
    const refused: string[] = [];
    for (let i = 0; i < 30; i++) {
      const value = crypto.getRandomValues(new Uint8Array(20_000));
      await ctx.put(`mine-${i}`, value, { scope: 'node' }).catch((e: Error) => {
        refused.push(e.message);
      });
    }
    return refused;
  });
  expect(outcome).toEqual([]);
  const report = async () => {
    const nodes = (await (
      await fetch(`${relay.url}/api/nodes`, { headers: { authorization: `Bearer ${relay.token}` } })
    ).json()) as NodeRecord[];
    const id = await page.evaluate(async () => (await window.brumeDebug.fabric).nodeId);
    return nodes.find((n) => n.id === id)?.context;
  };
  // The expired ones went first, then the oldest of the node's own. Chromium frees the space of
  // deleted records only later, so some writes live in memory only (the relay has them): none is
  // refused while online. The relay and its console hear of it with the next heartbeat.
  await expect.poll(async () => (await report())?.evicted.expired, { timeout: 10_000 }).toBe(5);
  const storage = (await report())!;
  expect(storage.evicted.lru).toBeGreaterThan(0);
  expect(storage.lastFull).toBeDefined();
  // After a reload the least recently used key is gone from this tab; the newest is back, sent
  // again by the relay because the stored cursor stayed where storage was complete.
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('console', (m) => errors.push(m.text()));
  await page.reload();
  await page
    .waitForFunction(() => window.brume, undefined, { timeout: 20_000 })
    .catch(() => {
      throw new Error(`the page did not start after a reload: ${errors.join('; ')}`);
    });
  await expect
    .poll(() =>
      page.evaluate(async () => {
        const newest = await window.brume.context('quota').get('mine-29', 'node');
        return newest && 'value' in newest && (newest.value as Uint8Array).length;
      }),
    )
    .toBe(20_000);
  expect(await page.evaluate(() => window.brume.context('quota').get('first', 'node'))).toBe(
    undefined,
  );
  await cdp?.send('Storage.overrideQuotaForOrigin', { origin });
});

test('a relay killed with SIGKILL loses no acknowledged context write', async () => {
  const first = await startRelay({ args: ['--no-cloud'] });
  await deployApp(first, 'demo');
  const put = async (url: string, key: string, value: unknown) =>
    fetch(`${url}/api/context/demo/${key}`, {
      method: 'PUT',
      headers: writeHeaders(first),
      body: JSON.stringify({ value }),
    });
  const acked: number[] = [];
  for (let i = 0; i < 50; i++) if ((await put(first.url, `k${i}`, i)).ok) acked.push(i);
  first.child.kill('SIGKILL');
  await new Promise((r) => first.child.once('exit', r));
  const second = await startRelay({ dataDir: first.dataDir, args: ['--no-cloud'] });
  try {
    for (const i of acked) {
      const res = await fetch(`${second.url}/api/context/demo/k${i}`);
      expect(res.status).toBe(200);
      expect(await res.json()).toMatchObject({ value: i });
    }
    expect(acked).toHaveLength(50);
  } finally {
    await second.stop();
    rmSync(first.dataDir, { recursive: true, force: true });
  }
});

test('a tab cut off from the relay reads until expiry, queues writes, and converges on reconnect', async ({
  browser,
}) => {
  const proxy = await startProxy();
  const relay = await startRelay({
    args: ['--no-cloud', '--origin', proxy.url, '--allow-host', new URL(proxy.url).host],
  });
  proxy.target = relay.url;
  try {
    const cut = await tab(browser, proxy.url);
    const other = await tab(browser, relay.url);
    // Long enough that a busy machine still notices the cut before the lease expires.
    await other.evaluate(() => window.brume.context('demo').put('lease', 'held', { ttlMs: 8000 }));
    await expect
      .poll(() => cut.evaluate(() => window.brume.context('demo').get('lease')))
      .toMatchObject({ value: 'held' });
    proxy.cut();
    await cut.evaluate(async () => {
      const f = await window.brumeDebug.fabric;
      while (f.status === 'joined') await new Promise((r) => setTimeout(r, 50));
    });
    // Offline: the local copy serves reads while valid, then says it expired.
    expect(await cut.evaluate(() => window.brume.context('demo').get('lease'))).toMatchObject({
      value: 'held',
    });
    await cut.evaluate(async () => {
      const ctx = window.brume.context('demo');
      for (let i = 0; i < 5; i++) await ctx.put(`offline-${i}`, i);
    });
    await expect
      .poll(() => cut.evaluate(() => window.brume.context('demo').get('lease')))
      .toEqual({ expired: true });
    expect(
      await other.evaluate(() => window.brume.context('demo').get('offline-0')),
    ).toBeUndefined();

    // Back: the outbox replays, the other tab gets every write, the relay holds each once.
    proxy.heal();
    await cut.evaluate(async () => (await window.brumeDebug.fabric).whenJoined(20_000));
    for (let i = 0; i < 5; i++) {
      await expect
        .poll(() => other.evaluate((k) => window.brume.context('demo').get(k), `offline-${i}`))
        .toEqual({ value: i });
    }
    // A second reconnect replays nothing new (the outbox was acknowledged).
    proxy.cut();
    proxy.heal();
    await cut.evaluate(async () => (await window.brumeDebug.fabric).whenJoined(20_000));
    const log = (await (await fetch(`${relay.url}/api/context/demo/offline-4`)).json()) as {
      value: number;
    };
    expect(log.value).toBe(4);
  } finally {
    await proxy.close();
    await relay.stop();
    rmSync(relay.dataDir, { recursive: true, force: true });
  }
});
