// Backends chosen by measurement, and one model runner for every same-origin tab, in real
// Chromium (worker/ort-runner.ts, worker/model-shared.ts, web/platform.ts).
import { type Browser, chromium, type Page } from '@playwright/test';
import { chromiumArgs, chromiumPath } from '../../playwright.config';
import { expect, openNode, test } from './fixtures';

/** The model runner's account, as a tab reads it. */
const info = (page: Page) => page.evaluate(() => window.brumeDebug.models.info!());

/** Loads both digits variants on this tab's runner (the first use of each model). */
const warm = (page: Page) =>
  page.evaluate(async () => {
    await window.brume.ready;
    await window.brumeDebug.runtime.warm('digits');
  });

async function webgpuBrowser(): Promise<Browser> {
  return chromium.launch({
    executablePath: chromiumPath,
    args: [...chromiumArgs, '--enable-unsafe-webgpu'],
  });
}

test('with SwiftShader WebGPU present, digits is measured onto wasm and the choice is remembered', async ({
  relay,
}) => {
  const browser = await webgpuBrowser();
  try {
    const page = await browser.newPage();
    // This tab's own runner: a reload starts a fresh one, so only IndexedDB carries the choice.
    await openNode(page, `${relay.url}/?sharedModels=0`);
    await expect(page.locator('#node-backends')).toContainText('webgpu');
    await warm(page);
    const first = await info(page);
    expect(first.shared).toBe(false);
    expect(first.measurements).toBe(2);
    expect(first.models).toHaveLength(2);
    for (const m of first.models) {
      expect(m.backend).toBe('wasm');
      expect(m.choice?.how).toBe('measured');
      const { webgpu = [], wasm = [] } = m.choice!.samples;
      expect(webgpu.length).toBeGreaterThanOrEqual(3);
      expect(wasm.length).toBeGreaterThanOrEqual(3);
    }
    // The figures are the node's: both backends under their stats keys, the faster reported first.
    const described = await page.evaluate(() => window.brumeDebug.runtime.describe());
    for (const v of ['small', 'large'])
      for (const b of ['webgpu', 'wasm'])
        expect(described.stats[`digits/model/${v}@${b}`]?.count).toBeGreaterThanOrEqual(3);
    expect(described.backends[0]!.name).toBe('wasm');
    // The relay, which places by a node's first backend, hears of the new order in this session.
    const id = await page.evaluate(async () => (await window.brumeDebug.fabric).nodeId);
    await expect
      .poll(async () => {
        const res = await fetch(`${relay.url}/api/nodes`, {
          headers: { authorization: `Bearer ${relay.token}` },
        });
        const nodes = (await res.json()) as { id: string; backends: string[] }[];
        return nodes.find((n) => n.id === id)?.backends[0];
      })
      .toBe('wasm');

    await page.reload();
    await expect(page.locator('#node-state')).toHaveText('ready', { timeout: 30_000 });
    await warm(page);
    const again = await info(page);
    expect(again.measurements).toBe(0);
    for (const m of again.models) {
      expect(m.backend).toBe('wasm');
      expect(m.choice?.how).toBe('remembered');
    }
    // A call answers from wasm; a forced backend is still honoured.
    const ran = await page.evaluate(async () => {
      const input = { width: 28, height: 28, pixels: new Uint8Array(784).fill(255, 300, 480) };
      const plain = await window.brume.invoke('digits', 'classify', input);
      const forced = await window.brume.invoke(
        'digits',
        'classify',
        input,
        {},
        { backend: 'webgpu' },
      );
      return {
        plain: plain.trace.filter((t) => t.kind === 'model').map((t) => t.backend),
        forced: forced.trace.filter((t) => t.kind === 'model').map((t) => t.backend),
      };
    });
    expect(ran.plain).toEqual(['wasm']);
    expect(ran.forced).toEqual(['webgpu']);
    const forcedModel = (await info(page)).models.find((m) => m.key.endsWith('@webgpu'));
    expect(forcedModel?.choice?.how).toBe('forced');
  } finally {
    await browser.close();
  }
});

test('four tabs of one profile load the model once in the shared runner; closing one mid-call breaks none', async ({
  browser,
  relay,
}) => {
  const context = await browser.newContext();
  try {
    const pages: Page[] = [];
    for (let i = 0; i < 4; i++) {
      const page = await context.newPage();
      await openNode(page, relay.url);
      pages.push(page);
    }
    const call = (page: Page, n: number) =>
      page.evaluate(async (n) => {
        const input = { width: 28, height: 28, pixels: new Uint8Array(784).fill(255, 300, 480) };
        const out: number[] = [];
        for (let i = 0; i < n; i++) {
          const r = await window.brumeDebug.runtime.call(
            'digits',
            'classify',
            input,
            {},
            {
              pin: { model: 'large' },
            },
          );
          out.push((r.value as { digit: number }).digit);
        }
        return out;
      }, n);
    const answers = await Promise.all(pages.map((p) => call(p, 5)));
    for (const a of answers) expect(a).toHaveLength(5);
    const shared = await info(pages[0]!);
    expect(shared.shared).toBe(true);
    expect(shared.clients).toBeGreaterThanOrEqual(4);
    // Every tab asked for the models it runs; each was turned into a session once.
    expect(shared.loadCalls).toBeGreaterThanOrEqual(4 * shared.models.length);
    expect(shared.loads).toBe(shared.models.length);

    // Tab 0 is closed while its calls are in flight; the others go on being answered.
    const leaving = pages[0]!;
    await leaving.evaluate(() => {
      const input = { width: 28, height: 28, pixels: new Uint8Array(784).fill(255, 300, 480) };
      const w = window as { answered?: number };
      w.answered = 0;
      void (async () => {
        for (;;) {
          await window.brumeDebug.runtime.call(
            'digits',
            'classify',
            input,
            {},
            {
              pin: { model: 'large' },
            },
          );
          w.answered!++;
        }
      })();
    });
    // It closes in a loop of back-to-back calls: one is in the runner at almost any moment.
    await expect
      .poll(() => leaving.evaluate(() => (window as { answered?: number }).answered))
      .toBeGreaterThanOrEqual(10);
    await leaving.close();
    const after = await Promise.all(pages.slice(1).map((p) => call(p, 20)));
    for (const a of after) expect(a).toHaveLength(20);
    expect((await info(pages[1]!)).loads).toBe(shared.loads);
  } finally {
    await context.close();
  }
});

test('with sharedModels=0 each tab has its own runner', async ({ browser, relay }) => {
  const context = await browser.newContext();
  try {
    const a = await context.newPage();
    const b = await context.newPage();
    await openNode(a, `${relay.url}/?sharedModels=0`);
    await openNode(b, `${relay.url}/?sharedModels=0`);
    await warm(a);
    await warm(b);
    for (const p of [a, b]) {
      const i = await info(p);
      expect(i.shared).toBe(false);
      expect(i.clients).toBe(1);
      expect(i.loads).toBe(2);
    }
  } finally {
    await context.close();
  }
});
