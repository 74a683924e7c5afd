/**
 * Live migration of a stateful stream (issue 14 §4, seed 004 §3 MirageManager): a vad session
 * from one tab, served by another, that leaves gracefully (it pauses: the relay hands the session
 * over) or is killed (its renderer crashes: the relay sees its socket close). The caller streams
 * 4-frame chunks (128 ms of audio) at their real-time pace; downtime is the gap in answered
 * chunks at the caller around the move (the answer from the new node minus the last from the old)
 * less the pace a chunk had anyway. State moved: the stream's checkpoint in the context store
 * (`vad/<session>`), as the relay measures it when it moves the session. Beside MirageManager's
 * 0.33 s and 79 B and Podman/CRIU's 1.80 s and 195,175 B (two NUCs, 100 Mbps, a counter app).
 * Alone: `npx tsx tests/bench/migration.ts` (after `npm run build`; BENCH_MIGRATIONS rounds).
 * @example const rows = await migrationBench(relay, 5); printMigration(rows);
 */
import { spawnSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { type Browser, chromium, type Page } from 'playwright-core';
import { FRAME, loadFixture } from '../../models/vad/vad';
import { chromiumArgs, chromiumPath } from '../../playwright.config';
import { netnsPrefix } from '../../scripts/netns';
import { type RelayProcess, startRelay } from '../relay-process';
import { until } from '../until';
import type { Section } from './report';

export interface MigrationRow {
  how: 'graceful' | 'killed';
  /** Rounds measured, and rounds whose session the rule did not put on a serving tab. */
  rounds: number;
  skipped: number;
  /** Median over rounds: gap in answers around the move less the pace, ms. */
  downtimeMs: number;
  downtimeMaxMs: number;
  /** The pace: one chunk's audio, ms. */
  paceMs: number;
  /** Median bytes of state moved. */
  stateBytes: number;
  /** Median time at the relay from the loss or the leaving to the caller told, ms. */
  handOverMs: number;
  /** Chunks answered in all / sent in all (each must be answered once). */
  answered: number;
  sent: number;
}

const PER_CHUNK = 4;
const PACE_MS = (PER_CHUNK * FRAME * 1000) / 16_000;
/** Chunks before the move and after it. */
const BEFORE = 12;
const AFTER = 12;

/** Joins a tab to the relay at `url` in its own context; answers its page and node id. */
async function joinTab(browser: Browser, url: string) {
  const context = await browser.newContext();
  await context.grantPermissions(['microphone', 'camera'], { origin: url });
  const page = await context.newPage();
  await page.addInitScript('globalThis.__name = (f) => f');
  await page.goto(url);
  const id = await page.evaluate(async () => {
    await window.brume.ready;
    const f = await window.brumeDebug.fabric;
    await f.whenJoined(20_000);
    return f.nodeId;
  });
  return { context, page, id };
}

interface Answer {
  at: number;
  node: string;
}

/** Starts the stream in the caller's page: a session, then one chunk per pace until `parts` end. */
function stream(caller: Page, parts: string[], paceMs: number) {
  return caller.evaluate(
    async ({ parts, paceMs }) => {
      const s = await window.brume.session('vad', 'detect', {
        fps: 1000 / paceMs,
        stateKey: 'vad/{session}',
        frameBytes: 4 * 512 * 4,
      });
      const w = window as unknown as { answers: Answer[]; session: string; done: Promise<void> };
      w.answers = [];
      w.session = s.id;
      w.done = (async () => {
        const t0 = performance.now();
        for (let i = 0; i < parts.length; i++) {
          // A live source: chunk i exists at t0 + i·pace, not before.
          const due = t0 + i * paceMs - performance.now();
          if (due > 0) await new Promise((r) => setTimeout(r, due));
          const samples = Uint8Array.from(atob(parts[i]!), (c) => c.charCodeAt(0));
          const r = await s.invoke({ stream: s.id, samples });
          w.answers.push({ at: performance.now(), node: r.node });
        }
        s.close();
      })();
      return { id: s.id, node: s.node, reason: s.placement.reason };
    },
    { parts, paceMs },
  );
}

/** One round: a fresh pair of serving tabs, the stream, the move at chunk BEFORE. */
async function round(
  browser: Browser,
  relay: RelayProcess,
  caller: Page,
  how: MigrationRow['how'],
  parts: string[],
) {
  const servers = [await joinTab(browser, relay.url), await joinTab(browser, relay.url)];
  try {
    // Placement knows a tab holds the app from its heartbeat: the stream starts once both have.
    const ids = servers.map((s) => s.id);
    await until(
      async () => {
        const res = await fetch(`${relay.url}/api/nodes`, {
          headers: { authorization: `Bearer ${relay.token}` },
        });
        const nodes = (await res.json()) as { id: string; apps: string[] }[];
        return ids.every((id) => nodes.some((n) => n.id === id && n.apps.includes('vad')));
      },
      'both serving tabs holding vad',
      60_000,
    );
    const { id, node, reason } = await stream(caller, parts, PACE_MS);
    const serving = servers.find((s) => s.id === node);
    if (!serving) {
      // The rule put it elsewhere (the cloud, or the caller): no tab to move it from. Counted.
      await caller.evaluate(() => (window as unknown as { done: Promise<void> }).done);
      return { skipped: reason };
    }
    // The move once BEFORE chunks are answered (polled: the stream runs in the page).
    await until(
      async () =>
        (await caller.evaluate(
          () => (window as unknown as { answers: Answer[] }).answers.length,
        )) >= BEFORE,
      `${BEFORE} chunks answered`,
      60_000,
    );
    if (how === 'graceful') await serving.page.evaluate(() => window.brume.pause(true));
    else {
      const cdp = await serving.context.newCDPSession(serving.page);
      void cdp.send('Page.crash').catch(() => {});
    }
    await caller.evaluate(() => (window as unknown as { done: Promise<void> }).done);
    const answers = await caller.evaluate(
      () => (window as unknown as { answers: Answer[] }).answers,
    );
    const lastOld = answers.map((a) => a.node).lastIndexOf(node);
    const gapMs = (answers[lastOld + 1]?.at ?? Number.NaN) - answers[lastOld]!.at;
    const res = await fetch(`${relay.url}/api/sessions`, {
      headers: { authorization: `Bearer ${relay.token}` },
    });
    const { migrations } = (await res.json()) as {
      migrations: { session: string; stateBytes?: number; handOverMs: number }[];
    };
    const moved = migrations.find((m) => m.session === id);
    return {
      downtimeMs: Math.max(0, gapMs - PACE_MS),
      stateBytes: moved?.stateBytes ?? Number.NaN,
      handOverMs: moved?.handOverMs ?? Number.NaN,
      answered: answers.length,
    };
  } finally {
    for (const s of servers) await s.context.close().catch(() => {});
  }
}

const median = (xs: number[]) =>
  [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? Number.NaN;

/** `rounds` graceful hand-overs and `rounds` killed tabs, on `relay`. */
export async function migrationBench(relay: RelayProcess, rounds = 5): Promise<MigrationRow[]> {
  const { samples } = loadFixture();
  const bytes = new Uint8Array(samples.buffer, samples.byteOffset, samples.byteLength);
  const step = PER_CHUNK * FRAME * 4;
  const parts = Array.from({ length: BEFORE + AFTER }, (_, i) =>
    Buffer.from(bytes.subarray(i * step, (i + 1) * step)).toString('base64'),
  );
  const browser = await chromium.launch({ executablePath: chromiumPath, args: chromiumArgs });
  try {
    const caller = await joinTab(browser, relay.url);
    const rows: MigrationRow[] = [];
    for (const how of ['graceful', 'killed'] as const) {
      const runs = [];
      let skipped = 0;
      for (let i = 0; i < rounds; i++) {
        const r = await round(browser, relay, caller.page, how, parts);
        if (r.downtimeMs !== undefined) runs.push(r);
        else {
          skipped++;
          console.error(`migration: round ${i + 1} (${how}) not placed on a tab: ${r.skipped}`);
        }
      }
      rows.push({
        how,
        rounds: runs.length,
        skipped,
        downtimeMs: median(runs.map((r) => r.downtimeMs)),
        downtimeMaxMs: Math.max(...runs.map((r) => r.downtimeMs)),
        paceMs: PACE_MS,
        stateBytes: median(runs.map((r) => r.stateBytes)),
        handOverMs: median(runs.map((r) => r.handOverMs)),
        answered: runs.reduce((n, r) => n + r.answered, 0),
        sent: runs.length * parts.length,
      });
    }
    return rows;
  } finally {
    await browser.close();
  }
}

/** The seed's figures (004-notes §3: two Intel NUCs, 100 Mbps, average of 200 runs). */
const seed = [
  { label: 'MirageManager (seed 004)', downtimeMs: 330, stateBytes: 79 },
  { label: 'Podman/CRIU (seed 004)', downtimeMs: 1800, stateBytes: 195_175 },
];

export function migrationSection(rows: MigrationRow[]): Section {
  return {
    id: 'migration',
    title: 'Live migration of a vad session: downtime and state moved',
    baseline: 'MirageManager and Podman/CRIU, as seed 004 measured them',
    note: `Brume: medians over rounds of a vad stream paced at ${PACE_MS} ms a chunk, the session moved at chunk ${BEFORE}; downtime = gap in answers around the move − the pace; the new tab was told to load the app when the session was placed (session-warm), as the rule's next choice. Seed: two NUCs on 100 Mbps, a counter app.`,
    rows: [
      ...rows.map((r) => ({
        label: `Brume, ${r.how === 'graceful' ? 'graceful hand-over (tab paused)' : 'killed tab (renderer crash)'}`,
        'downtime (ms)': round1(r.downtimeMs),
        'downtime max (ms)': round1(r.downtimeMaxMs),
        'state moved (B)': r.stateBytes,
        'relay hand-over (ms)': round1(r.handOverMs),
        'answered / sent': `${r.answered} / ${r.sent}`,
        'rounds (skipped)': `${r.rounds} (${r.skipped})`,
      })),
      ...seed.map((s) => ({
        label: s.label,
        'downtime (ms)': s.downtimeMs,
        'state moved (B)': s.stateBytes,
      })),
    ],
  };
}

const round1 = (x: number) => Math.round(x * 10) / 10;

export function printMigration(rows: MigrationRow[]): void {
  const s = migrationSection(rows);
  console.log(`${s.title} (${s.note})`);
  console.table(s.rows.map(({ label, ...r }) => ({ '': label, ...r })));
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  // Tabs open WebRTC channels to each other: in a loopback-only namespace when one can be made.
  const ns = process.env.BRUME_NETNS ? undefined : netnsPrefix();
  if (ns) {
    const [cmd, ...args] = [...ns, process.execPath, ...process.execArgv, ...process.argv.slice(1)];
    const r = spawnSync(cmd!, args, {
      stdio: 'inherit',
      env: { ...process.env, BRUME_NETNS: '1' },
    });
    process.exit(r.status ?? 1);
  }
  const relay = await startRelay();
  try {
    printMigration(await migrationBench(relay, Number(process.env.BENCH_MIGRATIONS ?? 5)));
  } finally {
    await relay.stop();
    rmSync(relay.dataDir, { recursive: true, force: true });
  }
}
