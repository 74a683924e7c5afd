import { describe, expect, it } from 'vitest';
import { encode } from '../../core/codec';
import { BundleIntegrityError, CodecError, ManifestError } from '../../core/errors';
import {
  BUNDLE_FORMAT,
  buildManifest,
  type Manifest,
  type ManifestDraft,
  manifestSha256,
  packBundle,
  parseManifest,
  sha256Hex,
  unpackBundle,
  verifyFile,
} from '../../core/manifest';

const bytes = (text: string) => new TextEncoder().encode(text);

const files: Record<string, Uint8Array> = {
  'logic/classify.wasm': bytes('\0asm pretend logic'),
  'models/small.onnx': bytes('pretend small model'),
  'models/large.onnx': bytes('pretend large model, a bit larger'),
  'assets/labels.json': bytes('["0","1","2","3","4","5","6","7","8","9"]'),
};

const draft: ManifestDraft = {
  brume: 1,
  name: 'digits',
  version: '1.0.0',
  description: 'Handwritten digit recognition',
  services: {
    classify: {
      kind: 'logic',
      file: 'logic/classify.wasm',
      rpcs: ['classify', 'preprocess'],
      limits: { timeoutMs: 2000, memoryMiB: 16 },
    },
    model: {
      kind: 'model',
      task: 'digit-classification',
      inputs: [{ name: 'pixels', type: 'float32', dims: [-1, 784] }],
      outputs: [{ name: 'probs', type: 'float32', dims: [-1, 10] }],
      variants: {
        small: {
          file: 'models/small.onnx',
          accuracy: 0.93,
          latencyMs: 0.05,
          params: 25450,
          weights: 'trained',
          measured: 'test fixture',
        },
        large: {
          file: 'models/large.onnx',
          accuracy: 0.97,
          latencyMs: 0.2,
          params: 235146,
          weights: 'random',
          measured: 'test fixture',
        },
      },
    },
  },
};

const good = await buildManifest(draft, files);

// biome-ignore lint/suspicious/noExplicitAny: these tests break the manifest's types on purpose
type Untyped = any;

/** A deep copy of the good manifest, changed by `edit`. */
function broken(edit: (m: Untyped) => void): unknown {
  const m: Untyped = structuredClone(good);
  edit(m);
  return m;
}

function manifestError(json: unknown): ManifestError {
  try {
    parseManifest(json);
  } catch (e) {
    expect(e).toBeInstanceOf(ManifestError);
    expect((e as ManifestError).code).toBe('E_MANIFEST');
    return e as ManifestError;
  }
  throw new Error('parseManifest accepted a manifest that breaks a rule');
}

async function integrityError(p: Promise<unknown>): Promise<BundleIntegrityError> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(BundleIntegrityError);
  expect((e as BundleIntegrityError).code).toBe('E_INTEGRITY');
  return e as BundleIntegrityError;
}

