// `npm run bench`: the digits app, after Laqista's Table II and Fig. 5. Prints a table and writes
// bench-results/bench.json. Every figure is a median over repeated runs in one process; ratios
// compare figures taken side by side in the same run.

import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { chromium } from 'playwright-core';
import { createRuntime } from '../../core/runtime';
import { memoryAppSource } from '../../core/sources';
import { loadDigits } from '../../models/digits/data';
import { chromiumArgs, chromiumPath } from '../../playwright.config';
import { nodePlatform } from '../../relay/platform';
import { netnsPrefix } from '../../scripts/netns';
import { hopsApp, testBundles } from '../apps';
import { deploy, startRelay } from '../relay-process';
import { autoscaleBench, autoscaleSection, printAutoscale } from './autoscale';
import { clusterBench, clusterOptions, clusterSection, printCluster } from './cluster';
import { contextRates, contextStoreRate, contextToTabs, vadStream } from './context';
import { type DecisionRow, decisionTable, inProcessRows, relayRows } from './decisions';
import { earlyExitBench, earlyExitSection, printEarlyExit } from './early-exit';
import {
  earlyExitFabric,
  fabricSections,
  fabricSweep,
  printEarlyExitFabric,
} from './early-exit-fabric';
import { type HardeningResult, hardeningBench, printHardening } from './hardening';
import { consoleCost, hopCosts } from './hops';
import { type JobsBench, jobsBench, jobsSection, printJobs } from './jobs';
import { type LeaseBench, leaseBench } from './leases';
import { migrationBench, migrationSection, printMigration } from './migration';
import { nimbusBench, nimbusSection, printNimbus } from './nimbus';
import { ocrBench, ocrSection } from './ocr';
import { pipelineBench, pipelineSection } from './pipeline';
import { type Section, writeReport } from './report';
import { type ServerNodeRow, serverNodeBench, serverNodeSection } from './server-node';
import { type SqueezenetFigures, squeezenetBench, squeezenetSection } from './squeezenet';
import { type TabsMemoryRow, tabsMemory } from './tabs-memory';

// Tabs open WebRTC channels to each other: run in a loopback-only namespace when one can be made.
if (!process.env.BRUME_NETNS && !process.env.BRUME_NO_NETNS) {
  const ns = netnsPrefix();
  if (ns) {
    const [cmd, ...args] = [...ns, process.execPath, ...process.execArgv, ...process.argv.slice(1)];
    const r = spawnSync(cmd!, args, {
      stdio: 'inherit',
      env: { ...process.env, BRUME_NETNS: '1' },
    });
    process.exit(r.status ?? 1);
  }
  console.log('(no network namespace here: tab-to-tab calls are measured over the relay only)\n');
}

const runs = Number(process.env.BENCH_RUNS ?? 300);

/**
 * One part of the bench, given `ms` to finish: one that does not (a full run once stalled in its
 * browser part, not reproduced alone) is named on stderr and left out, and the bench goes on.
 */
async function within<T>(what: string, f: () => Promise<T>, ms = 300_000): Promise<T | undefined> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => {
      console.error(`bench: ${what} did not finish within ${ms / 1000} s; left out of this run`);
      resolve(undefined);
    }, ms);
  });
  try {
    return await Promise.race([f(), late]);
  } finally {
    clearTimeout(timer);
  }
}

interface Row {
  where: string;
  backend: string;
  variant: string;
  /** onnxruntime's run() alone */
  engineMs: number;
  /** the Model service through the executor (validation, worker hop, stats) */
  modelMs: number;
  /** the Logic (preprocess, call) + the Model + the continuation: the whole app */
  appMs: number;
}
interface Setup {
  where: string;
  compileMs: number;
  instantiateMs: number;
  logicOnlyMs: number;
}

type Invoke = (
  service: string,
  input: unknown,
  opts: { rpc?: string; pin?: Record<string, string>; backend?: string },
) => Promise<{ value: unknown; ms: number; trace: { engineMs?: number }[] }>;

/**
 * The measurements, the same in a tab and in Node. Self-contained (it is sent to the page as
 * source): `invoke` calls a service of the digits app, `wasm` is its Logic's bytes.
 */
