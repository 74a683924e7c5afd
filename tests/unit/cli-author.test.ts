// The app author's path through the real `brume` command against a real relay process:
// new → dev (pack with the AssemblyScript compiler, deploy, redeploy on change) → apps → call,
// the scaffold's own test, and --help on every verb.
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encode } from '../../core/codec';
import { table } from '../../relay/cli/commands';
import { commandHelp } from '../../relay/cli/usage';
import { identityOnnx } from '../apps';
import { brume, type Done, startBrume } from '../cli-process';
import { type RelayProcess, startRelay } from '../relay-process';

let dir: string;
let relay: RelayProcess;
let env: Record<string, string>;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'brume-author-'));
  relay = await startRelay();
  env = { BRUME_RELAY: relay.url, BRUME_DATA: relay.dataDir };
}, 60_000);
afterAll(async () => {
  await relay?.stop();
  await rm(dir, { recursive: true, force: true });
});

const ok = (r: Done) => {
  expect(r.stderr, r.stdout).toBe('');
  expect(r.code).toBe(0);
  return r.stdout;
};

/** A "1" drawn as MNIST frames it: a bar down the middle of 28×28 values in [0, 1]. */
function one(): number[] {
  const v = new Array<number>(784).fill(0);
  for (let y = 4; y < 24; y++) for (let x = 13; x < 15; x++) v[y * 28 + x] = 1;
  return v;
}

describe('brume <verb> --help', () => {
  it('has help for every verb, naming each of its flags', () => {
    for (const c of table) {
      const help = commandHelp(c.name);
      expect(help).toMatch(new RegExp(`^Usage: brume ${c.name}`));
      for (const f of c.flags) expect(help, `${c.name} --${f.name}`).toContain(`--${f.name}`);
    }
    expect(commandHelp('start')).toContain('--print-config');
  });

  it('prints a verb its own help from the real command', async () => {
    const [call, dev] = await Promise.all([brume(['call', '--help']), brume(['dev', '-h'])]);
    expect(ok(call)).toContain('Usage: brume call <app> <service> [options]');
    expect(call.stdout).toContain('@file.msgpack');
    expect(call.stdout).not.toContain('--print-config');
    expect(ok(dev)).toContain('--debounce-ms');
  }, 60_000);
});

describe('brume call, submit and job', () => {
  it('refuse a call without what they need before asking any relay', async () => {
    const [noService, noId, both, priority, noFile] = await Promise.all([
      brume(['submit', 'hello']),
      brume(['job']),
      brume(['job', 'j1', '--watch', '--cancel']),
      brume(['submit', 'hello', 'predict', '--priority', 'high', '--key', 'k']),
      brume(['call', 'hello', 'predict', '--input', `@${join(dir, 'no-such.json')}`]),
    ]);
    expect(noService.code).toBe(2);
    expect(noService.stderr).toContain('submit takes an app and a service');
    expect(noId.code).toBe(2);
    expect(noId.stderr).toContain('job takes one job id');
    expect(both.code).toBe(2);
    expect(both.stderr).toContain('--watch or --cancel, not both');
    expect(priority.code).toBe(2);
    expect(priority.stderr).toContain('--priority must be a whole number');
    expect(noFile.code).toBe(2);
    expect(noFile.stderr).toContain('no-such.json (ENOENT)');
  }, 60_000);
});

describe('brume new', () => {
  it('refuses a bad name, a folder in use and a model it cannot scaffold, naming why', async () => {
    await mkdir(join(dir, 'used'));
    await writeFile(join(dir, 'used', 'x'), '');
    // A model whose input has a free dimension beyond the batch: no fixed size for the Logic.
    await writeFile(join(dir, 'free.onnx'), identityOnnx('x', 'y', [-1, -1]));
    const [name, used, free, missing] = await Promise.all([
      brume(['new', 'Hello'], { cwd: dir }),
      brume(['new', 'used'], { cwd: dir }),
      brume(['new', 'free', '--model', 'free.onnx'], { cwd: dir }),
      brume(['new', 'gone', '--model', 'gone.onnx'], { cwd: dir }),
    ]);
    expect(name.code).toBe(2);
    expect(name.stderr).toContain('"Hello" is not an app name');
    expect(used.code).toBe(1);
    expect(used.stderr).toContain('is not empty');
    expect(free.code).toBe(1);
    expect(free.stderr).toContain('input "x"');
    expect(free.stderr).toContain('free dimensions beyond the first');
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('does not exist');
  }, 60_000);

  it("takes the user's own .onnx, its input and output read from the file", async () => {
    await writeFile(join(dir, 'mine.onnx'), identityOnnx('features', 'scores', [-1, 4]));
    ok(await brume(['new', 'mine', '--model', 'mine.onnx'], { cwd: dir }));
    const manifest = JSON.parse(await readFile(join(dir, 'mine', 'brume.json'), 'utf8'));
    expect(manifest.services.model.inputs).toEqual([
      { name: 'features', type: 'float32', dims: [-1, 4] },
    ]);
    expect(manifest.services.model.outputs[0].name).toBe('scores');
    expect(manifest.services.model.variants.default.measured).toContain('NOT MEASURED');
    const logic = await readFile(join(dir, 'mine', 'logic', 'predict.ts'), 'utf8');
    expect(logic).toContain('const DIMS: i32[] = [1, 4];');
    // It packs as it is: the compiler finds "brume-sdk", the bundle check agrees with the model.
    const packed = JSON.parse(ok(await brume(['pack', '--json'], { cwd: join(dir, 'mine') })));
    expect(packed).toMatchObject({ name: 'mine', version: '0.1.0', files: 2 });
  }, 120_000);
});

