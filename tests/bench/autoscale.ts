/**
 * Seed 002 §8 on Brume (notes: shared/seeds/001-003-notes.md): clients send 400 messages each at a
 * rising rate (1 → 2 → 3 → 4 msg/s, changing every 100 messages) to the early-exit digits app on
 * Node workers, with a fixed single worker (Kafka-ML's analogue) and with autoscaled pools (max 5,
 * max 20). Each call holds its worker `holdMs` (a node's bench-only setting) so one worker serves
 * about 4 msg/s, as the seed's replicas did: the MLPs alone never saturate.
 *
 * Time is compressed by `scale` (rates × scale, holdMs and idle time ÷ scale); every time the
 * report shows is scaled back to the seed's clock, and the note says so.
 *
 * The app: `digits-ee` when its bundle is built (its first tier pinned to the fog, as the seed
 * merged Edge into Fog), else `digits`. Real processes: a relay (--no-cloud), a fog `brume node`
 * (the workers measured) and, for digits-ee, a cloud `brume node` for exit 3. A fresh node per run.
 * @example const runs = await autoscaleBench({ scale: 5, messages: 400, clients: [1, 3, 5] });
 *          sections.push(autoscaleSection(runs));
 */
import { existsSync, readFileSync, rmSync } from 'node:fs';
import type { NodeRecord } from '../../core/api';
import { decode, encode } from '../../core/codec';
import { type Manifest, packBundle, unpackBundle } from '../../core/manifest';
import { loadDigits } from '../../models/digits/data';
import { drawDigit } from '../apps';
import { startNodeProcess } from '../node-process';
import { deploy, type RelayProcess, startRelay } from '../relay-process';
import { until } from '../until';
import type { Section } from './report';

export interface AutoscaleOptions {
  /** Time compression: 1 is the seed's own length (about 210 s a run). */
  scale: number;
  /** Messages per client (the rate rises every quarter). */
  messages: number;
  clients: number[];
  /** Per call on one worker, at scale 1 (250: one worker ≈ 4 msg/s). */
  holdMs?: number;
  /** A worker's idle period before it retires, at scale 1. */
  idleMs?: number;
}

export interface AutoscaleRun {
  pool: string;
  maxWorkers: number;
  clients: number;
  app: string;
  /** First message sent → last answer, seconds on the seed's clock. */
  completionS: number;
  /** Per exit: answers and their median latency (ms, seed's clock). */
  exits: Record<string, { count: number; p50Ms: number }>;
  failed: number;
  /** All the measured node's Logic workers at once, at most. */
  peakWorkers: number;
  /** Per `app/service`, its pool at most (polled every 100 ms). */
  peaks: Record<string, number>;
  grows: number;
  shrinks: number;
  /** The most scale-down events within any minute (seed's clock). */
  shrinksPerMinute: number;
}

const POOLS = [
  { pool: 'fixed, 1 worker', maxWorkers: 1 },
  { pool: 'autoscaled, max 5', maxWorkers: 5 },
  { pool: 'autoscaled, max 20', maxWorkers: 20 },
];

/** The seed's table (§8): completion times (s) by clients. */
const SEED: Record<string, Record<number, number>> = {
  OpenFaaS: { 1: 213, 3: 239, 5: 318 },
  Fission: { 1: 223, 3: 238, 5: 315 },
  'Kafka-ML': { 1: 214, 3: 213, 5: 494 },
};

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.floor((s.length - 1) / 2)]! : Number.NaN;
};

/** The bundle to deploy: the app built, each Logic service allowed 20 workers per node. */
async function benchBundle(): Promise<{ app: string; bytes: Uint8Array }> {
  const app = existsSync('dist/apps/digits-ee.brume') ? 'digits-ee' : 'digits';
  const b = await unpackBundle(new Uint8Array(readFileSync(`dist/apps/${app}.brume`)));
  const m = structuredClone(b.manifest) as Manifest;
  const [major, minor, patch] = m.version.split('.').map(Number) as [number, number, number];
  m.version = `${major}.${minor}.${patch + 1}`;
  for (const svc of Object.values(m.services)) {
    if (svc.kind === 'logic') svc.scale = { max: 20 };
  }
  // The seed's two tiers: its Edge merged into the Fog, where each request starts.
  const first = m.services.classify as { tiers?: string[] } | undefined;
  if (app === 'digits-ee' && first) first.tiers = ['fog'];
  return { app, bytes: packBundle(m, b.files) };
}