async function measure(
  invoke: Invoke,
  wasm: ArrayBuffer,
  pixels: Uint8Array,
  runs: number,
  backend?: string,
) {
  const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const input = { width: 28, height: 28, pixels };
  // Table II: compile and instantiate the Logic on this thread.
  const compiles: number[] = [];
  let module: WebAssembly.Module | undefined;
  for (let i = 0; i < 20; i++) {
    const t0 = performance.now();
    module = await WebAssembly.compile(wasm);
    compiles.push(performance.now() - t0);
  }
  const inst: number[] = [];
  for (let i = 0; i < 200; i++) {
    const memory = new WebAssembly.Memory({ initial: 1, maximum: 768 });
    const imports = { env: { memory, abort: () => {}, seed: () => 1 }, brume: { log: () => {} } };
    const t0 = performance.now();
    new WebAssembly.Instance(module!, imports);
    inst.push(performance.now() - t0);
  }
  const pre = (await invoke('classify', input, { rpc: 'preprocess' })).value as {
    pixels: Uint8Array;
  };
  const logicOnly: number[] = [];
  for (let i = 0; i < runs; i++)
    logicOnly.push((await invoke('classify', input, { rpc: 'preprocess' })).ms);
  const rows = [];
  for (const variant of ['small', 'large']) {
    const tensor = { inputs: { pixels: { type: 'float32', dims: [1, 784], data: pre.pixels } } };
    const engine: number[] = [];
    const model: number[] = [];
    const app: number[] = [];
    for (let i = 0; i < 20; i++)
      await invoke('classify', input, { pin: { model: variant }, backend });
    for (let i = 0; i < runs; i++) {
      const r = await invoke('model', tensor, { rpc: variant, backend });
      model.push(r.ms);
      engine.push(r.trace[0]!.engineMs!);
      app.push((await invoke('classify', input, { pin: { model: variant }, backend })).ms);
    }
    rows.push({ variant, engineMs: med(engine), modelMs: med(model), appMs: med(app) });
  }
  return {
    compileFirstMs: compiles[0]!,
    compileMs: med(compiles),
    instantiateMs: med(inst),
    logicOnlyMs: med(logicOnly),
    rows,
  };
}

async function tab(url: string, digit: Uint8Array, webgpu: boolean) {
  const browser = await chromium.launch({
    executablePath: chromiumPath,
    args: [...chromiumArgs, ...(webgpu ? ['--enable-unsafe-webgpu'] : [])],
  });
  try {
    const page = await browser.newPage();
    // tsx (esbuild keepNames) wraps functions in __name(); the page needs it to run `measure`.
    await page.addInitScript('globalThis.__name = (f) => f');
    await page.goto(url);
    return await page.evaluate(
      async ({ source, runs, backend, digit }) => {
        const run = new Function(`return ${source}`)() as typeof measure;
        await window.brume.ready;
        const m = (await (await fetch('/api/apps/digits')).json()) as {
          files: Record<string, { sha256: string }>;
        };
        const sha = m.files['logic/classify.wasm']!.sha256;
        const wasm = await (await fetch(`/api/blobs/${sha}`)).arrayBuffer();
        const invoke: Invoke = (service, input, opts) =>
          window.brume.invoke('digits', service, input, {}, opts as never);
        return run(invoke, wasm, new Uint8Array(digit), runs, backend);
      },
      {
        source: measure.toString(),
        runs,
        backend: webgpu ? 'webgpu' : 'wasm',
        digit: Array.from(digit),
      },
    );
  } finally {
    await browser.close();
  }
}

async function nodeRuntime(digit: Uint8Array) {
  const hops = await hopsApp();
  const node = createRuntime(nodePlatform(memoryAppSource([hops])));
  await node.refresh();
  const wasm = hops.files['classify.wasm']!;
  const invoke: Invoke = (service, input, opts) =>
    node.call('hops', service, input, {}, opts as never);
  try {
    return await measure(invoke, wasm.slice().buffer, digit, runs);
  } finally {
    node.close();
  }
}

const { heldout } = loadDigits();
const digit = Uint8Array.from(heldout.x.subarray(0, 784), (v) => Math.round(v * 255));
console.log(
  `digits app, ${runs} runs per figure, medians; ${os.cpus()[0]?.model}, ${os.cpus().length} cores\n`,
);