describe('the author path against a real relay', () => {
  const app = () => join(dir, 'hello');

  it('scaffolds, deploys with dev --once, lists and calls the app', async () => {
    const made = ok(await brume(['new', 'hello'], { cwd: dir }));
    expect(made).toContain('made hello in hello');
    const first = ok(await brume(['dev', '--once'], { cwd: app(), env }));
    expect(first).toMatch(/built hello@0\.1\.0 in [\d.]+ s\ndeployed hello@0\.1\.0 to /);
    // Again: the next patch, so the change becomes current without editing brume.json.
    expect(ok(await brume(['dev', '--once'], { cwd: app(), env }))).toContain(
      'deployed hello@0.1.1',
    );
    const apps = JSON.parse(ok(await brume(['apps', '--json'], { env })));
    expect(apps.find((a: { name: string }) => a.name === 'hello').version).toBe('0.1.1');
    // brume pack + deploy ship brume.json's own version: the same bytes dev deployed as 0.1.0.
    const { out } = JSON.parse(ok(await brume(['pack', '--json'], { cwd: app() })));
    expect(JSON.parse(ok(await brume(['deploy', out, '--json'], { env })))).toMatchObject({
      name: 'hello',
      version: '0.1.0',
      created: false,
      current: false,
      currentVersion: '0.1.1',
    });

    await writeFile(join(app(), 'one.json'), JSON.stringify({ values: one() }));
    await writeFile(join(app(), 'one.msgpack'), encode({ values: one() }));
    const [plain, full, packed, wrong, notJson] = await Promise.all([
      brume(['call', 'hello', 'predict', '--input', '@one.json'], { cwd: app(), env }),
      brume(['call', 'hello', 'predict', '--input', '@one.msgpack', '--json'], {
        cwd: app(),
        env,
      }),
      brume(['call', 'hello', 'predict', '--input', '@one.json', '--json'], { cwd: app(), env }),
      brume(['call', 'hello', 'predict', '--input', '{"values":[1,2,3]}'], { env }),
      brume(['call', 'hello', 'predict', '--input', '{values'], { env }),
    ]);
    // The packaged digits model, through the scaffold's Logic, reads the "1".
    expect(JSON.parse(ok(plain))).toMatchObject({ label: 1, variant: 'default' });
    expect(JSON.parse(ok(full))).toMatchObject({ value: { label: 1 }, version: '0.1.1' });
    expect(JSON.parse(ok(packed)).value.label).toBe(1);
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toContain(
      'call refused (422 E_APP): input.values: expected 784 numbers, got 3',
    );
    expect(notJson.code).toBe(2);
    expect(notJson.stderr).toContain('--input is not JSON');
  }, 240_000);

  it('submits the same work as a job, watches it to the end and reads its result', async () => {
    await writeFile(join(app(), 'one.json'), JSON.stringify({ values: one() }));
    const id = ok(
      await brume(['submit', 'hello', 'predict', '--input', '@one.json'], { cwd: app(), env }),
    ).trim();
    expect(id).toMatch(/^[0-9a-z]{24}$/);
    // --watch prints each state until the job ends, then exits 0 for a success.
    const watched = ok(await brume(['job', id, '--watch'], { env }));
    expect(watched).toMatch(new RegExp(`${id} +succeeded`));
    const job = JSON.parse(ok(await brume(['job', id, '--json'], { env })));
    expect(job).toMatchObject({ id, state: 'succeeded', attempts: 1, result: { label: 1 } });
    // The same idempotency key submits once; a job of an app nobody deployed is refused, named.
    const key = ['--idempotency-key', 'k-1'];
    const input = ['--input', '@one.json'];
    const a = ok(
      await brume(['submit', 'hello', 'predict', ...input, ...key], { cwd: app(), env }),
    );
    const b = ok(
      await brume(['submit', 'hello', 'predict', ...input, ...key], { cwd: app(), env }),
    );
    expect(a).toBe(b);
    const none = await brume(['submit', 'nobody', 'x'], { env });
    expect(none.code).toBe(1);
    expect(none.stderr).toMatch(/nobody/);
  }, 120_000);

  it("passes the scaffold's own test against the relay", async () => {
    const { execFile } = await import('node:child_process');
    const r = await new Promise<Done>((resolve) =>
      execFile(
        process.execPath,
        ['--test'],
        { cwd: app(), env: { ...process.env, ...env } },
        (err, stdout, stderr) => resolve({ code: err ? 1 : 0, stdout, stderr }),
      ),
    );
    expect(r.stdout, r.stderr).toContain('# pass 2');
    expect(r.code).toBe(0);
  }, 60_000);

  it('dev rebuilds on change, prints a compile error and keeps watching', async () => {
    const dev = startBrume(['dev', '--debounce-ms', '100'], { cwd: app(), env });
    try {
      let at = await dev.waitFor(/deployed hello@0\.1\.2 .*\n/);
      await dev.waitFor(/watching .* for changes/);
      const source = join(app(), 'logic', 'predict.ts');
      const good = await readFile(source, 'utf8');
      await writeFile(source, good.replace('let best = 0;', 'let best: i32 = "zero";'));
      at = await dev.waitFor(/build failed: [\s\S]*predict\.ts/, at);
      expect(dev.output().slice(at)).not.toContain('deployed');
      await writeFile(source, good.replace('.key("variant")', '.key("which")'));
      at = await dev.waitFor(/deployed hello@0\.1\.3 /, at);
      const res = await fetch(`${relay.url}/api/call/hello/predict`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ input: { values: one() } }),
      });
      expect(((await res.json()) as { value: object }).value).toHaveProperty('which', 'default');
    } finally {
      expect(await dev.stop()).toBe(0);
    }
  }, 240_000);
});
