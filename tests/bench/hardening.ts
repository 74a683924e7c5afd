// The hardening benchmarks (`BENCH_ONLY=hardening npm run bench`): HTTP load on the relay's cloud
// node (16 clients calling digits/classify in MessagePack, with a key so no per-address limit
// applies), the relay's memory idle and with 1,000 simulated nodes, and a soak of both together.
// The relay runs as a real child process; its memory is read from /proc.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { decode, encode } from '../../core/codec';
import { joinRaw, type RawNode } from '../raw-node';
import type { RelayProcess } from '../relay-process';
import { until } from '../until';

/** The relay's admin token, from its data directory. */
export const adminToken = (relay: RelayProcess) =>
  readFileSync(join(relay.dataDir, 'admin-token'), 'utf8').trim();

export interface LoadResult {
  clients: number;
  seconds: number;
  calls: number;
  errors: number;
  /** The first few error messages, to say what went wrong. */
  errorSamples: string[];
  perSecond: number;
  p50Ms: number;
  p99Ms: number;
}

/** `clients` callers, each one call at a time, for `seconds`: digits/classify in MessagePack. */
export async function httpLoad(
  url: string,
  token: string,
  pixels: Uint8Array,
  clients = 16,
  seconds = 60,
): Promise<LoadResult> {
  const body = Buffer.from(encode({ input: { width: 28, height: 28, pixels } }));
  const headers = { 'content-type': 'application/msgpack', authorization: `Bearer ${token}` };
  const latencies: number[] = [];
  const errorSamples: string[] = [];
  let errors = 0;
  const t0 = performance.now();
  const end = t0 + seconds * 1000;
  await Promise.all(
    Array.from({ length: clients }, async () => {
      while (performance.now() < end) {
        const start = performance.now();
        try {
          const res = await fetch(`${url}/api/call/digits/classify`, {
            method: 'POST',
            headers,
            body,
          });
          const bytes = new Uint8Array(await res.arrayBuffer());
          if (res.status !== 200)
            throw new Error(`${res.status} ${new TextDecoder().decode(bytes)}`);
          decode(bytes);
          latencies.push(performance.now() - start);
        } catch (e) {
          errors++;
          if (errorSamples.length < 5) errorSamples.push((e as Error).message.slice(0, 200));
        }
      }
    }),
  );
  const elapsed = (performance.now() - t0) / 1000;
  latencies.sort((a, b) => a - b);
  const at = (q: number) =>
    latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? 0;
  return {
    clients,
    seconds: elapsed,
    calls: latencies.length + errors,
    errors,
    errorSamples,
    perSecond: latencies.length / elapsed,
    p50Ms: at(0.5),
    p99Ms: at(0.99),
  };
}

/**
 * `n` simulated dews joined with real signed joins, answering pings, paused (so no call is placed
 * on them) and keeping no frames: what the relay holds per connected node, nothing more.
 */
export async function joinIdle(wsUrl: string, n: number): Promise<RawNode[]> {
  const nodes: RawNode[] = [];
  for (let i = 0; i < n; i += 50) {
    const batch = await Promise.all(
      Array.from({ length: Math.min(50, n - i) }, () =>
        joinRaw(wsUrl, 'dew', { keep: (f) => f.t === 'welcome' || f.t === 'challenge' }),
      ),
    );
    for (const { node } of batch) {
      node.frames.length = 0;
      node.send({
        t: 'heartbeat',
        load: { queue: 0, maxConcurrency: 1 },
        apps: ['digits'],
        models: { 'digits/model': ['small', 'large'] },
        stats: {},
        paused: true,
      });
      nodes.push(node);
    }
  }
  return nodes;
}

/** Waits for every socket to be closed on this side. */
export async function closeAll(nodes: RawNode[]): Promise<void> {
  for (const n of nodes) n.ws.close();
  await Promise.all(nodes.map((n) => n.closed));
}

export interface SoakResult {
  seconds: number;
  nodes: number;
  load: LoadResult;
  /** RSS samples (MB) every 10 s, from the start of the load. */
  rssMB: { atS: number; mb: number }[];
  firstMinuteMB: number;
  endMB: number;
  /** end / first minute − 1 */
  growth: number;
}

/** `nodes` simulated nodes connected and HTTP load for `seconds`, sampling the relay's RSS. */
export async function soak(
  relay: RelayProcess,
  pixels: Uint8Array,
  nodes: number,
  seconds: number,
  log: (l: string) => void,
): Promise<SoakResult> {
  const ws = `${relay.url.replace('http', 'ws')}/ws`;
  const sims = await joinIdle(ws, nodes);
  log(`  soak: ${nodes} simulated nodes joined; HTTP load for ${seconds} s`);
  const rssMB: { atS: number; mb: number }[] = [];
  const t0 = performance.now();
  // The first sample is at one minute (or halfway through a shorter soak).
  const firstAtS = Math.min(60, seconds / 2);
  let first = 0;
  const sample = () => {
    const atS = (performance.now() - t0) / 1000;
    const mb = relay.rss() / 2 ** 20;
    rssMB.push({ atS: Math.round(atS), mb: Math.round(mb * 10) / 10 });
    return mb;
  };
  const timers = [
    setInterval(sample, 10_000),
    setTimeout(() => (first = sample()), firstAtS * 1000),
  ];
  try {
    const load = await httpLoad(relay.url, adminToken(relay), pixels, 16, seconds);
    const end = sample();
    return {
      seconds,
      nodes,
      load,
      rssMB,
      firstMinuteMB: first,
      endMB: end,
      growth: first ? end / first - 1 : Number.NaN,
    };
  } finally {
    for (const t of timers) clearTimeout(t);
    await closeAll(sims);
  }
}

