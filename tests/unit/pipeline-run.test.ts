/** The pipeline executor on a lone Runtime: every stage runs on this node (real Logics, real models). */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AppError, BrumeError, InputError, QosError, TimeoutError } from '../../core/errors';
import { createRuntime, type Runtime } from '../../core/runtime';
import { memoryAppSource } from '../../core/sources';
import { type Tensor, tensorValues } from '../../core/tensor';
import { nodePlatform } from '../../relay/platform';
import { digitLines, pipelineApp } from '../apps';

let node: Runtime;

beforeAll(async () => {
  node = createRuntime(nodePlatform(memoryAppSource([await pipelineApp()])));
  await node.refresh();
}, 120_000);
afterAll(() => node?.close());

const argmax = (t: Tensor) => {
  const v = tensorValues(t) as Float32Array;
  return v.indexOf(Math.max(...v));
};

async function failure(p: Promise<unknown>): Promise<BrumeError> {
  const e = await p.then(
    () => undefined,
    (x: unknown) => x,
  );
  expect(e).toBeInstanceOf(BrumeError);
  return e as BrumeError;
}

describe('a pipeline on a lone runtime', () => {
  it('runs pre → model → fan-out → join and answers the join with quality and ms', async () => {
    const { lines, labels } = digitLines(12);
    const input = { inputs: lines[0]!.inputs, lines };
    const r = await node.call('chain', 'chain', input, { accuracy: 0.95 });
    const v = r.value as {
      detect: { outputs: { probs: Tensor } };
      classify: { outputs: { probs: Tensor } }[];
      quality: number;
      ms: number;
    };
    expect(r.quality).toBe(2); // the faster level (0.9) is below qos.accuracy
    expect(v.quality).toBe(2);
    expect(v.ms).toBeGreaterThan(0);
    expect(v.classify).toHaveLength(12);
    // One result per element, in element order: the large model gets most held-out digits right.
    const right = v.classify.filter((c, i) => argmax(c.outputs.probs) === labels[i]).length;
    expect(right).toBeGreaterThanOrEqual(10);
    expect(argmax(v.detect.outputs.probs)).toBe(argmax(v.classify[0]!.outputs.probs));
    // The trace: each stage once, the fan-out once per branch, all on this node.
    const stages = r.trace.map((t) => `${t.stage}${t.branch === undefined ? '' : `[${t.branch}]`}`);
    expect(stages.filter((s) => s.startsWith('classify['))).toHaveLength(12);
    for (const s of ['prepare', 'detect', 'join']) expect(stages).toContain(s);
    expect(new Set(r.trace.map((t) => t.node))).toEqual(new Set([node.id]));
  });

  it('chooses the fastest level meeting the accuracy, keeps a level the caller set, refuses the impossible', async () => {
    const { lines } = digitLines(1);
    const input = { inputs: lines[0]!.inputs, lines };
    expect((await node.call('chain', 'chain', input, {})).quality).toBe(1);
    expect((await node.call('chain', 'chain', { ...input, side: 2 }, {})).quality).toBe(2);
    const e = await failure(node.call('chain', 'chain', input, { accuracy: 0.99 }));
    expect(e).toBeInstanceOf(QosError);
    expect((e as QosError).best).toBe(0.97);
    const bad = await failure(node.call('chain', 'chain', { ...input, side: 3 }, {}));
    expect(bad).toBeInstanceOf(InputError);
    expect(bad.message).toContain('input.side');
  });

  it('refuses a fan-out over something that is not a list, naming the stage', async () => {
    const e = await failure(node.call('chain', 'chain', { inputs: {}, lines: 'no' }, {}));
    expect(e).toBeInstanceOf(InputError);
    expect(e.message).toContain('stage "classify"');
    const many = await failure(node.call('chain', 'spin', { jobs: Array(129).fill({ n: 1 }) }));
    expect(many.message).toMatch(/at most 128/);
  });

  it('counts a stage deadline from when its inputs are there, not from the call', async () => {
    // The first stage spins for seconds; the second, a quick echo, has 1 s from its own start.
    const r = await node.call('chain', 'after', { n: 3_000_000_000 }, {});
    const slow = r.trace.find((t) => t.stage === 'slow')!;
    expect(slow.ms, "the first stage outlasts the second one's deadline").toBeGreaterThan(1000);
    expect(r.trace.some((t) => t.stage === 'echo')).toBe(true);
  }, 120_000);

  it("passes a stage's own failure through, and fails a stage past its deadline naming it", async () => {
    const e = await failure(node.call('chain', 'failing', {}, {}));
    expect(e).toBeInstanceOf(AppError);
    const late = await failure(node.call('chain', 'late', { n: 300_000_000 }, {}));
    expect(late).toBeInstanceOf(TimeoutError);
    expect(late.message).toContain('stage "slow"');
  });

  it('gives a several-from stage a map keyed by stage, $input as "input"', async () => {
    const r = await node.call('chain', 'spin', { jobs: [{ n: 10 }, { n: 20 }] });
    const v = r.value as { input: unknown; work: { n: number; x: number }[] };
    expect(v.input).toEqual({ jobs: [{ n: 10 }, { n: 20 }] });
    expect(v.work.map((w) => w.n)).toEqual([10, 20]);
  });
});
