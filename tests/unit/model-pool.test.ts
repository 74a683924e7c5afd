// Model sessions that scale on a Node node (relay/platform.ts onnxNodeRunner over
// core/exec/session-pool.ts and core/exec/scaler.ts), with real onnxruntime-node and the trained
// digits model: concurrent runs grow the sessions to their max and no further, they retire one
// per idle period down to none, a run after that makes one again, and every answer is the one a
// single session gives. Through the runtime: the heartbeat figures and the scale log.

import { readFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { modelSessionsMax } from '../../core/exec/loader';
import type { ModelRunnerApi, ModelScale } from '../../core/exec/model-runner';
import type { ScaleEvent } from '../../core/exec/scaler';
import { buildManifest, type ManifestDraft } from '../../core/manifest';
import { createRuntime } from '../../core/runtime';
import { memoryAppSource } from '../../core/sources';
import type { Tensor } from '../../core/tensor';
import { nodePlatform, onnxNodeRunner } from '../../relay/platform';
import { digitLines } from '../apps';
import { until } from '../until';

const large = new Uint8Array(
  readFileSync(new URL('../../models/digits/large.onnx', import.meta.url)),
);
const KEY = 'large';
const { lines } = digitLines(24);
const inputs = lines.map((l) => l.inputs as Record<string, Tensor>);

const runners: ModelRunnerApi[] = [];
afterEach(async () => {
  for (const r of runners.splice(0)) await r.unload(KEY);
});

async function runner(scale?: ModelScale) {
  const r = onnxNodeRunner(1);
  runners.push(r);
  // Each event with the monotonic time it was told at (the scaler's clock; `at` is wall time).
  const events: (ScaleEvent & { t: number })[] = [];
  r.listenScale?.((e) => events.push({ ...e, t: performance.now() }));
  const loaded = await r.load(KEY, large, ['cpu'], scale);
  expect(loaded.ok).toBe(true);
  const pool = () => r.pools?.()[KEY];
  return { r, events, pool };
}

async function probs(r: ModelRunnerApi, input: Record<string, Tensor>): Promise<number[]> {
  const reply = await r.run(KEY, input);
  if (!reply.ok) throw new Error(reply.error.message);
  const t = reply.value.outputs.probs!;
  return [...new Float32Array(t.data.slice().buffer)];
}

describe('a model pool of sessions on onnxruntime-node', () => {
  it('grows to its max under concurrent runs and no further, answering as one session does', async () => {
    const single = await runner();
    const want = [];
    for (const x of inputs) want.push(await probs(single.r, x));

    const { r, events, pool } = await runner({ name: 'digits/model', max: 3, idleMs: 60_000 });
    expect(pool()).toMatchObject({ workers: 1, starting: 0, busy: 0, queued: 0, max: 3 });
    const running = Promise.all(inputs.map((x) => probs(r, x)));
    // One run took the session load made; the rest wait, and two more start for them (the max).
    expect(pool()).toMatchObject({ workers: 1, starting: 2, busy: 1, queued: inputs.length - 1 });
    expect(await running).toEqual(want);
    expect(pool()).toMatchObject({ workers: 3, starting: 0, busy: 0, queued: 0 });
    const grows = events.filter((e) => e.kind === 'grow');
    expect(Math.max(...grows.map((e) => e.to))).toBe(3);
    expect(events.every((e) => e.service === 'digits/model')).toBe(true);
    // A second burst finds three idle sessions: none is added.
    expect(await Promise.all(inputs.map((x) => probs(r, x)))).toEqual(want);
    expect(events.filter((e) => e.kind === 'grow')).toHaveLength(grows.length);
  });

  it('retires one session per idle period down to none, and a later run makes one again', async () => {
    const idleMs = 250;
    const { r, events, pool } = await runner({ name: 'digits/model', max: 3, idleMs });
    const want = await probs(r, inputs[0]!);
    await Promise.all(inputs.map((x) => probs(r, x)));
    expect(pool()?.workers).toBeGreaterThanOrEqual(2);
    await until(() => pool()?.workers === 0, 'the sessions to retire to none', 30_000);
    const shrinks = events.filter((e) => e.kind === 'shrink');
    expect(shrinks.length).toBeGreaterThanOrEqual(2);
    for (const e of shrinks) expect(e.from - e.to).toBe(1);
    expect(shrinks.at(-1)!.to).toBe(0);
    // Each retirement waits a whole idle period after the one before (timers may round down 1 ms).
    for (let i = 1; i < shrinks.length; i++)
      expect(shrinks[i]!.t - shrinks[i - 1]!.t).toBeGreaterThanOrEqual(idleMs - 2);
    // No load() again: the model's bytes and names were kept.
    expect(await probs(r, inputs[0]!)).toEqual(want);
    expect(pool()).toMatchObject({ workers: 1, queued: 0 });
  });

  it('keeps one session when the service asks no scale (the default)', async () => {
    const { r, events, pool } = await runner();
    const results = await Promise.all(inputs.map((x) => probs(r, x)));
    expect(results).toHaveLength(inputs.length);
    expect(pool()).toMatchObject({ workers: 1, starting: 0, max: 1 });
    expect(events.every((e) => e.to <= 1)).toBe(true);
  });

  it('fails waiting runs with a typed error when the model is unloaded', async () => {
    const { r } = await runner({ name: 'digits/model', max: 1, idleMs: 60_000 });
    const runs = inputs.slice(0, 4).map((x) => r.run(KEY, x));
    await r.unload(KEY);
    const replies = await Promise.all(runs);
    // The run that held the session ends normally; those waiting learn the model went.
    const failed = replies.filter((x) => !x.ok);
    expect(failed.length).toBeGreaterThanOrEqual(3);
    for (const f of failed) if (!f.ok) expect(f.error.code).toBe('E_MODEL_RUN');
    const after = await r.run(KEY, inputs[0]!);
    expect(after.ok).toBe(false);
  });
});

describe('the sessions a model service may have on a node', () => {
  const MiB = 2 ** 20;
  it('is its scale.max (default 1) within the node maxWorkers and memory over the model size', () => {
    expect(modelSessionsMax(undefined, MiB, { maxWorkers: 8 })).toBe(1);
    expect(modelSessionsMax({ max: 6 }, MiB, { maxWorkers: 8 })).toBe(6);
    expect(modelSessionsMax({ max: 6 }, MiB, { maxWorkers: 4 })).toBe(4);
    expect(modelSessionsMax({ max: 8 }, 100 * MiB, { maxWorkers: 8, workersMemoryMiB: 256 })).toBe(
      2,
    );
    // A model larger than the budget still gets its one session.
    expect(modelSessionsMax({ max: 8 }, 900 * MiB, { maxWorkers: 8, workersMemoryMiB: 256 })).toBe(
      1,
    );
    // No node cap set: the node's logicWorkers, as for a Logic.
    expect(modelSessionsMax({ max: 6 }, MiB, { logicWorkers: 2 })).toBe(2);
  });
});

describe('a runtime on Node with a model service that declares scale', () => {
  it('reports its sessions in workers and workersMax, and logs their scale events', async () => {
    const draft: ManifestDraft = {
      brume: 1,
      name: 'pooled',
      version: '1.0.0',
      services: {
        model: {
          kind: 'model',
          task: 'digit-classification',
          inputs: [{ name: 'pixels', type: 'float32', dims: [-1, 784] }],
          outputs: [{ name: 'probs', type: 'float32', dims: [-1, 10] }],
          variants: {
            large: {
              file: 'large.onnx',
              accuracy: 0.9,
              latencyMs: 1,
              params: 1,
              weights: 'trained',
              measured: 'test fixture',
            },
          },
          scale: { max: 3, idleMs: 60_000 },
        },
      },
    };
    const files = { 'large.onnx': large };
    const bundle = { manifest: await buildManifest(draft, files), files };
    const platform = nodePlatform(memoryAppSource([bundle]));
    const node = createRuntime(platform, {
      maxWorkers: 2,
      workerIdleMs: 200,
    });
    await node.refresh();
    expect(node.workersMax()).toEqual({ 'pooled/model': 2 });
    const calls = lines.map((l) => node.call('pooled', 'model', l));
    await Promise.all(calls);
    expect(node.workers()['pooled/model']).toMatchObject({ max: 2 });
    expect(node.scaleLog.grows).toBeGreaterThanOrEqual(2);
    expect(Math.max(...node.scaleLog.events.map((e) => e.to))).toBe(2);
    await until(() => node.workers()['pooled/model']?.workers === 0, 'the sessions to retire');
    expect(node.scaleLog.shrinks).toBeGreaterThanOrEqual(2);
    expect(node.scaleLog.events.every((e) => e.service === 'pooled/model')).toBe(true);
    node.close();
    // The runner outlives the node here: its later grows no longer reach the closed node's log.
    const counted = node.scaleLog.grows;
    const key = Object.keys(platform.models.pools?.() ?? {})[0]!;
    await Promise.all(inputs.map((x) => platform.models.run(key, x)));
    expect(platform.models.pools?.()[key]?.workers).toBeGreaterThanOrEqual(1);
    expect(node.scaleLog.grows).toBe(counted);
    await platform.models.unload(key);
  });
});