/** The bare baseline (tests/bench/bare-server.ts) as a child process. */
export async function startBare(): Promise<{ url: string; stop(): Promise<void> }> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'tests/bench/bare-server.ts'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  const url = await new Promise<string>((resolve, reject) => {
    const seen = (d: Buffer) => {
      out += d;
      const m = /listening on (http:\/\/[\d.]+:\d+)/.exec(out);
      if (m) resolve(m[1]!);
    };
    child.stdout!.on('data', seen);
    child.stderr!.on('data', seen);
    child.once('exit', (code) => reject(new Error(`the bare server exited with ${code}:\n${out}`)));
  });
  return {
    url,
    stop: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      }),
  };
}

export interface VersusRow {
  clients: number;
  /** Medians over the rounds, each round one window on the relay then one on the bare server. */
  relay: { p50Ms: number; p99Ms: number; perSecond: number; errors: number };
  bare: { p50Ms: number; p99Ms: number; perSecond: number; errors: number };
  /** relay p50 / bare p50, and relay p50 − bare p50 */
  p50Ratio: number;
  p50AddedMs: number;
  /** relay calls/s / bare calls/s */
  throughputRatio: number;
  errorSamples: string[];
}

/**
 * The relay's HTTP path against the bare server, side by side with the same client code: at 1
 * and 16 clients, `rounds` windows of `seconds` each, alternating relay and bare so machine noise
 * falls on both. Figures are medians of the windows' p50, p99 and calls/s; errors are summed.
 */
export async function versusBare(
  relayUrl: string,
  token: string,
  bareUrl: string,
  pixels: Uint8Array,
  rounds = 5,
  seconds = 4,
  clientCounts = [1, 16],
): Promise<VersusRow[]> {
  const median = (xs: number[]) => {
    const s = [...xs].sort((a, b) => a - b);
    return s.length % 2 ? s[s.length >> 1]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
  };
  const summary = (ls: LoadResult[]) => ({
    p50Ms: median(ls.map((l) => l.p50Ms)),
    p99Ms: median(ls.map((l) => l.p99Ms)),
    perSecond: median(ls.map((l) => l.perSecond)),
    errors: ls.reduce((n, l) => n + l.errors, 0),
  });
  // Warm both (sessions loaded, workers started, JIT) before anything counts.
  await httpLoad(relayUrl, token, pixels, 4, 1);
  await httpLoad(bareUrl, token, pixels, 4, 1);
  const rows: VersusRow[] = [];
  for (const clients of clientCounts) {
    const relay: LoadResult[] = [];
    const bare: LoadResult[] = [];
    for (let r = 0; r < rounds; r++) {
      relay.push(await httpLoad(relayUrl, token, pixels, clients, seconds));
      bare.push(await httpLoad(bareUrl, token, pixels, clients, seconds));
    }
    const rs = summary(relay);
    const bs = summary(bare);
    rows.push({
      clients,
      relay: rs,
      bare: bs,
      p50Ratio: rs.p50Ms / bs.p50Ms,
      p50AddedMs: rs.p50Ms - bs.p50Ms,
      throughputRatio: rs.perSecond / bs.perSecond,
      errorSamples: [...relay, ...bare].flatMap((l) => l.errorSamples).slice(0, 5),
    });
  }
  return rows;
}

/** The table `npm run bench` prints for versusBare. */
export function printVersus(rows: VersusRow[]): void {
  console.log(
    'HTTP digits/classify: the relay (cloud node) vs a bare node:http + onnxruntime-node server (large.onnx), medians of alternating windows',
  );
  console.table(
    rows.map((r) => ({
      clients: r.clients,
      'relay p50 (ms)': r.relay.p50Ms.toFixed(3),
      'bare p50 (ms)': r.bare.p50Ms.toFixed(3),
      'p50 ratio': r.p50Ratio.toFixed(2),
      'p50 added (ms)': r.p50AddedMs.toFixed(3),
      'relay calls/s': Math.round(r.relay.perSecond),
      'bare calls/s': Math.round(r.bare.perSecond),
      'throughput ratio': r.throughputRatio.toFixed(2),
      errors: `${r.relay.errors} / ${r.bare.errors}`,
    })),
  );
  for (const e of rows.flatMap((r) => r.errorSamples)) console.log(`  error: ${e}`);
}