describe('parseManifest', () => {
  it('accepts the manifest of PROTOCOL.md §2.1', () => {
    const m = parseManifest(JSON.parse(JSON.stringify(good)));
    expect(m).toEqual(good);
    expect(Object.keys(m.files)).toEqual(Object.keys(files).sort());
    expect(m.files['models/small.onnx']).toEqual({
      sha256: expect.stringMatching(/^[0-9a-f]{64}$/),
      size: files['models/small.onnx']!.byteLength,
    });
  });

  it('accepts scale on any service', () => {
    const m = JSON.parse(JSON.stringify(good));
    m.services.classify.scale = { max: 20, idleMs: 30_000 };
    m.services.model.scale = { max: 2 };
    expect(parseManifest(m).services.classify).toMatchObject({
      scale: { max: 20, idleMs: 30_000 },
    });
  });

  it('accepts a logic service without limits and a model with a free dimension', () => {
    const m = broken((m) => {
      delete m.services.classify.limits;
      delete m.description;
    });
    expect(() => parseManifest(m)).not.toThrow();
  });

  it('accepts the apps it uses, each with a semver range', () => {
    const m = parseManifest(broken((m) => (m.uses = { vad: '^1.0.0', squeezenet: '1.2.x' })));
    expect(m.uses).toEqual({ vad: '^1.0.0', squeezenet: '1.2.x' });
  });

  it('accepts the model services a Logic depends on, or none', () => {
    const declared = parseManifest(broken((m) => (m.services.classify.models = ['model'])));
    expect(declared.services.classify).toMatchObject({ kind: 'logic', models: ['model'] });
    expect(() => parseManifest(broken((m) => (m.services.classify.models = [])))).not.toThrow();
  });

  it('accepts the tiers a service runs on and an exit head on a model', () => {
    const m = parseManifest(
      broken((m) => {
        m.services.classify.tiers = ['fog', 'cloud'];
        m.services.model.tiers = ['cloud'];
        m.services.model.exit = { output: 'probs', rule: 'entropy', threshold: 0.3 };
      }),
    );
    expect(m.services.classify!.tiers).toEqual(['fog', 'cloud']);
    expect(m.services.model).toMatchObject({
      tiers: ['cloud'],
      exit: { output: 'probs', rule: 'entropy', threshold: 0.3 },
    });
    const off = { output: 'probs', rule: 'top', threshold: 1, off: true };
    expect(() => parseManifest(broken((m) => (m.services.model.exit = off)))).not.toThrow();
  });

  // [what breaks the rule, the field path the message must start with]
  const rules: [string, (m: Untyped) => void, string][] = [
    ['format version', (m) => (m.brume = 2), 'brume'],
    ['missing format version', (m) => delete m.brume, 'brume is required'],
    ['name with capitals', (m) => (m.name = 'Digits'), 'name'],
    ['name too long', (m) => (m.name = `a${'b'.repeat(64)}`), 'name'],
    ['version not semver', (m) => (m.version = '1.0'), 'version'],
    ['version with a v', (m) => (m.version = 'v1.0.0'), 'version'],
    [
      'demo for a service the app lacks',
      (m) => (m.demos = [{ title: 'try', service: 'nope', input: 1 }]),
      'demos[0].service',
    ],
    [
      'demo rpc the service lacks',
      (m) => (m.demos = [{ title: 'try', service: 'classify', rpc: 'nope', input: 1 }]),
      'demos[0].rpc: "nope" is not an rpc of service "classify" (it has: classify, preprocess)',
    ],
    [
      'uses with a bad range',
      (m) => (m.uses = { vad: 'one or two' }),
      'uses.vad must be a semver range',
    ],
    ['uses naming a bad app name', (m) => (m.uses = { VAD: '^1.0.0' }), 'uses'],
    [
      'uses naming itself',
      (m) => (m.uses = { digits: '^1.0.0' }),
      'uses.digits: an app does not use itself',
    ],
    [
      'demo input over 64 KiB',
      (m) => (m.demos = [{ title: 'big', service: 'classify', input: 'x'.repeat(70_000) }]),
      'demos[0].input',
    ],
    [
      'path escaping with ..',
      (m) => (m.files['../evil'] = m.files['models/small.onnx']),
      'files["../evil"]',
    ],
    [
      'absolute path',
      (m) => (m.files['/etc/passwd'] = m.files['models/small.onnx']),
      'files["/etc/passwd"]',
    ],
    ['path with a space', (m) => (m.files['a b'] = m.files['models/small.onnx']), 'files["a b"]'],
    [
      'uppercase sha256',
      (m) => (m.files['models/small.onnx'].sha256 = 'A'.repeat(64)),
      'files["models/small.onnx"].sha256',
    ],
    [
      'negative size',
      (m) => (m.files['models/small.onnx'].size = -1),
      'files["models/small.onnx"].size',
    ],
    ['no services', (m) => (m.services = {}), 'services'],
    ['bad service name', (m) => (m.services.Model = m.services.model), 'services.Model'],
    [
      'unknown service kind',
      (m) => (m.services.classify.kind = 'lambda'),
      'services.classify.kind',
    ],
    ['logic without rpcs', (m) => (m.services.classify.rpcs = []), 'services.classify.rpcs'],
    [
      'logic file not listed',
      (m) => (m.services.classify.file = 'logic/other.wasm'),
      'services.classify.file',
    ],
    [
      'zero memory limit',
      (m) => (m.services.classify.limits.memoryMiB = 0),
      'services.classify.limits.memoryMiB',
    ],
    [
      'fractional timeout',
      (m) => (m.services.classify.limits.timeoutMs = 1.5),
      'services.classify.limits.timeoutMs',
    ],
    [
      'scale max over 64',
      (m) => (m.services.classify.scale = { max: 65 }),
      'services.classify.scale.max',
    ],
    ['scale max of none', (m) => (m.services.model.scale = { max: 0 }), 'services.model.scale.max'],
    [
      'scale idle time too short',
      (m) => (m.services.classify.scale = { idleMs: 10 }),
      'services.classify.scale.idleMs',
    ],
    [
      'unknown scale field',
      (m) => (m.services.classify.scale = { min: 1 }),
      'services.classify.scale.min is not a known field',
    ],
    [
      'misspelt field',
      (m) => (m.services.classify.limit = {}),
      'services.classify.limit is not a known field',
    ],
    ['model without task', (m) => delete m.services.model.task, 'services.model.task is required'],
    ['model without inputs', (m) => (m.services.model.inputs = []), 'services.model.inputs'],
    [
      'unknown tensor type',
      (m) => (m.services.model.inputs[0].type = 'float16'),
      'services.model.inputs[0].type',
    ],
    [
      'dimension below -1',
      (m) => (m.services.model.outputs[0].dims = [-2, 10]),
      'services.model.outputs[0].dims[0]',
    ],
    ['model without variants', (m) => (m.services.model.variants = {}), 'services.model.variants'],
    [
      'bad variant id',
      (m) => (m.services.model.variants.Small = m.services.model.variants.small),
      'services.model.variants.Small',
    ],
    [
      'accuracy above 1',
      (m) => (m.services.model.variants.small.accuracy = 1.5),
      'services.model.variants.small.accuracy must be at most 1 (got 1.5)',
    ],
    [
      'negative latency',
      (m) => (m.services.model.variants.small.latencyMs = -1),
      'services.model.variants.small.latencyMs',
    ],
    [
      'params not an integer',
      (m) => (m.services.model.variants.small.params = 'many'),
      'services.model.variants.small.params',
    ],
    [
      'unknown weights',
      (m) => (m.services.model.variants.small.weights = 'pretrained'),
      'services.model.variants.small.weights',
    ],
    [
      'no measured',
      (m) => delete m.services.model.variants.small.measured,
      'services.model.variants.small.measured',
    ],
    [
      'variant file not listed',
      (m) => (m.services.model.variants.large.file = 'models/huge.onnx'),
      'services.model.variants.large.file',
    ],
    [
      'a Logic depending on a service the app lacks',
      (m) => (m.services.classify.models = ['nope']),
      'services.classify.models[0]: no service "nope"',
    ],
    [
      'a Logic depending on a Logic',
      (m) => (m.services.classify.models = ['model', 'classify']),
      'services.classify.models[1]: "classify" is a logic service, not a model service',
    ],
    [
      'models not a list',
      (m) => (m.services.classify.models = 'model'),
      'services.classify.models must be an array',
    ],
    [
      'models naming one twice',
      (m) => (m.services.classify.models = ['model', 'model']),
      'services.classify.models[1]: "model" twice',
    ],
    ['tiers naming no role', (m) => (m.services.classify.tiers = []), 'services.classify.tiers'],
    [
      'tiers naming an unknown role',
      (m) => (m.services.model.tiers = ['edge']),
      'services.model.tiers[0]',
    ],
    [
      'tiers naming a role twice',
      (m) => (m.services.classify.tiers = ['fog', 'fog']),
      'services.classify.tiers[1]: "fog" twice',
    ],
    [
      'an exit head on a Logic',
      (m) => (m.services.classify.exit = { output: 'probs', rule: 'top', threshold: 0.9 }),
      'services.classify.exit is not a known field',
    ],
    [
      'an exit head on an output the model lacks',
      (m) => (m.services.model.exit = { output: 'logits', rule: 'top', threshold: 0.9 }),
      'services.model.exit.output: "logits" is not an output of this model (it has: probs)',
    ],
    [
      'an exit head on an output that is not float32',
      (m) => {
        m.services.model.outputs[0].type = 'int64';
        m.services.model.exit = { output: 'probs', rule: 'top', threshold: 0.9 };
      },
      'services.model.exit.output: "probs" is int64',
    ],
    [
      'an exit rule the host lacks',
      (m) => (m.services.model.exit = { output: 'probs', rule: 'margin', threshold: 0.9 }),
      'services.model.exit.rule',
    ],
    [
      'an exit threshold above 1',
      (m) => (m.services.model.exit = { output: 'probs', rule: 'top', threshold: 1.5 }),
      'services.model.exit.threshold must be at most 1',
    ],
    [
      'an exit head without a threshold',
      (m) => (m.services.model.exit = { output: 'probs', rule: 'top' }),
      'services.model.exit.threshold is required',
    ],
    [
      'models naming a bad service name',
      (m) => (m.services.classify.models = [7]),
      'services.classify.models[0]',
    ],
  ];

  it.each(rules)('refuses %s, naming the field', (_what, edit, field) => {
    const e = manifestError(broken(edit));
    expect(e.message.startsWith(field), e.message).toBe(true);
  });

  it('names every broken field at once', () => {
    const e = manifestError(
      broken((m) => {
        m.name = 'X';
        m.services.model.variants.small.accuracy = 2;
      }),
    );
    expect(e.message).toContain('name must match');
    expect(e.message).toContain('services.model.variants.small.accuracy must be at most 1');
  });

  it('refuses things that are not manifests', () => {
    expect(manifestError(null).message).toMatch(/must be an object/);
    expect(manifestError([good]).message).toMatch(/must be an object/);
    expect(manifestError('digits').message).toMatch(/must be an object/);
  });

  it('refuses a __proto__ key instead of dropping it', () => {
    const json = JSON.parse(JSON.stringify(good).replace('"models/small.onnx":', '"__proto__":'));
    expect(manifestError(json).message).toMatch(/__proto__/);
  });
});