/**
 * Writes bench-results/bench.json (the last one becomes previous.json first) and report.md with
 * its plots, each figure as previous → this run. Parts add a `Section` to `sections` (report.ts).
 */
function save(out: Record<string, unknown>): void {
  mkdirSync('bench-results', { recursive: true });
  const path = 'bench-results/bench.json';
  let previous: unknown;
  if (existsSync(path)) {
    copyFileSync(path, 'bench-results/previous.json');
    try {
      previous = JSON.parse(readFileSync(path, 'utf8'));
    } catch (e) {
      // This run's figures still get written; the report just has no "before".
      console.warn(
        `bench-results/previous.json is not JSON (${(e as Error).message}): no before figures`,
      );
    }
  }
  writeFileSync(path, `${JSON.stringify(out, null, 2)}\n`);
  const written = writeReport('bench-results', out, previous);
  console.log(`wrote ${path}, ${written[0]} and ${written.length - 1} plots`);
}

// BENCH_ONLY=fabric skips the executor figures (Table II, Fig. 5); BENCH_ONLY=hardening runs
// only the relay's load, memory and soak figures; BENCH_ONLY=squeezenet only SqueezeNet's.
const only = process.env.BENCH_ONLY;
const squeezenetRuns = Number(process.env.BENCH_SQUEEZENET_RUNS ?? 50);
const sections: Section[] = [];
function printSqueezenet(figures: SqueezenetFigures[]): void {
  const node = figures.find((x) => x.where === 'node');
  console.log(
    `SqueezeNet 1.1 (random weights), Logic + Model vs Model alone, medians of ${squeezenetRuns}; baseline: onnxruntime run() (Laqista: 13.8 ms end to end, 3.2 ms over native; ort-web WASM 29.7 vs native 4.8 ms)`,
  );
  console.table(
    figures.map((x) => ({
      where: x.where,
      backend: x.backend,
      'run() (ms)': x.engineMs.toFixed(2),
      'model service (ms)': x.modelMs.toFixed(2),
      'Logic+Model (ms)': x.appMs.toFixed(2),
      'Brume adds (ms)': (x.appMs - x.engineMs).toFixed(2),
      'app/engine': (x.appMs / x.engineMs).toFixed(2),
      'run() vs Node run()': node ? (x.engineMs / node.engineMs).toFixed(2) : '',
      'preprocess alone (ms)': x.logicOnlyMs.toFixed(2),
    })),
  );
}
function printServerNode(rows: ServerNodeRow[]): void {
  console.log(
    `An HTTP call to classify, by where it ran (medians of ${serverNodeRuns}, caller's wall time)`,
  );
  console.table(
    rows.map(({ samples: _, p50, p90, ...r }) => ({
      ...r,
      'p50 (ms)': p50.toFixed(2),
      'p90 (ms)': p90.toFixed(2),
    })),
  );
}
// BENCH_ONLY=autoscale: only seed 002 §8 (workers that scale). Compressed ×5 by default;
// BENCH_AUTOSCALE_SCALE=1 (or --full) runs it at the seed's own length (about 9 × 210 s).
const autoscaleOptions = {
  scale: process.argv.includes('--full') ? 1 : Number(process.env.BENCH_AUTOSCALE_SCALE ?? 5),
  messages: Number(process.env.BENCH_AUTOSCALE_MESSAGES ?? 400),
  clients: (process.env.BENCH_AUTOSCALE_CLIENTS ?? '1,3,5').split(',').map(Number),
};
if (only === 'autoscale') {
  const runs = await autoscaleBench(autoscaleOptions);
  printAutoscale(runs);
  const machine = { cpu: os.cpus()[0]?.model, cores: os.cpus().length, node: process.version };
  save({
    date: new Date().toISOString(),
    machine,
    autoscale: runs,
    sections: [autoscaleSection(runs, autoscaleOptions)],
  });
  process.exit(0);
}
// BENCH_ONLY=early-exit: only the early-exit digits sweep, from the models alone (no relay).
if (only === 'early-exit') {
  // The exits' outputs (60,000 probabilities) stay out of bench.json.
  const { outputs, ...ee } = await earlyExitBench();
  printEarlyExit(ee);
  // digits-ee over a relay, a fog node and the cloud node: the same sweep timed by the fabric.
  const fabric = await earlyExitFabric(Number(process.env.BENCH_EE_RUNS ?? 200));
  printEarlyExitFabric(fabric);
  const timed = fabricSweep({ ...ee, outputs }, fabric);
  printEarlyExit(timed);
  const machine = { cpu: os.cpus()[0]?.model, cores: os.cpus().length, node: process.version };
  save({
    date: new Date().toISOString(),
    machine,
    earlyExit: ee,
    earlyExitFabric: fabric,
    sections: [earlyExitSection(ee), ...fabricSections(timed, fabric)],
  });
  process.exit(0);
}
// BENCH_ONLY=cluster: only issue 17's figures, relays sharing a Redis against one relay without
// (several minutes at the default 1,000 and 3,000 nodes: not in the full run). Sizes:
// BENCH_CLUSTER_NODES, BENCH_CLUSTER_RELAYS, BENCH_CLUSTER_CALLS, BENCH_CLUSTER_WATCHERS (0: no
// context), BENCH_CLUSTER_ROUNDS, BENCH_CLUSTER_MS (tests/bench/cluster.ts clusterOptions).
if (only === 'cluster') {
  const cluster = await clusterBench(clusterOptions());
  printCluster(cluster);
  const machine = { cpu: os.cpus()[0]?.model, cores: os.cpus().length, node: process.version };
  save({ date: new Date().toISOString(), machine, cluster, sections: [clusterSection(cluster)] });
  process.exit(0);
}
// BENCH_ONLY=servernode: only the server node vs cloud node vs tab figures.
const serverNodeRuns = Number(process.env.BENCH_SERVER_NODE_RUNS ?? 100);
if (only === 'servernode') {
  const relay = await startRelay();
  try {
    const rows = await serverNodeBench(relay, serverNodeRuns);
    printServerNode(rows);
    const machine = { cpu: os.cpus()[0]?.model, cores: os.cpus().length, node: process.version };
    save({
      date: new Date().toISOString(),
      machine,
      serverNode: rows,
      sections: [serverNodeSection(rows)],
    });
  } finally {
    await relay.stop();
    rmSync(relay.dataDir, { recursive: true, force: true });
  }
  process.exit(0);
}
if (only === 'squeezenet') {
  const relay = await startRelay();
  try {
    const figures = await squeezenetBench(relay.url, squeezenetRuns);
    printSqueezenet(figures);
    const machine = { cpu: os.cpus()[0]?.model, cores: os.cpus().length, node: process.version };
    save({
      date: new Date().toISOString(),
      machine,
      squeezenet: figures,
      sections: [squeezenetSection(figures)],
    });
  } finally {
    await relay.stop();
    rmSync(relay.dataDir, { recursive: true, force: true });
  }
  process.exit(0);
}
const hardening = () =>
  hardeningBench(
    (args) => startRelay({ args }),
    async (r) => {
      await r.stop();
      rmSync(r.dataDir, { recursive: true, force: true });
    },
    digit,
    console.log,
  );
