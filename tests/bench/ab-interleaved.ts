// A/B of two builds of the web app (the executor in a tab, and one hop between tabs), each served
// by its own relay in this process; measurements interleave A, B, B, A... one batch at a time, so
// a machine whose load changes by the second weighs on both alike. Needs the loopback namespace:
//   BRUME_NETNS=1 unshare -n sh -c 'ip link set lo up && exec "$@"' netns \
//     npx tsx tests/bench/ab-interleaved.ts <webRootA> <webRootB> [rounds]
// A side may add a page query after `?` (e.g. `dist/web?sharedModels=0` to compare the tab's own
// model runner with the shared one on one build); AB_ONLY=<substring> runs the figures named so.
import { readFileSync } from 'node:fs';
import { chromium, type Page } from 'playwright-core';
import { chromiumArgs, chromiumPath } from '../../playwright.config';
import { testBundles } from '../apps';
import { inProcessRelay } from '../relay-process';

const roots = { A: process.argv[2], B: process.argv[3] };
if (!roots.A || !roots.B)
  throw new Error('usage: ab-interleaved.ts <webRootA> <webRootB> [rounds]');
const n = Number(process.argv[4] ?? 15);
const browser = await chromium.launch({ executablePath: chromiumPath, args: chromiumArgs });
async function side(arg: string) {
  const [root, query] = arg.split('?');
  const r = await inProcessRelay({ webRoot: root! });
  for (const b of await testBundles()) await r.relay.deploy(b);
  await r.relay.deploy(new Uint8Array(readFileSync('dist/apps/digits.brume')));
  const open = async () => {
    const context = await browser.newContext();
    await context.grantPermissions(['microphone', 'camera'], { origin: r.relay.url });
    const page = await context.newPage();
    await page.addInitScript('globalThis.__name = (f) => f');
    await page.goto(query ? `${r.relay.url}/?${query}` : r.relay.url);
    const id = await page.evaluate(async () => {
      await window.brume.ready;
      const f = await window.brumeDebug.fabric;
      await f.whenJoined(20_000);
      await window.brumeDebug.runtime.warm('digits');
      const big = new Uint8Array(4 * 1024 * 1024);
      for (let i = 0; i < big.length; i++) big[i] = (i * 2654435761) >>> 24;
      (globalThis as Record<string, unknown>).big = big;
      return f.nodeId;
    });
    return { page, id };
  };
  return { from: await open(), to: await open() };
}
const s = { A: await side(roots.A), B: await side(roots.B) };
// Each figure: a median per batch (20 calls, or one 4 MiB echo), then the median over rounds;
// the first two rounds warm up.
const tasks = {
  'digits added (ms), 20 calls each': (p: Page) =>
    p.evaluate(async () => {
      const pixels = new Uint8Array(784);
      for (let i = 300; i < 500; i += 3) pixels[i] = 255;
      const rt = window.brumeDebug.runtime;
      const xs: number[] = [];
      for (let i = 0; i < 20; i++) {
        const r = await rt.call(
          'digits',
          'classify',
          { width: 28, height: 28, pixels },
          {},
          { pin: { model: 'large' } },
        );
        xs.push(r.ms - r.trace.find((t) => t.kind === 'model')!.engineMs!);
      }
      return xs.sort((a, b) => a - b)[10]!;
    }),
  'echo 64 B hop (ms), 20 calls each': (p: Page, to: string) =>
    p.evaluate(async (to) => {
      const xs: number[] = [];
      for (let i = 0; i < 20; i++) {
        const t0 = performance.now();
        await window.brume.invoke('hostile', 'echo', 'x'.repeat(64), { privacy: to });
        xs.push(performance.now() - t0);
      }
      return xs.sort((a, b) => a - b)[10]!;
    }, to),
  '4 MiB echo over WebRTC (ms)': (p: Page, to: string) =>
    p.evaluate(async (to) => {
      const big = (globalThis as Record<string, unknown>).big as Uint8Array;
      const t0 = performance.now();
      const r = await window.brume.invoke('hostile', 'echo', big, { privacy: to });
      if (r.via !== 'peer') throw new Error(r.via);
      return performance.now() - t0;
    }, to),
};
const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
for (const [name, f] of Object.entries(tasks)) {
  if (process.env.AB_ONLY && !name.includes(process.env.AB_ONLY)) continue;
  const got: Record<string, number[]> = { A: [], B: [] };
  for (let i = 0; i < n + 2; i++) {
    for (const b of i % 2 ? (['B', 'A'] as const) : (['A', 'B'] as const)) {
      const v = await f(s[b].from.page, s[b].to.id);
      if (i >= 2) got[b]!.push(v);
    }
  }
  const a = med(got.A!),
    b = med(got.B!);
  console.log(`${name}: A ${a.toFixed(3)}  B ${b.toFixed(3)}  B/A ${(b / a).toFixed(2)}  (n=${n})`);
}
await browser.close();
process.exit(0);