describe('verifyFile', () => {
  it('passes the listed bytes and names the file when one byte differs', async () => {
    await verifyFile(good, 'models/small.onnx', files['models/small.onnx']!);
    const tampered = files['models/small.onnx']!.slice();
    tampered[3]! ^= 1;
    const e = await integrityError(verifyFile(good, 'models/small.onnx', tampered));
    expect(e.file).toBe('models/small.onnx');
    expect(e.message).toMatch(/^models\/small\.onnx: sha256/);
  });

  it('refuses a wrong size and an unlisted path', async () => {
    const e = await integrityError(verifyFile(good, 'models/small.onnx', bytes('short')));
    expect(e.message).toMatch(/models\/small\.onnx: 5 bytes but digits@1.0.0 lists/);
    const u = await integrityError(verifyFile(good, 'models/x.onnx', bytes('x')));
    expect(u.file).toBe('models/x.onnx');
  });

  it('hashes like everybody else', async () => {
    expect(await sha256Hex(bytes('abc'))).toBe(
      'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad',
    );
  });
});

describe('bundles', () => {
  /** Encodes a bundle by hand, bypassing packBundle's own checks. */
  const rawBundle = (manifest: unknown, f: Record<string, unknown>) =>
    encode({ format: BUNDLE_FORMAT, manifest, files: f });

  it('round-trips through pack and unpack', async () => {
    const packed = packBundle(good, files);
    const { manifest, files: out } = await unpackBundle(packed);
    expect(manifest).toEqual(good);
    expect(Object.keys(out).sort()).toEqual(Object.keys(files).sort());
    for (const [path, b] of Object.entries(files)) expect(out[path]).toEqual(b);
  });

  it('names a tampered file (one byte flipped)', async () => {
    const tampered = { ...files, 'models/large.onnx': files['models/large.onnx']!.slice() };
    tampered['models/large.onnx'][0]! ^= 0x80;
    const e = await integrityError(unpackBundle(packBundle(good, tampered)));
    expect(e.file).toBe('models/large.onnx');
    expect(e.message).toContain('models/large.onnx');
  });

  it('names a missing file', async () => {
    const { 'logic/classify.wasm': _gone, ...rest } = files;
    const e = await integrityError(unpackBundle(rawBundle(good, rest)));
    expect(e.file).toBe('logic/classify.wasm');
    expect(e.message).toMatch(/missing/);
    expect(() => packBundle(good, rest)).toThrow(BundleIntegrityError);
  });

  it('names an unlisted extra file', async () => {
    const e = await integrityError(
      unpackBundle(rawBundle(good, { ...files, 'extra/readme.txt': bytes('hi') })),
    );
    expect(e.file).toBe('extra/readme.txt');
    expect(e.message).toMatch(/not listed/);
  });

  it('names a file of the wrong size', async () => {
    const e = await integrityError(
      unpackBundle(rawBundle(good, { ...files, 'models/small.onnx': bytes('tiny') })),
    );
    expect(e.file).toBe('models/small.onnx');
    expect(e.message).toMatch(/4 bytes/);
  });

  it('names a file that is not bytes', async () => {
    const e = await integrityError(
      unpackBundle(rawBundle(good, { ...files, 'models/small.onnx': 'not bytes' })),
    );
    expect(e.file).toBe('models/small.onnx');
  });

  it('refuses a wrong format tag', async () => {
    const b = encode({ format: 'brume-bundle/2', manifest: good, files });
    await expect(unpackBundle(b)).rejects.toThrow(CodecError);
    await expect(unpackBundle(b)).rejects.toThrow(/format is "brume-bundle\/2"/);
    await expect(unpackBundle(encode({ manifest: good, files }))).rejects.toThrow(
      /not a Brume bundle/,
    );
    await expect(unpackBundle(encode([1, 2]))).rejects.toThrow(/not a Brume bundle/);
  });

  it('refuses a bad manifest inside a bundle', async () => {
    const bad = broken((m) => (m.version = 'latest'));
    await expect(unpackBundle(rawBundle(bad, files))).rejects.toThrow(ManifestError);
  });

  it('refuses garbage bytes with a clear error, not a crash', async () => {
    const inputs = [
      new Uint8Array(0),
      bytes('PK\u0003\u0004 this is a zip file'),
      crypto.getRandomValues(new Uint8Array(4096)),
      packBundle(good, files).slice(0, 100),
    ];
    for (const input of inputs) {
      const e = await unpackBundle(input).then(
        () => undefined,
        (err: unknown) => err,
      );
      expect(e, 'garbage must be refused').toBeInstanceOf(Error);
      expect((e as CodecError).code).toMatch(/^E_(CODEC|MANIFEST|INTEGRITY)$/);
    }
  });

  it('honours decode limits', async () => {
    await expect(unpackBundle(packBundle(good, files), { maxBytes: 64 })).rejects.toThrow(
      /exceeds the 64-byte limit/,
    );
  });
});

describe('manifestSha256', () => {
  it('does not depend on key order', async () => {
    const reordered = JSON.parse(JSON.stringify(good), (_k, v) =>
      v && typeof v === 'object' && !Array.isArray(v)
        ? Object.fromEntries(Object.entries(v).reverse())
        : v,
    ) as Manifest;
    expect(Object.keys(reordered)[0]).not.toBe(Object.keys(good)[0]);
    expect(await manifestSha256(reordered)).toBe(await manifestSha256(good));
    const other = broken((m) => (m.description = 'changed')) as Manifest;
    expect(await manifestSha256(other)).not.toBe(await manifestSha256(good));
  });
});
