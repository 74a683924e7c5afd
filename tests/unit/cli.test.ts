import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InputError } from '../../core/errors';
import { loadOrCreateIdentity, memoryKeyStore } from '../../core/identity';
import { unpackBundle } from '../../core/manifest';
import { createRelay, type Relay } from '../../relay/server';
import { packApp } from '../../scripts/pack-apps';
import { identityOnnx, wasm } from '../apps';

const root = fileURLToPath(new URL('../..', import.meta.url));
// tsx itself rather than `npx tsx`: npm exec dies of a SIGTERM instead of passing it on, which
// would orphan the relay and hide its exit code.
const tsx = join(root, 'node_modules', '.bin', 'tsx');
const cli = join(root, 'relay', 'cli.ts');

interface Done {
  code: number | null;
  stdout: string;
  stderr: string;
}

function brume(args: string[], env: Record<string, string> = {}): Promise<Done> {
  return new Promise((resolve) => {
    execFile(
      tsx,
      [cli, ...args],
      { cwd: root, env: { ...process.env, ...env } },
      (err, stdout, stderr) => {
        resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
      },
    );
  });
}

/** The messages of the JSON log lines complete in `out`, one a line. */
function messages(out: string): string {
  const lines = out.split('\n').slice(0, -1);
  return lines.map((l) => `${(JSON.parse(l) as { msg: string }).msg}\n`).join('');
}

/** Resolves with the first match of `pattern` in the messages the child logged (JSON lines). */
function waitForLine(child: ChildProcess, pattern: RegExp): Promise<RegExpMatchArray> {
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    child.stderr!.on('data', (d) => (err += d));
    child.stdout!.on('data', (d) => {
      out += d;
      const m = messages(out).match(pattern);
      if (m) resolve(m);
    });
    child.once('exit', (code) =>
      reject(new Error(`exited ${code} before ${pattern}: ${out}${err}`)),
    );
  });
}

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'brume-cli-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('brume start', () => {
  it('runs a real relay on the port it prints and exits 0 on SIGTERM', async () => {
    const data = join(dir, 'start-data');
    const child = spawn(
      tsx,
      [
        cli,
        'start',
        '--port',
        '0',
        '--data',
        data,
        '--web',
        join(dir, 'web'),
        '--apps',
        join(dir, 'none'),
      ],
      { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const exited = new Promise<number | null>((resolve) =>
      child.once('exit', (code) => resolve(code)),
    );
    try {
      const [, url, tokenFile, dataLine] = await waitForLine(
        child,
        /^Brume relay listening on (http:\/\/127\.0\.0\.1:\d+) — open it in a browser to join\nadmin token: made and saved in (\S+) \(brume token .*\)\n(.*)\n/m,
      );
      expect(dataLine).toBe(`data: ${data}`);
      expect(tokenFile).toBe(join(data, 'admin-token'));
      const token = (await readFile(tokenFile!, 'utf8')).trim();
      const health = await (await fetch(`${url}/api/health`)).json();
      expect(health).toMatchObject({ ok: true });
      expect(url).not.toMatch(/:0$/);

      // brume trust: adds, lists and revokes a key, reading the token from the data dir.
      const fog = await loadOrCreateIdentity(memoryKeyStore(), 'fog');
      const relayArgs = ['--relay', url!, '--data', data];
      const added = await brume(['trust', fog.publicKey, '--label', 'lab', ...relayArgs]);
      expect(added.stdout).toContain(`trusted node ${fog.id}`);
      expect((await brume(['trust', ...relayArgs])).stdout).toContain(`${fog.publicKey}  lab`);
      const wrong = await brume(['trust', '--relay', url!, '--token', 'nope']);
      expect(wrong.code).toBe(1);
      expect(wrong.stderr).toMatch(/401 E_AUTH/);
      const junk = await brume(['trust', 'not-a-key', ...relayArgs]);
      expect(junk.stderr).toMatch(/400 E_INPUT.*P-256/);
      expect((await brume(['trust', fog.publicKey, '--revoke', ...relayArgs])).code).toBe(0);
      expect((await brume(['trust', ...relayArgs])).stdout).toContain('the trust list is empty');
      // brume token says where the token is; --reveal prints it; --rotate issues another.
      const where = await brume(['token', '--data', data]);
      expect(where.stdout).toContain(join(data, 'admin-token'));
      expect(where.stdout).not.toContain(token);
      expect((await brume(['token', '--data', data, '--reveal'])).stdout.trim()).toBe(token);
      const rotated = (
        await brume(['token', '--rotate', '--reveal', '--data', data])
      ).stdout.trim();
      expect(rotated).toMatch(/^[A-Za-z0-9_-]{32}$/);
      expect(rotated).not.toBe(token);
    } finally {
      child.kill('SIGTERM');
    }
    expect(await exited).toBe(0);
  }, 120_000); // each CLI run is a tsx start: seconds on a busy machine

  it('never logs the admin token, on the start that makes it or later', async () => {
    const data = join(dir, 'token-once');
    const start = async () => {
      const child = spawn(
        tsx,
        [cli, 'start', '--port', '0', '--data', data, '--web', dir, '--apps', join(dir, 'none')],
        { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] },
      );
      const exited = new Promise((resolve) => child.once('exit', resolve));
      try {
        // The data line comes last: everything said about the token is in by then.
        return (await waitForLine(child, /^admin token: .*\n(data: .*)\n/m))[0];
      } finally {
        child.kill('SIGTERM');
        await exited;
      }
    };
    const first = await start();
    const token = (await readFile(join(data, 'admin-token'), 'utf8')).trim();
    expect(first).not.toContain(token);
    expect(first).toContain(`admin token: made and saved in ${join(data, 'admin-token')}`);
    const second = await start();
    expect(second).not.toContain(token);
    expect(second).toContain(`admin token: in ${join(data, 'admin-token')}`);
    expect(second).toContain('brume token');
  }, 120_000); // each CLI run is a tsx start: seconds on a busy machine

  it('takes its port from BRUME_PORT', async () => {
    const bad = await brume(['start', '--data', join(dir, 'x')], { BRUME_PORT: 'eighty' });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('BRUME_PORT must be a whole number from 0 to 65535, got "eighty"');
  });

  it('refuses a drain time that is not a whole number of ms up to 600000, flag or env', async () => {
    const data = join(dir, 'x');
    const [flag, env] = await Promise.all([
      brume(['start', '--data', data, '--drain-ms', 'soon']),
      brume(['start', '--data', data], { BRUME_DRAIN_MS: '600001' }),
    ]);
    expect(flag.code).toBe(2);
    expect(flag.stderr).toContain('--drain-ms must be a whole number from 0 to 600000, got "soon"');
    expect(env.code).toBe(2);
    expect(env.stderr).toContain(
      'BRUME_DRAIN_MS must be a whole number from 0 to 600000, got "600001"',
    );
  }, 60_000);
});

