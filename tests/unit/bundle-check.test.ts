// Bundles checked against their code (relay/bundle-check.ts) at pack (`brume pack`) and at deploy
// (a real relay process): each refusal names the field. Every sample app still packs and deploys.
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encode } from '../../core/codec';
import { ManifestError } from '../../core/errors';
import { buildManifest, type ManifestDraft, packBundle } from '../../core/manifest';
import { packApp } from '../../relay/pack';
import { sampleApps } from '../../scripts/pack-apps';
import { wasm } from '../apps';
import { deploy, type RelayProcess, startRelay } from '../relay-process';

const root = fileURLToPath(new URL('../..', import.meta.url));

/** The digits app's draft as a test changes it, with its real Logic and small model. */
function digitsDraft(change: (d: ManifestDraft) => void = () => {}): ManifestDraft {
  const d: ManifestDraft = {
    brume: 1,
    name: 'checked',
    version: '1.0.0',
    services: {
      classify: { kind: 'logic', file: 'classify.wasm', rpcs: ['classify', 'preprocess'] },
      model: {
        kind: 'model',
        task: 'digit-classification',
        inputs: [{ name: 'pixels', type: 'float32', dims: [-1, 784] }],
        outputs: [{ name: 'probs', type: 'float32', dims: [-1, 10] }],
        variants: {
          small: {
            file: 'small.onnx',
            accuracy: 0.9,
            latencyMs: 1,
            params: 1,
            weights: 'trained',
            measured: 'test',
          },
        },
      },
    },
  };
  change(d);
  return d;
}

const logicOf = (d: ManifestDraft) => d.services.classify as { rpcs: string[]; file: string };
const modelOf = (d: ManifestDraft) =>
  d.services.model as Extract<ManifestDraft['services'][string], { kind: 'model' }>;

const cases: { what: string; change: (d: ManifestDraft) => void; says: RegExp }[] = [
  {
    what: 'an rpc the wasm does not export',
    change: (d) => logicOf(d).rpcs.push('missing'),
    says: /services\.classify\.rpcs\[2\]: "missing" is not exported by classify\.wasm \(its functions: [^)]*classify/,
  },
  {
    what: 'a model input the graph does not take',
    change: (d) => {
      modelOf(d).inputs[0]!.name = 'image';
    },
    says: /services\.model\.inputs\[0\]\.name: "image" is not an input of small\.onnx \(variant "small"\) \(its inputs: "pixels"\)/,
  },
  {
    what: 'a model input of the wrong element type',
    change: (d) => {
      modelOf(d).inputs[0]!.type = 'int32';
    },
    says: /services\.model\.inputs\[0\]\.type: "int32" but small\.onnx \(variant "small"\) has float32/,
  },
  {
    what: 'a model output of the wrong rank',
    change: (d) => {
      modelOf(d).outputs[0]!.dims = [10];
    },
    says: /services\.model\.outputs\[0\]\.dims: rank 1 but small\.onnx \(variant "small"\) has rank 2/,
  },
  {
    what: 'a fixed size the graph fixes otherwise',
    change: (d) => {
      modelOf(d).inputs[0]!.dims = [-1, 28];
    },
    says: /services\.model\.inputs\[0\]\.dims\[1\]: 28 but small\.onnx \(variant "small"\) fixes it at 784/,
  },
  {
    what: 'a Logic importing what the ABI forbids',
    change: (d) => {
      logicOf(d).file = 'bad.wasm';
    },
    says: /services\.classify\.file: bad\.wasm: Logic imports env\.fetch/,
  },
];

const codeFiles = {
  'classify.wasm': wasm('digits'),
  'small.onnx': new Uint8Array(await readFile(join(root, 'models/digits/small.onnx'))),
  'bad.wasm': wasm('bad-import'),
};

