// Asynchronous jobs (PROTOCOL.md §6.2): throughput and queue latency (submit → started →
// succeeded) with 1 and 4 tabs pulling from the relay's queue (no cloud node: tabs only), and the
// cost of a job over a synchronous HTTP call of the same work (the echo Logic) on one tab, both
// timed at the client: a call is one POST; a job is a POST, then the SSE watch until it succeeded.
// Run alone with small counts: `BENCH_JOBS=50 npx tsx tests/bench/jobs.ts`.
import { rmSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { type Browser, chromium } from 'playwright-core';
import { packBundle } from '../../core/manifest';
import { chromiumArgs, chromiumPath } from '../../playwright.config';
import { greetApp } from '../apps';
import { jobsApi, submitJob } from '../jobs-http';
import { deploy, type RelayProcess, startRelay } from '../relay-process';
import { until } from '../until';
import type { Section } from './report';

export interface JobsRow {
  tabs: number;
  jobs: number;
  /** Jobs succeeded per second, first submit to last finish. */
  jobsPerSecond: number;
  /** Per job, ms: submit → started (queue wait) and submit → succeeded; medians and p90s. */
  waitP50: number;
  waitP90: number;
  doneP50: number;
  doneP90: number;
}

export interface JobsBench {
  rows: JobsRow[];
  /** One at a time on one tab, ms at the client: a synchronous call vs a job (submit + watch). */
  callP50: number;
  jobP50: number;
  /** jobP50 / callP50. */
  jobOverCall: number;
}

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(p * s.length))] ?? Number.NaN;
};

async function openTabs(browser: Browser, url: string, n: number) {
  const contexts = [];
  for (let i = 0; i < n; i++) {
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(url);
    await page.evaluate(async () => {
      await window.brume.ready;
      await (await window.brumeDebug.fabric).whenJoined(20_000);
      await window.brume.call('greet', 'greet', 'warm', {}, { rpc: 'echo' });
    });
    contexts.push(context);
  }
  return contexts;
}

async function fabric(browser: Browser, tabs: number) {
  const relay = await startRelay({
    args: ['--no-cloud', '--max-jobs', '100000', '--call-rate', '1000000'],
  });
  const b = await greetApp('1.0.0');
  await deploy(relay, packBundle(b.manifest, b.files));
  const contexts = await openTabs(browser, relay.url, tabs);
  return {
    relay,
    async close() {
      for (const c of contexts) await c.close();
      await relay.stop();
      rmSync(relay.dataDir, { recursive: true, force: true });
    },
  };
}

async function throughput(relay: RelayProcess, tabs: number, jobs: number): Promise<JobsRow> {
  const ids: string[] = [];
  for (let start = 0; start < jobs; start += 50) {
    const n = Math.min(50, jobs - start);
    const batch = Array.from({ length: n }, (_, k) =>
      submitJob(relay, { app: 'greet', service: 'greet', rpc: 'echo', input: start + k }),
    );
    ids.push(...(await Promise.all(batch)));
  }
  type View = { id: string; state: string; created: number; started?: number; finished?: number };
  const views = new Map<string, View>();
  await until(
    async () => {
      let after = '';
      for (;;) {
        const q = `/api/jobs?limit=1000${after ? `&after=${after}` : ''}`;
        const r = await jobsApi(relay.url, 'GET', q, { token: relay.token });
        for (const j of r.body.jobs as View[]) views.set(j.id, j);
        if (!r.body.next) break;
        after = r.body.next as string;
      }
      return ids.every((id) => views.get(id)?.state === 'succeeded');
    },
    `${jobs} jobs to succeed on ${tabs} tabs`,
    600_000,
    200,
  );
  const all = ids.map((id) => views.get(id)!);
  const first = Math.min(...all.map((v) => v.created));
  const last = Math.max(...all.map((v) => v.finished!));
  const waits = all.map((v) => v.started! - v.created);
  const dones = all.map((v) => v.finished! - v.created);
  return {
    tabs,
    jobs,
    jobsPerSecond: (jobs * 1000) / Math.max(1, last - first),
    waitP50: pct(waits, 0.5),
    waitP90: pct(waits, 0.9),
    doneP50: pct(dones, 0.5),
    doneP90: pct(dones, 0.9),
  };
}

