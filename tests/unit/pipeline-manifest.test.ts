import { describe, expect, it } from 'vitest';
import { ManifestError } from '../../core/errors';
import { type Manifest, parseManifest } from '../../core/manifest';
import { findCycle, stageOrder } from '../../core/pipeline/schema';

const sha = 'a'.repeat(64);

/** The agreed shape (issue 13) on a small app: pre → model → fan-out → join. */
const good: Manifest = {
  brume: 1,
  name: 'ocr',
  version: '1.0.0',
  files: { 'a.wasm': { sha256: sha, size: 1 }, 'd.onnx': { sha256: sha, size: 1 } },
  services: {
    pre: { kind: 'logic', file: 'a.wasm', rpcs: ['prepare'] },
    post: { kind: 'logic', file: 'a.wasm', rpcs: ['boxes', 'join'] },
    det: {
      kind: 'model',
      task: 't',
      inputs: [{ name: 'x', type: 'float32', dims: [-1] }],
      outputs: [{ name: 'y', type: 'float32', dims: [-1] }],
      variants: {
        v4: {
          file: 'd.onnx',
          accuracy: 0.9,
          latencyMs: 1,
          params: 1,
          weights: 'trained',
          measured: 'm',
        },
      },
    },
  },
  pipelines: {
    read: {
      description: 'text lines',
      stages: {
        prepare: { service: 'pre', rpc: 'prepare', from: ['$input'], class: 'NI' },
        detect: { service: 'det', from: ['prepare'], class: 'LI' },
        boxes: {
          service: 'post',
          rpc: 'boxes',
          from: ['$input', 'prepare', 'detect'],
          class: 'NI',
        },
        recognize: {
          service: 'det',
          rpc: 'v4',
          from: ['boxes'],
          each: 'lines',
          class: 'HI',
          priority: 1,
          deadlineMs: 3000,
        },
        join: { service: 'post', rpc: 'join', from: ['boxes', 'recognize'], class: 'NI' },
      },
      output: 'join',
      quality: {
        field: 'side',
        levels: [
          { value: 320, accuracy: 0.8, latencyMs: 150, measured: 'm' },
          { value: 640, accuracy: 0.93, latencyMs: 400, measured: 'm' },
        ],
      },
    },
  },
  demos: [{ title: 'sample', service: 'read', input: { width: 1 } }],
};

// biome-ignore lint/suspicious/noExplicitAny: these tests break the manifest's types on purpose
type Untyped = any;

function refusal(edit: (m: Untyped) => void): string {
  const m: Untyped = structuredClone(good);
  edit(m);
  try {
    parseManifest(m);
  } catch (e) {
    expect(e).toBeInstanceOf(ManifestError);
    return (e as ManifestError).message;
  }
  throw new Error('parseManifest accepted a pipeline that breaks a rule');
}

const st = (m: Untyped) => m.pipelines.read.stages;

