// The vad app end to end in Node: the real Logic (logics/vad/detect.ts) and Silero VAD v5 in the
// real runtime (worker_threads, onnxruntime-node), its state in a real NodeContext. Streaming the
// fixture chunk by chunk must answer exactly what one direct onnxruntime-node loop answers.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NodeContext } from '../../core/context/client';
import { memoryKV } from '../../core/context/outbox';
import { BrumeError } from '../../core/errors';
import { unpackBundle } from '../../core/manifest';
import { createRuntime, type Runtime } from '../../core/runtime';
import { memoryAppSource } from '../../core/sources';
import { FRAME, loadFixture, openSession, runDirect } from '../../models/vad/vad';
import { nodePlatform } from '../../relay/platform';
import { buildLogics } from '../../scripts/build-logics';
import { packApp } from '../../scripts/pack-apps';

const root = fileURLToPath(new URL('../../', import.meta.url));
const metrics = JSON.parse(readFileSync(join(root, 'models/vad/metrics.json'), 'utf8')) as {
  variants: Record<string, { file: string; accuracy: number; bytes: number; params: number }>;
};

interface Answer {
  probs: number[];
  speech: boolean[];
  speaking: boolean;
  frame: number;
}

const { samples, labels } = loadFixture();
const frames = labels.length;
let session: ort.InferenceSession;
let direct: { probs: Float32Array; speech: Uint8Array };
let node: Runtime;
let ctx: NodeContext;
let clock = 1_000_000;
let outDir: string;

beforeAll(async () => {
  await buildLogics({ only: ['vad'] });
  outDir = mkdtempSync(join(tmpdir(), 'brume-vad-'));
  const { outPath } = await packApp(join(root, 'logics/vad/brume.json'), join(outDir, 'vad.brume'));
  const bundle = await unpackBundle(new Uint8Array(readFileSync(outPath)));
  ctx = new NodeContext({ id: 'vad-test-node' }, memoryKV(), () => clock);
  node = createRuntime(nodePlatform(memoryAppSource([bundle])), {
    context: (app, req) => ctx.serve(app, req),
  });
  await node.refresh();
  session = await openSession();
  direct = await runDirect(session, samples);
}, 120_000);

afterAll(async () => {
  node?.close();
  await session?.release();
  if (outDir) rmSync(outDir, { recursive: true, force: true });
});

/** The bytes of frames [from, to) of the fixture, as the Logic takes them. */
const chunk = (from: number, to: number) => {
  const f = samples.slice(from * FRAME, to * FRAME);
  return new Uint8Array(f.buffer);
};

async function detect(stream: string, from: number, to: number): Promise<Answer> {
  const r = await node.call('vad', 'detect', { stream, samples: chunk(from, to) });
  return r.value as Answer;
}

async function failure(p: Promise<unknown>): Promise<BrumeError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(BrumeError);
    return e as BrumeError;
  }
  throw new Error('expected the call to fail');
}

/** Largest |a − b| over frames [from, from + a.length). */
const maxDiff = (a: number[], b: ArrayLike<number>) =>
  Math.max(...a.map((v, i) => Math.abs(v - b[i]!)));

describe('vad model and fixture', () => {
  it('has the inputs and outputs models/vad/README.md names', () => {
    expect(session.inputNames).toEqual(['input', 'state', 'sr']);
    expect(session.outputNames).toEqual(['output', 'stateN']);
    const meta = Object.fromEntries(session.inputMetadata.map((m) => [m.name, m]));
    expect(meta.state).toMatchObject({ type: 'float32', shape: [2, expect.anything(), 128] });
    expect(meta.sr).toMatchObject({ type: 'int64', shape: [] });
  });

  it('agrees with the labels as metrics.json says', () => {
    let agree = 0;
    for (let i = 0; i < frames; i++) if (direct.speech[i] === labels[i]) agree++;
    expect(agree / frames).toBeCloseTo(metrics.variants.v5!.accuracy, 3);
    // Not a trivial fixture: speech and silence both, and the model tells them apart.
    const speech = labels.reduce((a, b) => a + b, 0);
    expect(speech).toBeGreaterThan(frames / 4);
    expect(speech).toBeLessThan((frames * 3) / 4);
    expect(agree / frames).toBeGreaterThan(0.85);
  });
});