/** One call, then one job (submit + watch to succeeded), in turn, `rounds` times. */
async function jobVersusCall(relay: RelayProcess, rounds: number) {
  const calls: number[] = [];
  const jobs: number[] = [];
  for (let i = 0; i < rounds; i++) {
    let t0 = performance.now();
    const res = await fetch(`${relay.url}/api/call/greet/greet`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ input: i, rpc: 'echo' }),
    });
    if (!res.ok) throw new Error(`call answered ${res.status}`);
    await res.arrayBuffer();
    calls.push(performance.now() - t0);
    t0 = performance.now();
    const id = await submitJob(relay, { app: 'greet', service: 'greet', rpc: 'echo', input: i });
    const watch = await fetch(`${relay.url}/api/jobs/${id}/watch`, {
      headers: { authorization: `Bearer ${relay.token}` },
    });
    const text = await watch.text(); // the relay ends the stream after a terminal state
    if (!text.includes('"state":"succeeded"'))
      throw new Error(`job ${id} did not succeed: ${text}`);
    jobs.push(performance.now() - t0);
  }
  return { callP50: pct(calls, 0.5), jobP50: pct(jobs, 0.5) };
}

export async function jobsBench(o: { jobs: number; rounds: number }): Promise<JobsBench> {
  const browser = await chromium.launch({ executablePath: chromiumPath, args: chromiumArgs });
  try {
    const rows: JobsRow[] = [];
    let versus = { callP50: Number.NaN, jobP50: Number.NaN };
    for (const tabs of [1, 4]) {
      const f = await fabric(browser, tabs);
      try {
        if (tabs === 1) versus = await jobVersusCall(f.relay, o.rounds);
        rows.push(await throughput(f.relay, tabs, o.jobs));
      } finally {
        await f.close();
      }
    }
    return { rows, ...versus, jobOverCall: versus.jobP50 / versus.callP50 };
  } finally {
    await browser.close();
  }
}

export function jobsSection(b: JobsBench): Section {
  return {
    id: 'jobs',
    title: 'Jobs pulled by idle tabs: throughput and queue latency, and a job vs a call',
    baseline: 'a synchronous HTTP call of the same work (echo) on the same one-tab fabric',
    note: 'The relay runs without its cloud node; N tabs in Chromium pull echo jobs submitted 50 at a time over HTTP. Wait: submit → started; done: submit → succeeded, from the relay’s own timestamps. Job vs call: one at a time, at the client; a job is POST /api/jobs then GET …/watch (SSE) until succeeded.',
    rows: [
      ...b.rows.map((r) => ({
        label: `${r.jobs} jobs, ${r.tabs} tab${r.tabs > 1 ? 's' : ''}`,
        'jobs/s': r.jobsPerSecond,
        'wait p50 (ms)': r.waitP50,
        'wait p90 (ms)': r.waitP90,
        'done p50 (ms)': r.doneP50,
        'done p90 (ms)': r.doneP90,
      })),
      { label: 'one at a time: call p50 (ms)', 'done p50 (ms)': b.callP50 },
      { label: 'one at a time: job p50 (ms)', 'done p50 (ms)': b.jobP50, 'vs call': b.jobOverCall },
    ],
  };
}

export function printJobs(b: JobsBench): void {
  console.table(
    b.rows.map((r) => ({
      tabs: r.tabs,
      jobs: r.jobs,
      'jobs/s': Math.round(r.jobsPerSecond),
      'wait p50/p90 (ms)': `${r.waitP50.toFixed(0)} / ${r.waitP90.toFixed(0)}`,
      'done p50/p90 (ms)': `${r.doneP50.toFixed(0)} / ${r.doneP90.toFixed(0)}`,
    })),
  );
  console.log(
    `one at a time on one tab: call p50 ${b.callP50.toFixed(1)} ms, job (submit + watch) p50 ${b.jobP50.toFixed(1)} ms: ${b.jobOverCall.toFixed(2)}× the call`,
  );
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const n = Number(process.env.BENCH_JOBS ?? 1000);
  printJobs(await jobsBench({ jobs: n, rounds: Math.max(5, Math.round(n / 10)) }));
}