/** Writes a draft and its files into a fresh folder, as an app author's `brume pack` sees them. */
async function appFolder(draft: ManifestDraft): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'brume-checked-'));
  const used = [logicOf(draft).file, 'small.onnx'];
  for (const f of used) await writeFile(join(dir, f), codeFiles[f as keyof typeof codeFiles]);
  await writeFile(join(dir, 'brume.json'), JSON.stringify(draft));
  return dir;
}

/** A bundle packed without the pack step's checks, as a hand-made upload would be. */
async function uncheckedBundle(draft: ManifestDraft): Promise<Uint8Array> {
  const files: Record<string, Uint8Array> = {};
  for (const f of [logicOf(draft).file, 'small.onnx']) {
    files[f] = codeFiles[f as keyof typeof codeFiles];
  }
  return packBundle(await buildManifest(draft, files), files);
}

let relay: RelayProcess;
let appsDir: string;
const folders: string[] = [];
beforeAll(async () => {
  // No sample apps seeded: the test deploys each one itself.
  appsDir = await mkdtemp(join(tmpdir(), 'brume-no-apps-'));
  relay = await startRelay({ args: ['--apps', appsDir] });
}, 60_000);
afterAll(async () => {
  await relay?.stop();
  for (const d of [appsDir, relay?.dataDir, ...folders]) {
    if (d) await rm(d, { recursive: true, force: true });
  }
});

describe('a bundle whose code disagrees with its manifest', () => {
  it('packs and deploys when they agree', async () => {
    const dir = await appFolder(digitsDraft());
    folders.push(dir);
    const r = await packApp(join(dir, 'brume.json'));
    const res = await deploy(relay, await readFile(r.outPath));
    expect(res.status, await res.clone().text()).toBe(201);
  });

  for (const c of cases) {
    it(`is refused at pack and at deploy: ${c.what}`, async () => {
      const draft = digitsDraft(c.change);
      const dir = await appFolder(draft);
      folders.push(dir);
      const packed = await packApp(join(dir, 'brume.json')).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(packed).toBeInstanceOf(ManifestError);
      expect((packed as Error).message).toMatch(c.says);

      const res = await deploy(relay, await uncheckedBundle(draft));
      const body = (await res.json()) as { error: { code: string; message: string } };
      expect(res.status).toBe(400);
      expect(body.error.code).toBe('E_MANIFEST');
      expect(body.error.message).toMatch(c.says);
    });
  }

  it('`brume pack` exits non-zero naming the rpc', async () => {
    const dir = await appFolder(digitsDraft(cases[0]!.change));
    folders.push(dir);
    const tsx = join(root, 'node_modules', '.bin', 'tsx');
    const done = await new Promise<{ code: number; stderr: string }>((resolve) => {
      execFile(tsx, [join(root, 'relay/cli.ts'), 'pack', dir], { cwd: root }, (err, _o, stderr) =>
        resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stderr }),
      );
    });
    expect(done.code).not.toBe(0);
    expect(done.stderr).toMatch(cases[0]!.says);
  });

  it('refuses a model file that is not ONNX, naming the variant', async () => {
    const files = {
      'classify.wasm': codeFiles['classify.wasm'],
      'small.onnx': encode({ not: 'a model' }),
    };
    const res = await deploy(relay, packBundle(await buildManifest(digitsDraft(), files), files));
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: { message: string } }).error.message).toMatch(
      /^services\.model\.variants\.small\.file: small\.onnx is not an ONNX model/,
    );
  });
});

describe('the sample apps', () => {
  it('each packs and deploys to a real relay', async () => {
    const drafts = sampleApps();
    expect(drafts.length).toBeGreaterThanOrEqual(3);
    for (const draft of drafts) {
      const out = join(appsDir, `${draft.split('/').at(-2)}.brume`);
      const r = await packApp(draft, out);
      const res = await deploy(relay, await readFile(r.outPath));
      expect(res.status, `${r.manifest.name}: ${await res.clone().text()}`).toBe(201);
    }
  }, 60_000);
});