describe('brume usage', () => {
  it('prints help for every command', async () => {
    const { code, stdout } = await brume(['--help']);
    expect(code).toBe(0);
    for (const word of [
      'start',
      'pack <dir>',
      'deploy',
      '--port',
      '--host',
      '--data',
      '--web',
      '--relay',
      '--out',
      'BRUME_PORT',
    ]) {
      expect(stdout).toContain(word);
    }
    expect((await brume(['start', '--help'])).stdout).toContain('Usage: brume');
  });

  it('exits non-zero with a clear message on a bad flag, command or argument', async () => {
    const [flag, command, port, none, pack] = await Promise.all([
      brume(['start', '--bogus']),
      brume(['launch']),
      brume(['start', '--port', '99999']),
      brume([]),
      brume(['pack', 'one', 'two']),
    ]);
    expect(flag.code).toBe(2);
    expect(flag.stderr).toContain("'--bogus'");
    expect(flag.stderr).toContain('brume --help');
    expect(command.code).toBe(2);
    expect(command.stderr).toContain('unknown command "launch"');
    expect(port.code).toBe(2);
    expect(port.stderr).toContain('--port must be a whole number from 0 to 65535, got "99999"');
    expect(none.code).toBe(2);
    expect(pack.code).toBe(2);
  }, 120_000); // five tsx starts at once
});

