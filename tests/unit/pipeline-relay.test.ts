// A pipeline called over HTTP on a real relay process (`brume start`, its cloud node joined): the
// bundle is deployed as `brume deploy` does, and every stage runs on the cloud node.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decode, encode } from '../../core/codec';
import { packBundle } from '../../core/manifest';
import type { TraceEntry } from '../../core/runtime';
import { type Tensor, tensorValues } from '../../core/tensor';
import { digitLines, pipelineApp } from '../apps';
import { deploy, type RelayProcess, startRelay } from '../relay-process';
import { until } from '../until';

let relay: RelayProcess;

beforeAll(async () => {
  relay = await startRelay();
  const b = await pipelineApp();
  const res = await deploy(relay, packBundle(b.manifest, b.files));
  expect(res.status, await res.clone().text()).toBe(201);
  const auth = { authorization: `Bearer ${relay.token}` };
  const cloudHolds = async () => {
    const nodes = (await (await fetch(`${relay.url}/api/nodes`, { headers: auth })).json()) as {
      role: string;
      apps: string[];
    }[];
    return nodes.some((n) => n.role === 'cloud' && n.apps.includes('chain'));
  };
  await until(cloudHolds, 'the cloud node to hold the app', 30_000);
}, 90_000);
afterAll(() => relay?.stop());

const post = (path: string, body: unknown) =>
  fetch(`${relay.url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/msgpack', accept: 'application/msgpack' },
    body: Buffer.from(encode(body)),
  });

describe('a pipeline through a relay process', () => {
  it('answers POST /api/call/chain/chain with the join, the quality and where each stage ran', async () => {
    const { lines, labels } = digitLines(5);
    const res = await post('/api/call/chain/chain', {
      input: { inputs: lines[0]!.inputs, lines },
      qos: { accuracy: 0.95 },
    });
    expect(res.status).toBe(200);
    const a = decode(new Uint8Array(await res.arrayBuffer())) as {
      value: { classify: { outputs: { probs: Tensor } }[]; quality: number };
      quality: number;
      trace: TraceEntry[];
      node: string;
    };
    expect(a.quality).toBe(2);
    expect(a.value.quality).toBe(2);
    const digits = a.value.classify.map((c) => {
      const v = tensorValues(c.outputs.probs) as Float32Array;
      return v.indexOf(Math.max(...v));
    });
    expect(digits.filter((d, i) => d === labels[i]).length).toBeGreaterThanOrEqual(4);
    const stages = a.trace.map((t) => t.stage);
    for (const s of ['prepare', 'detect', 'classify', 'join']) expect(stages).toContain(s);
    expect(new Set(a.trace.map((t) => t.node))).toEqual(new Set([a.node]));
  });

  it('refuses an accuracy no level reaches with E_QOS naming the best', async () => {
    const res = await post('/api/call/chain/chain', {
      input: { lines: [] },
      qos: { accuracy: 0.99 },
    });
    const body = (await res.json()) as {
      error: { code: string; constraint: string; best: number };
    };
    expect(res.status).toBeGreaterThanOrEqual(400);
    expect(body.error).toMatchObject({ code: 'E_QOS', constraint: 'accuracy', best: 0.97 });
  });

  it('refuses hostile pipeline input with E_INPUT naming what is wrong, and stays up', async () => {
    const cases: [unknown, RegExp][] = [
      [{ input: [1, 2, 3] }, /input must be a map/],
      [{ input: { side: 7, lines: [] } }, /input\.side must be one of the quality levels 1, 2/],
      [{ input: { lines: 'x' } }, /stage "classify" fans out over "lines"/],
      [{ input: { lines: Array(129).fill(0) } }, /at most 128 elements/],
    ];
    for (const [body, message] of cases) {
      const res = await post('/api/call/chain/chain', body);
      expect(res.status).toBe(400);
      const { error } = (await res.json()) as { error: { code: string; message: string } };
      expect(error.code).toBe('E_INPUT');
      expect(error.message).toMatch(message);
    }
    const ok = await post('/api/call/chain/spin', { input: { jobs: [{ n: 5 }] } });
    expect(ok.status).toBe(200);
  });
});