if (only === 'hardening') {
  const h = await hardening();
  printHardening(h);
  const machine = { cpu: os.cpus()[0]?.model, cores: os.cpus().length, node: process.version };
  save({ date: new Date().toISOString(), machine, hardening: h });
  process.exit(0);
}
// BENCH_ONLY=nimbus: only the session-placement simulation (pure, no relay or browser).
if (only === 'nimbus') {
  const nimbus = nimbusBench();
  printNimbus(nimbus);
  const machine = { cpu: os.cpus()[0]?.model, cores: os.cpus().length, node: process.version };
  save({ date: new Date().toISOString(), machine, nimbus, sections: [nimbusSection(nimbus)] });
  process.exit(0);
}
const relay = await startRelay();
const setups: (Setup & { compileFirstMs: number })[] = [];
const rows: Row[] = [];
let squeezenet: SqueezenetFigures[] | undefined;
let serverNode: ServerNodeRow[] | undefined;
try {
  const results =
    only === 'fabric'
      ? []
      : [
          { where: 'tab', label: 'wasm', r: await tab(relay.url, digit, false) },
          {
            where: 'tab',
            label: 'webgpu (SwiftShader: CPU)',
            r: await tab(relay.url, digit, true),
          },
          { where: 'node', label: 'cpu (onnxruntime-node)', r: await nodeRuntime(digit) },
        ];
  for (const { where, label, r } of results) {
    if (!(where === 'tab' && label.startsWith('webgpu'))) {
      setups.push({
        where,
        compileFirstMs: r.compileFirstMs,
        compileMs: r.compileMs,
        instantiateMs: r.instantiateMs,
        logicOnlyMs: r.logicOnlyMs,
      });
    }
    for (const row of r.rows) rows.push({ where, backend: label, ...row });
  }
  if (only !== 'fabric') {
    squeezenet = await squeezenetBench(relay.url, squeezenetRuns);
    sections.push(squeezenetSection(squeezenet));
    const pipeline = await within('pipeline', () => pipelineBench(Math.min(runs, 100)));
    if (pipeline) sections.push(pipelineSection(pipeline));
    serverNode = await within('server node', () => serverNodeBench(relay, serverNodeRuns));
    if (serverNode) sections.push(serverNodeSection(serverNode));
    const ocr = await within('ocr', () => ocrBench(Number(process.env.BENCH_OCR_IMAGES ?? 10)));
    if (ocr) sections.push(ocrSection(ocr));
    // Nine runs of about 210 s / scale each (the fixed worker's backlog makes its 3- and 5-client
    // runs about 300 and 500 s), on a relay of its own, plus node starts.
    const autoscale = await within(
      'autoscale',
      () => autoscaleBench(autoscaleOptions),
      4_000_000 / autoscaleOptions.scale + 180_000,
    );
    if (autoscale) {
      printAutoscale(autoscale);
      sections.push(autoscaleSection(autoscale, autoscaleOptions));
    }
    const ee = await within('early exit', () => earlyExitBench());
    if (ee) {
      printEarlyExit(ee);
      sections.push(earlyExitSection(ee));
      const fabric = await within('early exit over the fabric', () =>
        earlyExitFabric(Math.min(runs, 200)),
      );
      if (fabric) {
        printEarlyExitFabric(fabric);
        const timed = fabricSweep(ee, fabric);
        printEarlyExit(timed);
        sections.push(...fabricSections(timed, fabric));
      }
    }
  }
} finally {
  await relay.stop();
  rmSync(relay.dataDir, { recursive: true, force: true });
}

