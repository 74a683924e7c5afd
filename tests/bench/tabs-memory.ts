/**
 * Memory of 1 and 4 tabs of one browser profile running the digits app, with the model runner
 * shared by the tabs (one SharedWorker) and not (`?sharedModels=0`: a worker per tab). Chromium's
 * memory is read from /proc: Pss (proportional set size, so pages shared between processes are
 * counted once in a total) and Rss of the browser process and every process under it, from
 * smaps_rollup. Each figure is taken in a fresh browser after every tab has loaded both variants
 * and answered 20 calls.
 * @example const rows = await tabsMemory(relay.url); console.table(rows);
 */
import { readdirSync, readFileSync } from 'node:fs';
import { chromium, type Page } from 'playwright-core';
import { chromiumArgs, chromiumPath } from '../../playwright.config';

export interface TabsMemoryRow {
  tabs: number;
  shared: boolean;
  /** Sum over Chromium's renderer processes (tabs, their workers, the shared worker). */
  rendererPssMiB: number;
  /** Sum over every Chromium process (browser, GPU, utility, renderers). */
  allPssMiB: number;
  rendererRssMiB: number;
  allRssMiB: number;
  /** Model sessions the runners made, all tabs together (2 variants per runner). */
  modelLoads: number;
}

interface Proc {
  pid: number;
  ppid: number;
  cmdline: string;
}

function processes(): Proc[] {
  const out: Proc[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      // The command name may hold spaces and parentheses: the fields follow the last ')'.
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      const cmdline = readFileSync(`/proc/${d}/cmdline`, 'utf8').replaceAll('\0', ' ');
      out.push({ pid: Number(d), ppid, cmdline });
    } catch {
      // The process ended while it was read.
    }
  }
  return out;
}

/** Pss and Rss in KiB of one process (0 when it ended meanwhile). */
function memoryOf(pid: number): { pss: number; rss: number } {
  try {
    const text = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
    const field = (name: string) =>
      Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? 0);
    return { pss: field('Pss'), rss: field('Rss') };
  } catch {
    return { pss: 0, rss: 0 };
  }
}

/** The browser process carrying `marker` on its command line, and every process under it. */
function chromiumMemory(marker: string) {
  const all = processes();
  const root = all.find((p) => p.cmdline.includes(marker) && !p.cmdline.includes('--type='));
  if (!root) throw new Error('the benchmark browser process was not found in /proc');
  const tree = new Set([root.pid]);
  for (let grew = true; grew; ) {
    grew = false;
    for (const p of all) {
      if (!tree.has(p.pid) && tree.has(p.ppid)) {
        tree.add(p.pid);
        grew = true;
      }
    }
  }
  const sum = { rendererPss: 0, rendererRss: 0, allPss: 0, allRss: 0 };
  for (const p of all) {
    if (!tree.has(p.pid)) continue;
    const m = memoryOf(p.pid);
    sum.allPss += m.pss;
    sum.allRss += m.rss;
    if (p.cmdline.includes('--type=renderer')) {
      sum.rendererPss += m.pss;
      sum.rendererRss += m.rss;
    }
  }
  return sum;
}

async function useDigits(page: Page): Promise<void> {
  await page.evaluate(async () => {
    await window.brume.ready;
    await window.brumeDebug.runtime.warm('digits');
    const input = { width: 28, height: 28, pixels: new Uint8Array(784).fill(255, 300, 480) };
    for (let i = 0; i < 20; i++) await window.brumeDebug.runtime.call('digits', 'classify', input);
  });
}

/** One scenario in a fresh browser: `tabs` tabs of one context, the runner shared or not. */
async function scenario(url: string, tabs: number, shared: boolean): Promise<TabsMemoryRow> {
  const marker = `--brume-bench-memory=${crypto.randomUUID()}`;
  const browser = await chromium.launch({
    executablePath: chromiumPath,
    args: [...chromiumArgs, marker],
  });
  try {
    const context = await browser.newContext();
    // tsx (esbuild keepNames) wraps functions in __name(); the pages need it to run ours.
    await context.addInitScript('globalThis.__name = (f) => f');
    const pages: Page[] = [];
    for (let i = 0; i < tabs; i++) {
      const page = await context.newPage();
      await page.goto(shared ? url : `${url}/?sharedModels=0`);
      pages.push(page);
    }
    await Promise.all(pages.map(useDigits));
    const runners = await Promise.all(
      pages.map((p) => p.evaluate(() => window.brumeDebug.models.info!())),
    );
    // A shared runner is counted once (every tab reads the same one).
    const modelLoads = shared ? runners[0]!.loads : runners.reduce((a, r) => a + r.loads, 0);
    const m = chromiumMemory(marker);
    const mib = (kib: number) => Math.round((kib / 1024) * 10) / 10;
    return {
      tabs,
      shared,
      rendererPssMiB: mib(m.rendererPss),
      allPssMiB: mib(m.allPss),
      rendererRssMiB: mib(m.rendererRss),
      allRssMiB: mib(m.allRss),
      modelLoads,
    };
  } finally {
    await browser.close();
  }
}

/** 1 and 4 tabs, shared and not, alternated so machine noise falls on both alike. */
export async function tabsMemory(url: string, counts: number[] = [1, 4]): Promise<TabsMemoryRow[]> {
  const rows: TabsMemoryRow[] = [];
  for (const tabs of counts)
    for (const shared of [false, true]) rows.push(await scenario(url, tabs, shared));
  return rows;
}