describe('vad Logic, its state in the context store', () => {
  it('streams the fixture chunk by chunk with the answers of one direct loop', async () => {
    const sizes = [4, 1, 16, 7, 3, 12];
    const probs: number[] = [];
    const speech: boolean[] = [];
    let at = 0;
    for (let i = 0; at < frames; i++) {
      const to = Math.min(frames, at + sizes[i % sizes.length]!);
      const a = await detect('one', at, to);
      expect(a.probs).toHaveLength(to - at);
      expect(a.frame).toBe(to);
      expect(a.speaking).toBe(a.speech[a.speech.length - 1]);
      probs.push(...a.probs);
      speech.push(...a.speech);
      at = to;
      clock += 100;
    }
    expect(maxDiff(probs, direct.probs)).toBeLessThan(1e-5);
    expect(speech).toEqual(Array.from(direct.speech, (s) => s === 1));
    // The state it left: the stream's frame count, the decision, the last probabilities.
    const kept = ctx.get('vad', 'vad/one') as { value: Record<string, unknown>; expiresAt: number };
    expect(kept.value).toMatchObject({ frame: frames, speaking: speech[frames - 1] });
    expect(kept.value.recent).toHaveLength(8);
    expect(kept.expiresAt - clock).toBeGreaterThan(4000);
  });

  it('starts afresh when the state is deleted or has expired, and only then', async () => {
    // Frame 48 is inside the first sentence, where the state matters most.
    const cut = 48;
    const fresh = await runDirect(session, samples.subarray(cut * FRAME, (cut + 8) * FRAME));
    for (const how of ['deleted', 'expired'] as const) {
      const stream = `cut-${how}`;
      for (let at = 0; at < cut; at += 16) await detect(stream, at, at + 16);
      if (how === 'deleted') await ctx.delete('vad', `vad/${stream}`);
      else clock += 5001;
      const after = await detect(stream, cut, cut + 8);
      expect(after.frame, how).toBe(8);
      // What a new stream starting at `cut` answers, not what the continued one does.
      expect(maxDiff(after.probs, fresh.probs), how).toBeLessThan(1e-5);
      expect(maxDiff(after.probs, direct.probs.subarray(cut)), how).toBeGreaterThan(0.01);
    }
    // Within the TTL the stream goes on.
    for (let at = 0; at < cut; at += 16) await detect('kept', at, at + 16);
    clock += 4000;
    const later = await detect('kept', cut, cut + 8);
    expect(later.frame).toBe(cut + 8);
    expect(maxDiff(later.probs, direct.probs.subarray(cut))).toBeLessThan(1e-5);
  });

  it('refuses bad input with E_INPUT, before touching the context', async () => {
    const call = (input: unknown) => node.call('vad', 'detect', input);
    const cases: [unknown, RegExp][] = [
      [{ stream: 'bad', samples: new Uint8Array(1000) }, /2048·k bytes.*got 1000 bytes/],
      [{ stream: 'bad', samples: chunk(0, 17) }, /1 ≤ k ≤ 16\), got 34816 bytes/],
      [{ stream: 'bad', samples: new Uint8Array(0) }, /got 0 bytes/],
      [{ samples: chunk(0, 1) }, /input\.stream/],
      [{ stream: '', samples: chunk(0, 1) }, /input\.stream: must be 1 to 128/],
      [{ stream: 'bad', samples: [0.1, 0.2] }, /input\.samples: expected bin/],
      [
        { stream: 'bad', samples: new Uint8Array(new Float32Array(FRAME).fill(Number.NaN).buffer) },
        /sample 0 is not a finite number/,
      ],
    ];
    for (const [input, message] of cases) {
      const e = await failure(call(input));
      expect(e.code).toBe('E_INPUT');
      expect(e.message).toMatch(message);
    }
    expect(ctx.get('vad', 'vad/bad')).toBeUndefined();
  });
});