const f = (x: number) => x.toFixed(3);
if (setups.length) console.log('Logic: compile and instantiate the digits Logic (Table II)');
if (setups.length)
  console.table(
    setups.map((s) => ({
      where: s.where,
      'compile, first (ms)': f(s.compileFirstMs),
      'compile, median (ms)': f(s.compileMs),
      'instantiate (ms)': f(s.instantiateMs),
      'Logic alone via executor (ms)': f(s.logicOnlyMs),
    })),
  );
if (rows.length) {
  console.log(
    'Model alone vs Logic + Model through the executor (Fig. 5); baseline: onnxruntime run()',
  );
  console.table(
    rows.map((r) => ({
      where: r.where,
      backend: r.backend,
      variant: r.variant,
      'onnxruntime run (ms)': f(r.engineMs),
      'model service (ms)': f(r.modelMs),
      'Logic+Model (ms)': f(r.appMs),
      'added (ms)': f(r.appMs - r.engineMs),
      'ratio app/engine': (r.appMs / r.engineMs).toFixed(1),
    })),
  );
}
if (squeezenet) printSqueezenet(squeezenet);
if (serverNode) printServerNode(serverNode);
// ——— The fabric ———
console.log('\nThe fabric: scheduling decisions per second (Laqista: 7,296/s)');
const decisionRows: DecisionRow[] = inProcessRows();
// One machine plays 10,000 nodes from one address: lift the socket caps.
const fabricRelay = await startRelay({
  args: ['--no-cloud', '--max-conns-per-address', '20000', '--max-conns', '20000'],
});
let consoleRun: Awaited<ReturnType<typeof consoleCost>> | undefined;
const contextRuns: Awaited<ReturnType<typeof contextRates>>[] = [];
const contextStore: Awaited<ReturnType<typeof contextStoreRate>>[] = [];
let contextTabs: Awaited<ReturnType<typeof contextToTabs>> | undefined;
let vad: Awaited<ReturnType<typeof vadStream>> = [];
let tabsMem: TabsMemoryRow[] = [];
const hops: {
  path: string;
  app: string;
  runtimeMs: number;
  fabricLocalMs: number;
  hopMs: number;
  mbPerS?: number;
}[] = [];
try {
  for (const b of await testBundles()) await deploy(fabricRelay, b);
  const fabricWs = `${fabricRelay.url.replace('http', 'ws')}/ws`;
  decisionRows.push(...(await relayRows(fabricWs, fabricRelay.child.pid!, { log: console.log })));
  const browser = await chromium.launch({ executablePath: chromiumPath, args: chromiumArgs });
  try {
    for (const rtc of process.env.BRUME_NETNS ? [true, false] : [false]) {
      const r =
        (await within(`hops (${rtc ? 'WebRTC' : 'relay'})`, () =>
          hopCosts(browser, fabricRelay.url, runs, rtc),
        )) ?? {};
      for (const [app, m] of Object.entries(r)) {
        hops.push({
          path: String(m.via),
          app,
          runtimeMs: Number(m.runtimeMs),
          fabricLocalMs: Number(m.fabricLocalMs),
          hopMs: Number(m.hopMs),
          ...('mbPerS' in m ? { mbPerS: Number(m.mbPerS) } : {}),
        });
      }
    }
    // Last, as they leave thousands of context operations and departures behind them.
    consoleRun = await within('admin console', () =>
      consoleCost(
        browser,
        fabricRelay.url,
        fabricRelay.token,
        `${fabricRelay.url.replace('http', 'ws')}/ws`,
        500,
      ),
    );
    const ws = `${fabricRelay.url.replace('http', 'ws')}/ws`;
    contextTabs = await within('context to tabs', () => contextToTabs(browser, fabricRelay.url, 4));
    tabsMem = (await within('tab memory', () => tabsMemory(fabricRelay.url))) ?? [];
    vad =
      (await within('vad', () =>
        vadStream(browser, fabricRelay.url, Boolean(process.env.BRUME_NETNS)),
      )) ?? [];
    for (const n of [10, 100, 1000]) {
      const c = await within(`context, ${n} nodes`, () => contextRates(ws, n));
      if (c) contextRuns.push(c);
    }
    for (const inFlight of [1, 80]) contextStore.push(await contextStoreRate(inFlight));
  } finally {
    await browser.close();
  }
} finally {
  await fabricRelay.stop();
  rmSync(fabricRelay.dataDir, { recursive: true, force: true });
}
console.table(decisionTable(decisionRows));
console.log(
  'One call across the fabric, in a tab (medians); baseline: the runtime called directly',
);
console.table(
  hops.map((h) => ({
    app: h.app,
    'runtime (ms)': f(h.runtimeMs),
    'fabric, local (ms)': f(h.fabricLocalMs),
    'one hop (ms)': f(h.hopMs),
    path: h.path,
    'hop − runtime (ms)': f(h.hopMs - h.runtimeMs),
    'MB/s': h.mbPerS === undefined ? '' : h.mbPerS.toFixed(1),
  })),
);