/** Message k: held-out digit k (of the 1,000 the trainers never saw), as a caller draws it. */
function digitInput(k: number) {
  const { heldout } = loadDigits();
  const index = k % heldout.y.length;
  const pixels = drawDigit(heldout.x, index, { width: 28, height: 28, scale: 1, dx: 0, dy: 0 });
  return { width: 28, height: 28, pixels };
}

/** Send offsets (ms, compressed) of `messages` at 1, 2, 3, 4 msg/s × scale, a quarter each. */
export function schedule(messages: number, scale: number): number[] {
  const out: number[] = [];
  let t = 0;
  for (let k = 0; k < messages; k++) {
    out.push(t);
    const rate = 1 + Math.min(3, Math.floor((4 * k) / messages));
    t += 1000 / (rate * scale);
  }
  return out;
}

async function nodes(relay: RelayProcess): Promise<NodeRecord[]> {
  const res = await fetch(`${relay.url}/api/nodes`, {
    headers: { authorization: `Bearer ${relay.token}` },
  });
  return (await res.json()) as NodeRecord[];
}

async function trust(relay: RelayProcess, publicKey: string): Promise<void> {
  await fetch(`${relay.url}/api/trust`, {
    method: 'POST',
    headers: { authorization: `Bearer ${relay.token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ publicKey, label: 'autoscale bench' }),
  });
}

export async function autoscaleBench(o: AutoscaleOptions): Promise<AutoscaleRun[]> {
  const relay = await startRelay({ args: ['--no-cloud', '--max-calls-per-node', '4096'] });
  const runs: AutoscaleRun[] = [];
  try {
    const { app, bytes } = await benchBundle();
    const res = await deploy(relay, bytes);
    if (res.status !== 201)
      throw new Error(`deploy ${app}: HTTP ${res.status} ${await res.text()}`);
    for (const clients of o.clients) {
      for (const p of POOLS) runs.push(await oneRun(relay, app, p, clients, o));
    }
    return runs;
  } finally {
    await relay.stop();
    rmSync(relay.dataDir, { recursive: true, force: true });
  }
}

async function oneRun(
  relay: RelayProcess,
  app: string,
  p: (typeof POOLS)[number],
  clients: number,
  o: AutoscaleOptions,
): Promise<AutoscaleRun> {
  const s = o.scale;
  const hold = Math.max(1, Math.round((o.holdMs ?? 250) / s));
  const idle = Math.max(100, Math.round((o.idleMs ?? 30_000) / s));
  const common = ['--threads', '1', '--concurrency', '64', '--max-queued', '100000', '--apps', app];
  const fog = await startNodeProcess(relay.url, {
    args: [
      ...common,
      '--role',
      app === 'digits-ee' ? 'fog' : 'cloud',
      '--max-workers',
      String(p.maxWorkers),
      '--hold-ms',
      String(hold),
      '--worker-idle-ms',
      String(idle),
    ],
  });
  const cloud =
    app === 'digits-ee'
      ? await startNodeProcess(relay.url, { args: [...common, '--role', 'cloud'] })
      : undefined;
  try {
    await trust(relay, fog.publicKey);
    if (cloud) await trust(relay, cloud.publicKey);
    const ids = [fog.id, ...(cloud ? [cloud.id] : [])];
    await until(
      async () => {
        const all = await nodes(relay);
        return ids.every((id) => all.find((n) => n.id === id && n.apps.includes(app)));
      },
      'the bench nodes to serve the app',
      60_000,
    );
    await until(() => fog.output().includes(`app ${app} loaded`), 'the app loaded', 60_000);
    // digits pinned to its one node by privacy; digits-ee's first tier is the fog by its manifest.
    const qos = app === 'digits' ? { privacy: fog.id } : {};
    const send = async (k: number) => {
      const t0 = performance.now();
      const r = await fetch(`${relay.url}/api/call/${app}/classify`, {
        method: 'POST',
        headers: { 'content-type': 'application/msgpack', authorization: `Bearer ${relay.token}` },
        body: Buffer.from(encode({ input: digitInput(k), qos })),
      });
      const bytes = new Uint8Array(await r.arrayBuffer());
      let body: { value?: { exit?: number } } = {};
      try {
        body = decode(bytes) as typeof body;
      } catch {
        // An error page that is not MessagePack: counted as failed below.
      }
      return {
        ok: r.status === 200,
        ms: performance.now() - t0,
        exit: body.value?.exit === undefined ? 'answer' : `exit ${body.value.exit}`,
        end: performance.now(),
      };
    };
    // Each service's pool size, polled from what the node reports (its heartbeats' `workers`).
    const peaks: Record<string, number> = {};
    let polling = true;
    const poll = (async () => {
      while (polling) {
        const rec = (await nodes(relay)).find((n) => n.id === fog.id);
        for (const [svc, w] of Object.entries(rec?.workers ?? {}))
          peaks[svc] = Math.max(peaks[svc] ?? 0, w);
        await new Promise((r) => setTimeout(r, 100));
      }
    })();
    const offsets = schedule(o.messages, s);
    const start = performance.now() + 200;
    const all = await Promise.all(
      Array.from({ length: clients }, async () => {
        const calls: ReturnType<typeof send>[] = [];
        for (const [k, at] of offsets.entries()) {
          const wait = start + at - performance.now();
          if (wait > 0) await new Promise((r) => setTimeout(r, wait));
          calls.push(send(k));
        }
        return Promise.all(calls);
      }),
    );
    polling = false;
    await poll;
    const answers = all.flat();
    const end = Math.max(...answers.map((a) => a.end));
    const exits: AutoscaleRun['exits'] = {};
    for (const name of [...new Set(answers.filter((a) => a.ok).map((a) => a.exit))].sort()) {
      const ms = answers.filter((a) => a.ok && a.exit === name).map((a) => a.ms);
      exits[name] = { count: ms.length, p50Ms: median(ms) * s };
    }
    const record = (await nodes(relay)).find((n) => n.id === fog.id);
    const history = record?.workersHistory ?? [];
    const minute = 60_000 / s;
    let perMinute = 0;
    for (const h of history) {
      const before = history.filter((x) => x.at <= h.at - minute).at(-1);
      perMinute = Math.max(perMinute, h.shrinks - (before?.shrinks ?? history[0]!.shrinks));
    }
    return {
      ...p,
      clients,
      app,
      completionS: ((end - start) / 1000) * s,
      exits,
      failed: answers.filter((a) => !a.ok).length,
      peakWorkers: Math.max(0, ...history.map((h) => h.total)),
      peaks,
      grows: record?.scaled?.grows ?? 0,
      shrinks: record?.scaled?.shrinks ?? 0,
      shrinksPerMinute: perMinute,
    };
  } finally {
    for (const n of [fog, cloud]) {
      if (!n) continue;
      await n.kill();
      rmSync(n.dataDir, { recursive: true, force: true });
    }
  }
}

export function autoscaleSection(runs: AutoscaleRun[], o: AutoscaleOptions): Section {
  const exitNames = [...new Set(runs.flatMap((r) => Object.keys(r.exits)))].sort();
  const one = (pool: string) => runs.find((r) => r.pool === pool && r.clients === 1);
  const rows = runs.map((r) => ({
    label: `${r.pool} · ${r.clients} client${r.clients > 1 ? 's' : ''}`,
    'completion (s)': Math.round(r.completionS * 10) / 10,
    'vs 1 client': one(r.pool)
      ? Math.round((r.completionS / one(r.pool)!.completionS) * 100) / 100
      : null,
    ...Object.fromEntries(
      exitNames.map((e) => [`${e} p50 (ms)`, r.exits[e] ? Math.round(r.exits[e]!.p50Ms) : null]),
    ),
    ...Object.fromEntries(
      exitNames.map((e) => [
        `${e} share`,
        r.exits[e]
          ? Math.round((r.exits[e]!.count / (o.messages * r.clients)) * 1000) / 1000
          : null,
      ]),
    ),
    ...Object.fromEntries(
      Object.entries(r.peaks).map(([svc, n]) => [`peak ${svc.split('/')[1]} workers`, n]),
    ),
    'peak workers (node)': r.peakWorkers,
    'scale-ups': r.grows,
    'scale-downs': r.shrinks,
    'most scale-downs in a minute': r.shrinksPerMinute,
    failed: r.failed,
  }));
  const seedRows = Object.entries(SEED).flatMap(([system, byClients]) =>
    Object.entries(byClients).map(([c, s]) => ({
      label: `seed 002 §8: ${system} · ${c} client${c === '1' ? '' : 's'}`,
      'completion (s)': s,
      'vs 1 client': Math.round((s / byClients[1]!) * 100) / 100,
    })),
  );
  const app = runs[0]?.app ?? 'digits';
  return {
    id: 'autoscale',
    title: `Workers that scale with load: seed 002 §8 (${app}, ${o.messages} messages per client)`,
    baseline: 'the seed’s own table (OpenFaaS, Fission, Kafka-ML) and a fixed single worker',
    note: `Each client sends ${o.messages} messages to ${app}/classify over HTTP at 1 → 2 → 3 → 4 msg/s (the rate rises every ${o.messages / 4}); a real relay (--no-cloud) and a fresh \`brume node\` per run with --max-workers 1, 5 or 20 (per service), each Logic call (classify; fog-step when the dew does not exit) holding its worker ${o.holdMs ?? 250} ms (bench-only --hold-ms: one worker ≈ ${Math.round(1000 / (o.holdMs ?? 250))} msg/s), idle period ${o.idleMs ?? 30_000} ms. Time compressed ×${o.scale} (rates × ${o.scale}, hold and idle ÷ ${o.scale}); every time shown is scaled back to the seed's clock. Latency: HTTP send → answer. Peak workers: all Logic services of the measured node. Seed figures: Kafka-ML in the seed never scaled (the fixed analogue); OpenFaaS and Fission autoscaled to 5 and 2 replicas.`,
    rows: [...rows, ...seedRows],
  };
}

/** The runs as a console table, with the goal's checks. */
export function printAutoscale(runs: AutoscaleRun[]): void {
  console.table(
    runs.map((r) => ({
      pool: r.pool,
      clients: r.clients,
      'completion (s)': r.completionS.toFixed(1),
      ...Object.fromEntries(
        Object.entries(r.exits).map(([e, x]) => [
          `${e} p50 (ms)`,
          `${x.p50Ms.toFixed(0)} (${x.count})`,
        ]),
      ),
      ...Object.fromEntries(
        Object.entries(r.peaks).map(([svc, n]) => [`peak ${svc.split('/')[1]}`, n]),
      ),
      'peak (node)': r.peakWorkers,
      up: r.grows,
      down: r.shrinks,
      'down/min': r.shrinksPerMinute,
      failed: r.failed,
    })),
  );
  for (const pool of POOLS.slice(1)) {
    const a = runs.find((r) => r.pool === pool.pool && r.clients === 1);
    const b = runs.find((r) => r.pool === pool.pool && r.clients === 5);
    if (!a || !b) continue;
    const ratio = b.completionS / a.completionS;
    console.log(
      `${pool.pool}: 5 clients took ${Math.abs(ratio * 100 - 100).toFixed(1)}% ${ratio >= 1 ? 'longer' : 'less'} than 1 (goal: within 10%)`,
    );
  }
}
