/**
 * SqueezeNet 1.1 (random weights, models/squeezenet/) through Brume: Logic + Model over the Model
 * alone over onnxruntime's own run(), in a tab (onnxruntime-web, WASM) and in a Node node
 * (onnxruntime-node, as the relay's cloud node runs it), side by side in one run. Answers plain
 * data, with every sample kept for the latency distributions, and the report's Section.
 *
 * @example const r = await squeezenetBench(relay.url, 50); squeezenetSection(r)
 */
import { chromium } from 'playwright-core';
import { createRuntime } from '../../core/runtime';
import { memoryAppSource } from '../../core/sources';
import { chromiumArgs, chromiumPath } from '../../playwright.config';
import { nodePlatform } from '../../relay/platform';
import { rgbaImage, squeezenetApp } from '../apps';
import type { Section } from './report';

type Invoke = (
  service: string,
  input: unknown,
  opts: { rpc?: string; backend?: string },
) => Promise<{ ms: number; value: unknown; trace: { engineMs?: number }[] }>;

export interface SqueezenetFigures {
  where: string;
  backend: string;
  /** Medians. */
  engineMs: number;
  modelMs: number;
  appMs: number;
  /** The Logic's preprocess rpc alone (resize, normalize, answer 602 KB). */
  logicOnlyMs: number;
  samples: { engineMs: number[]; modelMs: number[]; appMs: number[] };
}

/** Self-contained: it is sent to the page as source. */
async function measureSqueezenet(
  invoke: Invoke,
  image: { width: number; height: number; pixels: Uint8Array },
  runs: number,
  backend?: string,
) {
  const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const pre = (await invoke('classify', image, { rpc: 'preprocess' })).value as {
    data: Uint8Array;
  };
  const tensor = {
    inputs: { data: { type: 'float32', dims: [1, 3, 224, 224], data: pre.data } },
  };
  // Warm-up: the model session, the Logic's worker, the JIT.
  for (let i = 0; i < 5; i++) {
    await invoke('classify', image, { backend });
    await invoke('model', tensor, { rpc: 'v11', backend });
  }
  const logicOnly: number[] = [];
  const engine: number[] = [];
  const model: number[] = [];
  const app: number[] = [];
  // Alternating, so a slow spell of the machine hits all three alike.
  for (let i = 0; i < runs; i++) {
    logicOnly.push((await invoke('classify', image, { rpc: 'preprocess' })).ms);
    const r = await invoke('model', tensor, { rpc: 'v11', backend });
    model.push(r.ms);
    engine.push(r.trace[0]!.engineMs!);
    app.push((await invoke('classify', image, { backend })).ms);
  }
  return {
    engineMs: med(engine),
    modelMs: med(model),
    appMs: med(app),
    logicOnlyMs: med(logicOnly),
    samples: { engineMs: engine, modelMs: model, appMs: app },
  };
}

const image = () => ({ width: 320, height: 240, pixels: rgbaImage(320, 240) });

/** In a fresh Chromium tab joined to the relay at `url` (which serves the squeezenet app). */
export async function squeezenetInTab(url: string, runs: number): Promise<SqueezenetFigures> {
  const browser = await chromium.launch({ executablePath: chromiumPath, args: chromiumArgs });
  try {
    const page = await browser.newPage();
    // tsx (esbuild keepNames) wraps functions in __name(); the page needs it to run the source.
    await page.addInitScript('globalThis.__name = (f) => f');
    await page.goto(url);
    const img = image();
    const r = await page.evaluate(
      async ({ source, runs, width, height, pixels }) => {
        const run = new Function(`return ${source}`)() as typeof measureSqueezenet;
        await window.brume.ready;
        const fabric = await window.brumeDebug.fabric;
        await fabric.whenJoined(20_000);
        const me = fabric.nodeId;
        // Pinned to this tab: the figures are the tab's, not a node the relay might pick.
        const invoke: Invoke = (service, input, opts) =>
          window.brume.invoke('squeezenet', service, input, { privacy: me }, opts as never);
        const bytes = Uint8Array.from(atob(pixels), (c) => c.charCodeAt(0));
        return run(invoke, { width, height, pixels: bytes }, runs, 'wasm');
      },
      {
        source: measureSqueezenet.toString(),
        runs,
        width: img.width,
        height: img.height,
        pixels: Buffer.from(img.pixels).toString('base64'),
      },
    );
    return { where: 'tab', backend: 'onnxruntime-web, wasm', ...r };
  } finally {
    await browser.close();
  }
}

/** In a Node node (the runtime the relay's cloud node runs: worker_threads, onnxruntime-node). */
export async function squeezenetInNode(runs: number): Promise<SqueezenetFigures> {
  const node = createRuntime(nodePlatform(memoryAppSource([await squeezenetApp()])));
  await node.refresh();
  try {
    const invoke: Invoke = (service, input, opts) =>
      node.call('squeezenet', service, input, {}, opts as never);
    const r = await measureSqueezenet(invoke, image(), runs);
    return { where: 'node', backend: 'onnxruntime-node, cpu', ...r };
  } finally {
    node.close();
  }
}

/** Both, tab first. */
export async function squeezenetBench(url: string, runs: number): Promise<SqueezenetFigures[]> {
  return [await squeezenetInTab(url, runs), await squeezenetInNode(runs)];
}

/** The report's section: one row per place, the node's run() as the tab's baseline. */
export function squeezenetSection(figures: SqueezenetFigures[]): Section {
  const nodeEngine = figures.find((f) => f.where === 'node')?.engineMs;
  return {
    id: 'squeezenet',
    title: 'SqueezeNet 1.1 (random weights, 224×224): Logic + Model vs Model alone, tab vs Node',
    baseline:
      "onnxruntime's own run() in the same calls; for the tab, also onnxruntime-node's run() in the same bench run",
    note: 'Laqista reports 13.8 ms end to end for SqueezeNet, 3.2 ms over native, and onnxruntime-web WASM vs native 29.7 vs 4.8 ms on its CPU. Here onnxruntime runs on one thread in both (Node: intraOpNumThreads 1; the tab: numThreads 1, the page is not cross-origin isolated). "Brume adds" is Logic+Model minus run(): the Logic\'s own work (resize and normalize a 320×240 RGBA image; the preprocess column times it alone, answer included) and carrying its 602 KB tensor to the model through MessagePack and the workers.',
    rows: figures.map((f) => ({
      label: `${f.where}, ${f.backend}`,
      'onnxruntime run (ms)': f.engineMs,
      'model service (ms)': f.modelMs,
      'Logic+Model (ms)': f.appMs,
      'Brume adds (ms)': f.appMs - f.engineMs,
      'ratio app/engine': f.appMs / f.engineMs,
      'run() vs Node run()': nodeEngine ? f.engineMs / nodeEngine : undefined,
      'Logic preprocess alone (ms)': f.logicOnlyMs,
    })),
    series: [
      {
        id: 'latency',
        title: 'SqueezeNet: latency distributions',
        x: 'latency (ms)',
        y: 'share of calls ≤ x',
        kind: 'cdf',
        logX: true,
        lines: figures.flatMap((f) => [
          { label: `${f.where}: run()`, samples: f.samples.engineMs },
          { label: `${f.where}: Logic+Model`, samples: f.samples.appMs },
        ]),
      },
    ],
  };
}