describe('brume pack and deploy', () => {
  let relay: Relay;
  let appDir: string;
  beforeAll(async () => {
    relay = await createRelay({
      port: 0,
      dataDir: join(dir, 'deploy-data'),
      webRoot: dir,
      logger: { info() {}, warn() {}, error() {} },
    });
    appDir = join(dir, 'hello');
    await mkdir(join(appDir, 'logic'), { recursive: true });
    // A real Logic: packing checks the listed rpcs against the wasm's exports.
    await writeFile(join(appDir, 'logic', 'hello.wasm'), wasm('echo'));
    await writeFile(join(dir, 'labels.txt'), 'zero\none\n');
    await writeFile(
      join(appDir, 'brume.json'),
      JSON.stringify({
        brume: 1,
        name: 'hello',
        version: '0.1.0',
        services: { main: { kind: 'logic', file: 'logic/hello.wasm', rpcs: ['echo'] } },
        sources: { 'assets/labels.txt': '../labels.txt' },
      }),
    );
  });
  afterAll(async () => {
    await relay?.close();
  });

  it('packs a directory into <name>-<version>.brume and deploys it', async () => {
    const packed = await brume(['pack', appDir]);
    expect(packed.stderr).toBe('');
    expect(packed.code).toBe(0);
    const file = join(appDir, 'hello-0.1.0.brume');
    expect(packed.stdout).toContain(file);
    const { manifest, files } = await unpackBundle(await readFile(file));
    expect(Object.keys(files).sort()).toEqual(['assets/labels.txt', 'logic/hello.wasm']);
    expect(manifest).not.toHaveProperty('sources');

    // Without a credential the CLI says what to pass; with one lacking the scope the relay refuses.
    const { secret: callKey } = await relay.keys.create(['call'], '');
    const [none, refused] = await Promise.all([
      brume(['deploy', file, '--relay', relay.url], { BRUME_DATA: join(dir, 'no-such-dir') }),
      brume(['deploy', file, '--relay', relay.url, '--key', callKey]),
    ]);
    expect(none.code).toBe(2);
    expect(none.stderr).toContain('no credential: pass --key');
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('403 E_FORBIDDEN');

    const { secret } = await relay.keys.create(['deploy:hello'], 'ci');
    const deployed = await brume(['deploy', file, '--relay', relay.url], { BRUME_KEY: secret });
    expect(deployed.code).toBe(0);
    expect(deployed.stdout).toContain('deployed hello@0.1.0');
    const apps = await (await fetch(`${relay.url}/api/apps`)).json();
    expect(apps.map((a: { name: string }) => a.name)).toEqual(['hello']);
  }, 120_000);

  it('writes to --out, and reports a conflicting redeploy with exit 1', async () => {
    await writeFile(join(dir, 'labels.txt'), 'changed labels, same version');
    const out = join(dir, 'out', 'hello.brume');
    expect((await brume(['pack', appDir, '--out', out])).code).toBe(0);
    const conflict = await brume(['deploy', out, '--data', join(dir, 'deploy-data')], {
      BRUME_RELAY: relay.url,
    });
    expect(conflict.code).toBe(1);
    expect(conflict.stderr).toContain('409 E_CONFLICT');
    expect(conflict.stderr).toContain('hello@0.1.0');
  }, 120_000);

  it('keeps an older version out of current until an admin runs brume current', async () => {
    const data = ['--relay', relay.url, '--data', join(dir, 'deploy-data')];
    // Its own versions, packed in process: this test needs nothing from the ones before.
    const manifest = JSON.parse(await readFile(join(appDir, 'brume.json'), 'utf8'));
    const packed = async (version: string) => {
      await writeFile(join(appDir, 'brume.json'), JSON.stringify({ ...manifest, version }));
      return (await packApp(join(appDir, 'brume.json'), join(dir, 'out', `${version}.brume`)))
        .outPath;
    };
    const [newer, older] = [await packed('0.3.0'), await packed('0.2.5')];
    expect((await brume(['deploy', newer, ...data])).stdout).toContain('deployed hello@0.3.0');
    const old = await brume(['deploy', older, ...data]);
    expect(old.code).toBe(0);
    expect(old.stdout).toContain('0.3.0 stays current');
    expect((await (await fetch(`${relay.url}/api/apps/hello`)).json()).version).toBe('0.3.0');
    const [rolled, missing] = await Promise.all([
      brume(['current', 'hello', '0.2.5', ...data]),
      brume(['current', 'hello', '9.9.9', ...data]),
    ]);
    expect(rolled.stdout).toContain('hello@0.2.5 is now current');
    expect((await (await fetch(`${relay.url}/api/apps/hello`)).json()).version).toBe('0.2.5');
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('404 E_NOT_FOUND');
  }, 120_000); // each CLI run is a tsx start: seconds on a busy machine

  it('makes, lists and revokes API keys', async () => {
    const data = ['--relay', relay.url, '--data', join(dir, 'deploy-data')];
    const made = await brume([
      'keys',
      'create',
      '--scope',
      'deploy:team-*',
      '--scope',
      'call',
      '--label',
      'team CI',
      ...data,
    ]);
    expect(made.code).toBe(0);
    const [, id, secret] = /^key ([0-9a-f]{16}) \(deploy:team-\*, call\):\n(brume_\S+)\n/.exec(
      made.stdout,
    )!;
    expect(made.stderr).toContain('only time');
    expect(relay.keys.find(secret!)?.label).toBe('team CI');
    const [list, bad, notAdmin] = await Promise.all([
      brume(['keys', 'list', ...data]),
      brume(['keys', 'create', '--scope', 'root', ...data]),
      brume(['keys', 'list', '--relay', relay.url, '--key', secret!]),
    ]);
    expect(list.stdout).toContain(`${id}  deploy:team-*,call`);
    expect(list.stdout).not.toContain(secret);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain('400 E_INPUT');
    expect(bad.stderr).toContain('"root"');
    expect(notAdmin.stderr).toContain('403 E_FORBIDDEN');
    expect((await brume(['keys', 'revoke', id!, ...data])).stdout).toContain(`revoked key ${id}`);
    expect(relay.keys.find(secret!)).toBeUndefined();
    expect((await brume(['keys', 'revoke', id!, ...data])).code).toBe(1);
  }, 120_000); // each CLI run is a tsx start: seconds on a busy machine

  it('says so when no relay is there', async () => {
    const out = join(dir, 'out', 'hello.brume');
    const r = await brume(['deploy', out, '--relay', 'http://127.0.0.1:9', '--key', 'k']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('cannot reach the relay');
  });
});

describe('packApp', () => {
  it('fills variant figures from metrics.json and strips sources/metrics', async () => {
    const app = join(dir, 'metrics-app');
    await mkdir(app, { recursive: true });
    await writeFile(join(app, 'small.onnx'), identityOnnx('x', 'y', [-1, 2]));
    await writeFile(join(app, 'l.wasm'), wasm('loop-forever'));
    await writeFile(
      join(app, 'metrics.json'),
      JSON.stringify({
        measured: 'by the test',
        variants: {
          small: {
            file: 'small.onnx',
            accuracy: 0.9,
            latencyMs: 0.5,
            params: 10,
            bytes: 5,
            weights: 'trained',
          },
        },
      }),
    );
    const draft = join(app, 'brume.json');
    await writeFile(
      draft,
      JSON.stringify({
        brume: 1,
        name: 'm',
        version: '1.0.0',
        services: {
          logic: { kind: 'logic', file: 'logic/l.wasm', rpcs: ['run'] },
          model: {
            kind: 'model',
            task: 't',
            inputs: [{ name: 'x', type: 'float32', dims: [-1, 2] }],
            outputs: [{ name: 'y', type: 'float32', dims: [-1, 2] }],
            variants: { small: { file: 'models/small.onnx' } },
          },
        },
        sources: { 'logic/l.wasm': 'l.wasm', 'models/small.onnx': 'small.onnx' },
        metrics: 'metrics.json',
      }),
    );
    const r = await packApp(draft, join(app, 'out.brume'));
    const { manifest } = await unpackBundle(await readFile(r.outPath));
    expect(manifest).toEqual(r.manifest);
    expect(manifest).not.toHaveProperty('metrics');
    const model = manifest.services.model!;
    expect(model.kind === 'model' && model.variants.small).toEqual({
      file: 'models/small.onnx',
      accuracy: 0.9,
      latencyMs: 0.5,
      params: 10,
      weights: 'trained',
      measured: 'by the test',
    });
  });

  it('names a missing build output and the command that builds it', async () => {
    const app = join(dir, 'missing-app');
    await mkdir(app, { recursive: true });
    const missing = join(root, 'logics', 'build', 'no-such-app.wasm');
    const draft = join(app, 'brume.json');
    await writeFile(
      draft,
      JSON.stringify({
        brume: 1,
        name: 'missing',
        version: '1.0.0',
        services: { main: { kind: 'logic', file: 'logic/main.wasm', rpcs: ['run'] } },
        sources: { 'logic/main.wasm': missing },
      }),
    );
    const e = await packApp(draft, join(app, 'out.brume')).catch((err: unknown) => err);
    expect(e).toBeInstanceOf(InputError);
    expect((e as Error).message).toContain('logic/main.wasm');
    expect((e as Error).message).toContain('logics/build/no-such-app.wasm');
    expect((e as Error).message).toContain('npm run build:logics');
  });

  // npm test builds the Logics before the unit tests run; a missing file is the case above.
  it('packs the digits sample app from the built Logic and the trained models', async () => {
    const draft = join(root, 'logics', 'digits', 'brume.json');
    const result = await packApp(draft, join(dir, 'digits.brume'));
    const { manifest } = result;
    expect(Object.keys(manifest.files).sort()).toEqual([
      'logic/classify.wasm',
      'models/large.onnx',
      'models/small.onnx',
    ]);
    expect(manifest.services.classify).toMatchObject({ rpcs: ['classify', 'preprocess'] });
    const model = manifest.services.model!;
    expect(model.kind === 'model' && Object.keys(model.variants).sort()).toEqual([
      'large',
      'small',
    ]);
  });
});