console.log('Context: a write reaching N watchers (medians and 99th percentiles of 50 writes)');
console.table([
  ...(contextTabs
    ? [
        {
          watchers: `${contextTabs.tabs} tabs`,
          'p50 (ms)': f(contextTabs.p50Ms),
          'p99 (ms)': f(contextTabs.p99Ms),
          'all reached p50 (ms)': '',
          'writes/s acked': '',
        },
        {
          watchers: '(writer: its own storage write)',
          'p50 (ms)': f(contextTabs.writerStore.p50Ms),
          'p99 (ms)': f(contextTabs.writerStore.p99Ms),
          'all reached p50 (ms)': '',
          'writes/s acked': '',
        },
        {
          watchers: '(writer: sent → acknowledged)',
          'p50 (ms)': f(contextTabs.relayAck.p50Ms),
          'p99 (ms)': f(contextTabs.relayAck.p99Ms),
          'all reached p50 (ms)': '',
          'writes/s acked': '',
        },
      ]
    : []),
  ...contextRuns.map((c) => ({
    watchers: `${c.nodes - 1} simulated nodes`,
    'p50 (ms)': f(c.p50Ms),
    'p99 (ms)': f(c.p99Ms),
    'all reached p50 (ms)': f(c.allReachedP50Ms),
    'writes/s acked': Math.round(c.writesPerSecond),
  })),
  ...contextStore.map((c) => ({
    watchers: `(the store alone, ${c.inFlight} in flight)`,
    'p50 (ms)': f(c.p50Ms),
    'p99 (ms)': f(c.p99Ms),
    'all reached p50 (ms)': '',
    'writes/s acked': Math.round(c.writesPerSecond),
  })),
]);
if (vad.length) {
  console.log(
    'The vad app: a chunk of 4 frames (128 ms of audio), Silero state in the context store; baseline: the calling tab',
  );
  console.table(
    vad.map((v) => ({
      'chunks run on': v.where,
      via: v.via,
      'p50 (ms)': f(v.p50Ms),
      'p90 (ms)': f(v.p90Ms),
      'model run() p50 (ms)': f(v.modelP50Ms),
      'the rest p50 (ms)': f(v.restP50Ms),
      'vs the calling tab': (v.p50Ms / vad[0]!.p50Ms).toFixed(2),
    })),
  );
}
if (tabsMem.length) {
  console.log(
    'Memory of tabs of one profile running digits, model runner shared (one SharedWorker) or one per tab; Chromium processes from /proc (Pss, Rss); baseline: not shared',
  );
  console.table(
    tabsMem.map((m) => ({
      tabs: m.tabs,
      'model runner': m.shared ? 'shared' : 'per tab',
      'renderers Pss (MiB)': m.rendererPssMiB,
      'all Pss (MiB)': m.allPssMiB,
      'renderers Rss (MiB)': m.rendererRssMiB,
      'model loads': m.modelLoads,
    })),
  );
}
if (consoleRun) {
  console.log(
    `Admin console with ${consoleRun.nodes} nodes: first full node table ${consoleRun.firstTableMs.toFixed(0)} ms after opening; long tasks take ${(consoleRun.longTaskShare * 100).toFixed(1)}% of the main thread while it updates every second`,
  );
}