export interface HardeningResult {
  /** The relay's HTTP path beside the bare server, at 1 and 16 clients. */
  versus: VersusRow[];
  httpLoad: LoadResult & { relayRssMB: number };
  rss: {
    idleNoCloudMB: number;
    idleWithCloudMB: number;
    with1000NodesMB: number;
    perNodeKB: number;
  };
  soak: SoakResult;
}

const MB = 2 ** 20;

/**
 * Everything above, each relay a fresh child process: `start` starts one with these extra flags.
 * BENCH_HTTP_S (default 60) and BENCH_SOAK_S (default 600) set the durations.
 */
export async function hardeningBench(
  start: (args: string[]) => Promise<RelayProcess>,
  stop: (relay: RelayProcess) => Promise<void>,
  pixels: Uint8Array,
  log: (l: string) => void,
): Promise<HardeningResult> {
  const httpS = Number(process.env.BENCH_HTTP_S ?? 60);
  const soakS = Number(process.env.BENCH_SOAK_S ?? 600);
  // One machine plays 1,000 nodes from one address: lift the per-address socket cap.
  const many = ['--max-conns-per-address', '5000'];

  log('  relay memory: idle, then with 1,000 simulated nodes (no cloud node)');
  const bare = await start(['--no-cloud', ...many]);
  let rss: HardeningResult['rss'];
  try {
    const idle = bare.rss();
    const sims = await joinIdle(`${bare.url.replace('http', 'ws')}/ws`, 1000);
    const loaded = bare.rss();
    await closeAll(sims);
    rss = {
      idleNoCloudMB: idle / MB,
      idleWithCloudMB: 0,
      with1000NodesMB: loaded / MB,
      perNodeKB: (loaded - idle) / 1000 / 1024,
    };
  } finally {
    await stop(bare);
  }

  const relay = await start(many);
  try {
    const token = adminToken(relay);
    // Its cloud node joins after the relay listens: the load starts once it is there.
    await until(
      async () => {
        const res = await fetch(`${relay.url}/api/nodes`, {
          headers: { authorization: `Bearer ${token}` },
        });
        const nodes = (await res.json()) as { role: string }[];
        return nodes.some((n) => n.role === 'cloud');
      },
      'the cloud node to join',
      60_000,
      100,
    );
    rss.idleWithCloudMB = relay.rss() / MB;
    const rounds = Number(process.env.BENCH_VERSUS_ROUNDS ?? 5);
    const windowS = Number(process.env.BENCH_VERSUS_S ?? 4);
    log(
      `  HTTP vs a bare server: 1 and 16 clients, ${rounds} alternating ${windowS} s windows each`,
    );
    const bareServer = await startBare();
    let versus: VersusRow[];
    try {
      versus = await versusBare(relay.url, token, bareServer.url, pixels, rounds, windowS);
    } finally {
      await bareServer.stop();
    }
    log(`  HTTP load: 16 clients on digits/classify for ${httpS} s`);
    const load = await httpLoad(relay.url, token, pixels, 16, httpS);
    const httpResult = { ...load, relayRssMB: relay.rss() / MB };
    log(`  soak: 1,000 simulated nodes and HTTP load for ${soakS} s`);
    const soakResult = await soak(relay, pixels, 1000, soakS, log);
    return { versus, httpLoad: httpResult, rss, soak: soakResult };
  } finally {
    await stop(relay);
  }
}

/** The tables `npm run bench` prints for these figures. */
export function printHardening(h: HardeningResult): void {
  printVersus(h.versus);
  const f1 = (x: number) => x.toFixed(1);
  console.log(
    'HTTP load: 16 clients calling digits/classify (MessagePack) on the relay and its cloud node',
  );
  const loadRow = (what: string, l: LoadResult) => ({
    what,
    s: f1(l.seconds),
    calls: l.calls,
    'calls/s': Math.round(l.perSecond),
    'p50 (ms)': l.p50Ms.toFixed(2),
    'p99 (ms)': l.p99Ms.toFixed(2),
    errors: l.errors,
  });
  console.table([
    loadRow('HTTP load alone', h.httpLoad),
    loadRow(`soak, ${h.soak.nodes} nodes connected`, h.soak.load),
  ]);
  for (const e of [...h.httpLoad.errorSamples, ...h.soak.load.errorSamples])
    console.log(`  error: ${e}`);
  console.log('Relay memory (RSS of the relay process)');
  console.table([
    { what: 'idle, no cloud node', MB: f1(h.rss.idleNoCloudMB) },
    { what: 'idle, with its cloud node (onnxruntime-node)', MB: f1(h.rss.idleWithCloudMB) },
    {
      what: '1,000 simulated nodes connected, no cloud node',
      MB: f1(h.rss.with1000NodesMB),
      'per node (KB)': f1(h.rss.perNodeKB),
    },
    { what: 'after the HTTP load', MB: f1(h.httpLoad.relayRssMB) },
    {
      what: `soak (${h.soak.seconds} s): after ${Math.min(60, h.soak.seconds / 2)} s`,
      MB: f1(h.soak.firstMinuteMB),
    },
    {
      what: 'soak: at the end',
      MB: f1(h.soak.endMB),
      growth: `${(h.soak.growth * 100).toFixed(1)}%`,
    },
  ]);
}
