// A/B of the executor and the tab-to-tab hop between two builds of the web app, alternated in one
// run so machine noise falls on both alike. Each build is served by its own relay (in this
// process); rounds alternate A, B, A, B... and medians are taken over all rounds of a build.
//   npx tsx tests/bench/exec-ab.ts <webRootA> <webRootB> [rounds] [runs]
// BENCH_PROFILE=dir writes one CPU profile (.cpuprofile) per build of the calling tab.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type Browser, chromium } from 'playwright-core';
import { chromiumArgs, chromiumPath } from '../../playwright.config';
import { testBundles } from '../apps';
import { inProcessRelay } from '../relay-process';
import { hopCosts } from './hops';

const [rootA, rootB] = process.argv.slice(2);
const rounds = Number(process.argv[4] ?? 3);
const runs = Number(process.argv[5] ?? 100);
if (!rootA || !rootB) throw new Error('usage: exec-ab.ts <webRootA> <webRootB> [rounds] [runs]');

async function relayFor(webRoot: string) {
  const r = await inProcessRelay({ webRoot });
  for (const b of await testBundles()) await r.relay.deploy(b);
  await r.relay.deploy(new Uint8Array(readFileSync('dist/apps/digits.brume')));
  return r;
}

/** digits classify in one tab: the executor's call vs onnxruntime's run() inside it. */
async function executor(browser: Browser, url: string, profile?: string) {
  const context = await browser.newContext();
  try {
    const page = await context.newPage();
    // tsx (esbuild keepNames) wraps functions in __name(); the page needs it to run them.
    await page.addInitScript('globalThis.__name = (f) => f');
    await page.goto(url);
    await page.evaluate(async () => {
      await window.brume.ready;
      await window.brumeDebug.runtime.warm('digits');
    });
    const cdp = profile ? await context.newCDPSession(page) : undefined;
    if (cdp) {
      await cdp.send('Profiler.enable');
      await cdp.send('Profiler.setSamplingInterval', { interval: 50 });
      await cdp.send('Profiler.start');
    }
    const r = await page.evaluate(async (runs) => {
      const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
      const pixels = new Uint8Array(28 * 28);
      for (let i = 300; i < 500; i += 3) pixels[i] = 255;
      const input = { width: 28, height: 28, pixels };
      const rt = window.brumeDebug.runtime;
      const call = () => rt.call('digits', 'classify', input, {}, { pin: { model: 'large' } });
      for (let i = 0; i < 30; i++) await call();
      const total: number[] = [];
      const engine: number[] = [];
      const fabric: number[] = [];
      for (let i = 0; i < runs; i++) {
        const r = await call();
        total.push(r.ms);
        engine.push(r.trace.find((t) => t.kind === 'model')!.engineMs!);
        const t0 = performance.now();
        await window.brume.invoke('digits', 'classify', input, {}, { pin: { model: 'large' } });
        fabric.push(performance.now() - t0);
      }
      return { callMs: med(total), engineMs: med(engine), fabricMs: med(fabric) };
    }, runs);
    if (cdp && profile) {
      const { profile: p } = await cdp.send('Profiler.stop');
      writeFileSync(profile, JSON.stringify(p));
    }
    return r;
  } finally {
    await context.close();
  }
}

const builds = { A: await relayFor(rootA), B: await relayFor(rootB) };
const browser = await chromium.launch({ executablePath: chromiumPath, args: chromiumArgs });
const rtc = Boolean(process.env.BRUME_NETNS);
const seen: Record<string, Record<string, number[]>> = { A: {}, B: {} };
const add = (b: string, k: string, v: number) => {
  seen[b]![k] ??= [];
  seen[b]![k]!.push(v);
};
try {
  for (let round = 0; round < rounds; round++) {
    for (const b of round % 2 ? (['B', 'A'] as const) : (['A', 'B'] as const)) {
      const url = builds[b].relay.url;
      const dir = process.env.BENCH_PROFILE;
      const e = await executor(
        browser,
        url,
        dir && round === 0 ? join(dir, `${b}.cpuprofile`) : undefined,
      );
      add(b, 'digits call (ms)', e.callMs);
      add(b, 'digits engine (ms)', e.engineMs);
      add(b, 'digits added (ms)', e.callMs - e.engineMs);
      add(b, 'digits via brume.invoke (ms)', e.fabricMs);
      console.log(round, b, JSON.stringify(e));
      for (const viaRtc of rtc ? [true, false] : [false]) {
        const h = await hopCosts(browser, url, runs, viaRtc);
        console.log(round, b, viaRtc ? 'rtc' : 'relay', JSON.stringify(h));
        for (const [name, m] of Object.entries(h)) {
          const path = viaRtc ? 'rtc' : 'relay';
          if ('hopMs' in m)
            add(b, `${name} hop − runtime, ${path} (ms)`, Number(m.hopMs) - Number(m.runtimeMs));
          if ('mbPerS' in m) add(b, `${name} ${path} (MB/s)`, Number(m.mbPerS));
        }
      }
    }
  }
} finally {
  await browser.close();
}
const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
console.log(
  `A = ${rootA}, B = ${rootB}; ${rounds} rounds alternated, ${runs} runs each; medians of round medians`,
);
console.table(
  Object.keys(seen.A!).map((k) => {
    const a = med(seen.A![k]!);
    const b = med(seen.B![k]!);
    return { figure: k, A: a.toFixed(3), B: b.toFixed(3), 'B/A': (b / a).toFixed(2) };
  }),
);
// The in-process relays may hold sockets of closed tabs open for a while: do not wait on them.
process.exit(0);