console.log(
  "\nA node's call to another node through the relay, with and without decision leases (baseline: --lease-ms 0, a scheduling round trip per call)",
);
const leases: LeaseBench = await leaseBench();
console.table(
  leases.rows.map((r) => ({
    leases: r.leases,
    'p50 (ms)': f(r.p50Ms),
    'p90 (ms)': f(r.p90Ms),
    [`calls/s, ${leases.lanes} in flight`]: Math.round(r.callsPerSecond),
  })),
);
console.log(
  `without leases: ${leases.latencyRatio.toFixed(2)}× the p50; with them: ${leases.throughputRatio.toFixed(2)}× the calls/s`,
);

console.log('\nJobs pulled by 1 and 4 tabs: throughput, queue latency, and a job vs a call');
const jobsRun: JobsBench | undefined = await within('jobs', () =>
  jobsBench({ jobs: Number(process.env.BENCH_JOBS ?? 1000), rounds: 50 }),
);
if (jobsRun) {
  printJobs(jobsRun);
  sections.push(jobsSection(jobsRun));
}

console.log('\nLive migration of a vad session, graceful and killed (issue 14 §4)');
const migrationRelay = await startRelay();
const migrationRun = await within('migration', () =>
  migrationBench(migrationRelay, Number(process.env.BENCH_MIGRATIONS ?? 5)),
).finally(async () => {
  await migrationRelay.stop();
  rmSync(migrationRelay.dataDir, { recursive: true, force: true });
});
if (migrationRun) {
  printMigration(migrationRun);
  sections.push(migrationSection(migrationRun));
}

console.log('\nThe relay under load: HTTP calls, memory, soak');
const hardeningRun: HardeningResult = await hardening();
printHardening(hardeningRun);

console.log('');
const nimbus = nimbusBench();
printNimbus(nimbus);
sections.push(nimbusSection(nimbus));

const out = {
  date: new Date().toISOString(),
  machine: { cpu: os.cpus()[0]?.model, cores: os.cpus().length, node: process.version },
  runs,
  logic: setups,
  model: rows,
  fabric: {
    decisions: decisionRows,
    adminConsole: consoleRun,
    context: { tabs: contextTabs, simulated: contextRuns, store: contextStore },
    tabsMemory: tabsMem,
    vad,
    hops,
    leases,
  },
  hardening: hardeningRun,
  squeezenet,
  serverNode,
  nimbus,
  sections,
};
save(out);
