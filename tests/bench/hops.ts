// What a call pays to cross the fabric between tabs, and what the admin console costs with many
// nodes connected.
import type { Browser } from 'playwright-core';
import { joinMany } from './decisions';

/**
 * One round trip through the fabric, measured in tab `from`: the runtime alone, the fabric's
 * local-first path, and a call pinned (privacy = node id) to another tab. The '4 MB echo' entry
 * sends 4 MiB out and back: `mbPerS` is the 8 MiB that cross the link over the time the hop adds
 * to the same echo run locally (fewer runs: each moves megabytes).
 */
export async function hopCosts(browser: Browser, url: string, runs: number, rtc: boolean) {
  const noRtc = `for (const n of ['RTCPeerConnection', 'webkitRTCPeerConnection'])
    Object.defineProperty(globalThis, n, { value: class { constructor() { throw new Error('off'); } }, configurable: true });`;
  const open = async () => {
    const context = await browser.newContext();
    await context.grantPermissions(['microphone', 'camera'], { origin: url });
    const page = await context.newPage();
    // tsx (esbuild keepNames) wraps functions in __name(); the page needs it to run them.
    await page.addInitScript('globalThis.__name = (f) => f');
    if (!rtc) await page.addInitScript(noRtc);
    await page.goto(url);
    const id = await page.evaluate(async () => {
      await window.brume.ready;
      const f = await window.brumeDebug.fabric;
      await f.whenJoined(20_000);
      await window.brumeDebug.runtime.warm('digits');
      return f.nodeId;
    });
    return { page, id, context };
  };
  const from = await open();
  const to = await open();
  try {
    return await from.page.evaluate(
      async ({ to, runs }) => {
        const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
        const pixels = new Uint8Array(28 * 28).fill(0);
        for (let i = 300; i < 500; i += 3) pixels[i] = 255;
        const digit = { width: 28, height: 28, pixels };
        const echo = 'x'.repeat(64);
        const time = async (f: () => Promise<unknown>, n = runs) => {
          for (let i = 0; i < Math.min(20, n); i++) await f();
          const xs: number[] = [];
          for (let i = 0; i < n; i++) {
            const t0 = performance.now();
            await f();
            xs.push(performance.now() - t0);
          }
          return med(xs);
        };
        const b = window.brume;
        const out: Record<string, Record<string, number | string>> = {};
        for (const [name, app, service, input] of [
          ['echo (64 B)', 'hostile', 'echo', echo],
          ['digits classify', 'digits', 'classify', digit],
        ] as const) {
          let via = '';
          out[name] = {
            runtimeMs: await time(() => window.brumeDebug.runtime.call(app, service, input)),
            fabricLocalMs: await time(() => b.invoke(app, service, input)),
            hopMs: await time(async () => {
              via = (await b.invoke(app, service, input, { privacy: to })).via;
            }),
            via,
          };
        }
        // Incompressible and every byte checked once, so a transfer that mangles data shows.
        const big = new Uint8Array(4 * 1024 * 1024);
        for (let i = 0; i < big.length; i++) big[i] = (i * 2654435761) >>> 24;
        const same = (v: unknown) => {
          const u = v as Uint8Array;
          if (!(u instanceof Uint8Array) || u.length !== big.length) return false;
          for (let i = 0; i < u.length; i += 4099) if (u[i] !== big[i]) return false;
          return true;
        };
        const n = Math.max(5, Math.round(runs / 20));
        let via = '';
        const localMs = await time(() => window.brumeDebug.runtime.call('hostile', 'echo', big), n);
        const hopMs = await time(async () => {
          const r = await b.invoke('hostile', 'echo', big, { privacy: to });
          if (!same(r.value)) throw new Error('the 4 MB echo came back changed');
          via = r.via;
        }, n);
        out['4 MB echo'] = {
          runtimeMs: localMs,
          fabricLocalMs: localMs,
          hopMs,
          via,
          mbPerS: (2 * big.length) / 1e6 / ((hopMs - localMs) / 1000),
        };
        return out;
      },
      { to: to.id, runs },
    );
  } finally {
    await from.context.close();
    await to.context.close();
  }
}

/**
 * The admin console with `n` nodes connected: time to the first full node table, and how much of
 * each second the page's main thread then spends (it polls and redraws once a second).
 */
export async function consoleCost(
  browser: Browser,
  url: string,
  token: string,
  wsUrl: string,
  n: number,
) {
  const nodes = await joinMany(wsUrl, n);
  const context = await browser.newContext();
  try {
    const page = await context.newPage();
    await page.addInitScript((t) => sessionStorage.setItem('brume-admin-token', t), token);
    const t0 = performance.now();
    await page.goto(`${url}/admin`);
    await page.waitForFunction((n) => document.querySelectorAll('#nodes tbody tr').length >= n, n, {
      timeout: 60_000,
    });
    const firstMs = performance.now() - t0;
    const busy = await page.evaluate(
      () =>
        new Promise<number>((resolve) => {
          // Long tasks (over 50 ms) are what a person feels; count their share of 5 s.
          let total = 0;
          new PerformanceObserver((list) => {
            for (const e of list.getEntries()) total += e.duration;
          }).observe({ type: 'longtask' });
          setTimeout(() => resolve(total / 5000), 5000);
        }),
    );
    return { nodes: n, firstTableMs: firstMs, longTaskShare: busy };
  } finally {
    await context.close();
    for (const node of nodes) node.ws.close();
  }
}