describe('pipelines in the manifest', () => {
  it('accepts the agreed shape and keeps it as written', () => {
    const m = parseManifest(structuredClone(good));
    expect(m.pipelines).toEqual(good.pipelines);
    expect(stageOrder(m.pipelines!.read!.stages)).toEqual([
      'prepare',
      'detect',
      'boxes',
      'recognize',
      'join',
    ]);
  });

  const rules: [string, (m: Untyped) => void, string][] = [
    [
      'an unknown stage in from',
      (m) => {
        st(m).detect.from = ['detct'];
      },
      'pipelines.read.stages.detect.from[0]: unknown stage "detct"',
    ],
    [
      'an unknown service',
      (m) => {
        st(m).detect.service = 'nope';
      },
      'pipelines.read.stages.detect.service: no service "nope"',
    ],
    [
      'an rpc a Logic lacks',
      (m) => {
        st(m).prepare.rpc = 'prep';
      },
      'pipelines.read.stages.prepare.rpc: "prep" is not an rpc of service "pre"',
    ],
    [
      'a variant a Model lacks',
      (m) => {
        st(m).detect.rpc = 'v5';
      },
      'pipelines.read.stages.detect.rpc: "v5" is not an rpc of service "det"',
    ],
    [
      'each on a several-from stage',
      (m) => {
        st(m).join.each = 'lines';
      },
      'pipelines.read.stages.join.each: fans out over one predecessor',
    ],
    [
      'an output that is not a stage',
      (m) => {
        m.pipelines.read.output = 'joined';
      },
      'pipelines.read.output: unknown stage "joined"',
    ],
    [
      'a pipeline named like a service',
      (m) => {
        m.pipelines.pre = m.pipelines.read;
      },
      'pipelines.pre: "pre" is a service\'s name',
    ],
    [
      'a stage named input',
      (m) => {
        st(m).input = st(m).prepare;
      },
      'pipelines.read.stages.input is not a valid name',
    ],
    [
      'an unknown class',
      (m) => {
        st(m).detect.class = 'XI';
      },
      'pipelines.read.stages.detect.class',
    ],
    [
      'a fractional priority',
      (m) => {
        st(m).detect.priority = 0.5;
      },
      'pipelines.read.stages.detect.priority must be an integer',
    ],
    [
      'a zero deadline',
      (m) => {
        st(m).detect.deadlineMs = 0;
      },
      'pipelines.read.stages.detect.deadlineMs must be at least 1',
    ],
    [
      'an empty from',
      (m) => {
        st(m).detect.from = [];
      },
      'pipelines.read.stages.detect.from must name at least one',
    ],
    [
      'a stage taking itself',
      (m) => {
        st(m).detect.from = ['detect'];
      },
      'pipelines.read.stages.detect.from[0]: a stage cannot take its own value',
    ],
    [
      'a from twice',
      (m) => {
        st(m).boxes.from = ['prepare', 'prepare'];
      },
      'pipelines.read.stages.boxes.from[1]: "prepare" twice',
    ],
    [
      'a stage whose value goes nowhere',
      (m) => {
        st(m).extra = { service: 'pre', from: ['$input'], class: 'NI' };
      },
      'pipelines.read.stages.extra: its value goes nowhere',
    ],
    [
      'no stage taking $input',
      (m) => {
        st(m).prepare.from = ['detect'];
      },
      'pipelines.read.stages',
    ],
    [
      'a quality level twice',
      (m) => {
        m.pipelines.read.quality.levels[1].value = 320;
      },
      'pipelines.read.quality.levels[1].value: 320 twice',
    ],
    [
      'a quality without levels',
      (m) => {
        m.pipelines.read.quality.levels = [];
      },
      'pipelines.read.quality.levels must hold at least one level',
    ],
    [
      'a bad quality field',
      (m) => {
        m.pipelines.read.quality.field = 'a b';
      },
      'pipelines.read.quality.field must be a field name',
    ],
    [
      'an accuracy above 1',
      (m) => {
        m.pipelines.read.quality.levels[0].accuracy = 1.5;
      },
      'pipelines.read.quality.levels[0].accuracy must be at most 1',
    ],
    [
      'an unknown stage field',
      (m) => {
        st(m).detect.classs = 'LI';
      },
      'pipelines.read.stages.detect.classs is not a known field',
    ],
    [
      'an rpc on a pipeline demo',
      (m) => {
        m.demos[0].rpc = 'x';
      },
      'demos[0].rpc: "read" is a pipeline',
    ],
  ];

  it.each(rules)('refuses %s, naming the field', (_what, edit, field) => {
    const message = refusal(edit);
    expect(message.startsWith(field), message).toBe(true);
  });

  it('refuses a cycle and says where it runs', () => {
    const message = refusal((m) => {
      st(m).prepare.from = ['$input', 'join'];
    });
    expect(message).toMatch(/^pipelines\.read\.stages\.\w+\.from: a cycle: /);
    for (const s of ['prepare', 'join']) expect(message).toContain(s);
  });

  it('finds a cycle in data-flow order, and none in a DAG', () => {
    // a → b → c → a, from whichever stage it starts
    const cycle = findCycle({
      a: { from: ['$input', 'c'] },
      b: { from: ['a'] },
      c: { from: ['b'] },
    });
    expect(['a,b,c', 'b,c,a', 'c,a,b']).toContain(cycle?.join(','));
    expect(findCycle(good.pipelines!.read!.stages)).toBeUndefined();
  });

  it('does not mistake inherited names for stages or services', () => {
    for (const name of ['constructor', 'toString', 'hasOwnProperty']) {
      const from = refusal((m) => {
        st(m).detect.from = [name];
      });
      expect(from).toContain(`unknown stage "${name}"`);
      const service = refusal((m) => {
        st(m).detect.service = name.toLowerCase();
      });
      expect(service).toContain(`no service "${name.toLowerCase()}"`);
      const output = refusal((m) => {
        m.pipelines.read.output = name;
      });
      expect(output).toContain(`unknown stage "${name}"`);
    }
  });

  it('bounds the number of stages', () => {
    const message = refusal((m) => {
      for (let i = 0; i < 40; i++)
        st(m)[`s${i}`] = { service: 'pre', from: ['$input'], class: 'NI' };
    });
    expect(message).toContain('pipelines.read.stages must hold at most 32 stages');
  });
});
