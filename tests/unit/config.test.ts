import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UsageError } from '../../relay/cli/args';
import { loadConfig, printConfig } from '../../relay/cli/config';
import { envName, settings } from '../../relay/cli/settings';
import { startOptions } from '../../relay/cli/start';
import { commands, USAGE } from '../../relay/cli/usage';
import { inProcessRelay } from '../relay-process';

const root = fileURLToPath(new URL('../..', import.meta.url));
const pkg = '/opt/brume-package';
const token = 'T'.repeat(40);
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'brume-config-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function file(name: string, json: unknown): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, typeof json === 'string' ? json : JSON.stringify(json));
  return path;
}

describe('start settings', () => {
  it('takes each setting from the flag, else the environment, else the file, else the default', async () => {
    const config = await file('all.json', { port: 1003, host: '10.0.0.3', callRate: 3, data: 'd' });
    const c = await loadConfig(
      { config, port: '1001' },
      { BRUME_PORT: '1002', BRUME_HOST: '10.0.0.2' },
      pkg,
    );
    expect(c.values).toMatchObject({ port: 1001, host: '10.0.0.2', callRate: 3, maxCalls: 4096 });
    expect(c.from).toMatchObject({
      port: 'flag',
      host: 'env',
      callRate: 'file',
      maxCalls: 'default',
    });
    // A path from the file is relative to the file; the build outputs' defaults to the package.
    expect(c.values.data).toBe(join(dir, 'd'));
    expect(c.values.web).toBe(join(pkg, 'dist/web'));
    // Lists and switches: a flag replaces the environment's list; --no-cloud turns cloud off.
    const lists = await loadConfig(
      { origin: ['http://a.test:1/x'], 'no-cloud': true },
      { BRUME_ORIGINS: 'http://b.test', BRUME_ANONYMOUS_CALLS: 'off', BRUME_ALLOWED_HOSTS: 'x,y' },
      pkg,
    );
    expect(lists.values).toMatchObject({
      origins: ['http://a.test:1'],
      cloud: false,
      anonymousCalls: false,
      allowedHosts: ['x', 'y'],
    });
  });

  it('names the field, and where it came from, of a bad value', async () => {
    const bad = async (flags: Record<string, unknown>, env: Record<string, string> = {}) =>
      loadConfig(flags, env, pkg).then(
        () => 'accepted',
        (e: unknown) => (e instanceof UsageError ? e.message : `not a UsageError: ${e}`),
      );
    expect(await bad({ port: '99999' })).toBe(
      '--port must be a whole number from 0 to 65535, got "99999"',
    );
    expect(await bad({}, { BRUME_VERIFY_FRACTION: 'half' })).toBe(
      'BRUME_VERIFY_FRACTION must be a number from 0 to 1, got "half"',
    );
    expect(await bad({}, { BRUME_CLOUD: 'maybe' })).toMatch(/^BRUME_CLOUD must be true or false/);
    const typed = await file('typed.json', { maxCalls: '12' });
    expect(await bad({ config: typed })).toBe(
      `"maxCalls" in ${typed} must be a whole number from 1 to 10000000, got "12"`,
    );
    const typo = await file('typo.json', { prot: 80 });
    expect(await bad({ config: typo })).toContain(`unknown setting "prot"`);
    const proto = await file('proto.json', '{"__proto__": {"port": 1}}');
    expect(await bad({ config: proto })).toContain(`unknown setting "__proto__"`);
    expect(await bad({ config: await file('list.json', [1]) })).toContain('one JSON object');
    expect(await bad({ config: await file('junk.json', '{port') })).toContain('is not JSON');
    expect(await bad({ config: join(dir, 'missing.json') })).toContain('cannot be read');
    const big = await file('big.json', `{"host": "${'a'.repeat(1 << 20)}"}`);
    expect(await bad({ config: big })).toContain('is over 1048576 bytes');
    expect(await bad({}, { BRUME_ADMIN_TOKEN: 'short' })).toMatch(/^BRUME_ADMIN_TOKEN must be 32/);
    expect(await bad({ origin: ['not a url'] })).toMatch(/^--origin must be URLs/);
    expect(await bad({ 'worker-idle-ms': '50' })).toBe(
      '--worker-idle-ms must be 0 or a whole number from 100 to 3600000, got "50"',
    );
    expect(await bad({ 'logic-max-workers': '65' })).toMatch(/^--logic-max-workers must be/);
  });

  it("gives the cloud node's pools their caps, 0 leaving the defaults", async () => {
    const set = startOptions(
      await loadConfig({ 'logic-max-workers': '8', 'worker-idle-ms': '500' }, {}, pkg),
    );
    expect(set.logicCaps).toMatchObject({ maxWorkers: 8, workerIdleMs: 500 });
    const unset = startOptions(await loadConfig({}, {}, pkg));
    expect(unset.logicCaps.maxWorkers).toBeUndefined();
    expect(unset.logicCaps.workerIdleMs).toBeUndefined();
  });

  it('prints the settings as a config file with secrets masked, which reads back the same', async () => {
    const c = await loadConfig({ port: '0' }, { BRUME_ADMIN_TOKEN: token }, pkg);
    expect(c.values.adminToken).toBe(token);
    const printed = printConfig(c);
    expect(printed).not.toContain(token);
    const json = JSON.parse(printed);
    expect(json.adminToken).toBe('********');
    // Every setting with a value, in the table's order (those without a default, unset, are left out).
    const unset = ['redis', 'blobDir'];
    expect(Object.keys(json)).toEqual(settings.map((s) => s.key).filter((k) => !unset.includes(k)));
    delete json.adminToken;
    const back = await loadConfig({ config: await file('printed.json', json) }, {}, pkg);
    const { adminToken: _, ...rest } = c.values;
    expect(back.values).toEqual(rest);
  });

  it('gives the relay its options in its units', async () => {
    const c = await loadConfig({ 'max-call-mib': '3', 'context-catchup-kib': '16' }, {}, pkg);
    const o = startOptions(c);
    expect(o.limits.callBytes).toBe(3 * 2 ** 20);
    expect(o.context.catchUpBytes).toBe(16 * 1024);
    expect(o.adminToken).toBeUndefined();
  });

  it('has one row per flag, env and file key: --help and parseArgs come from it', () => {
    for (const s of settings) {
      expect(USAGE).toContain(`file "${s.key}"`);
      expect(USAGE).toContain(`env ${envName(s.key)}`);
      if (s.flag !== undefined) {
        expect(USAGE).toContain(`--${s.flag}`);
        expect(commands.start![s.flag]).toBeDefined();
      }
    }
    expect(new Set(settings.map((s) => envName(s.key))).size).toBe(settings.length);
  });
});

describe('adminToken', () => {
  it('is the token the relay checks, and is never written to the data directory', async () => {
    const r = await inProcessRelay({ adminToken: token });
    try {
      const keys = (auth: string) =>
        fetch(`${r.relay.url}/api/keys`, { headers: { authorization: `Bearer ${auth}` } });
      expect((await keys(token)).status).toBe(200);
      expect((await keys('x'.repeat(32))).status).toBe(401);
      expect(existsSync(join(r.dataDir, 'admin-token'))).toBe(false);
    } finally {
      await r.close();
    }
  });
});

describe('brume start --print-config', () => {
  it('prints what a real start would run with, secret masked, and exits 0', async () => {
    const config = await file('cli.json', { port: 1003, maxConns: 7 });
    const { stdout } = await promisify(execFile)(
      join(root, 'node_modules/.bin/tsx'),
      ['relay/cli.ts', 'start', '--config', config, '--port', '1001', '--print-config'],
      { cwd: root, env: { ...process.env, BRUME_ADMIN_TOKEN: token, BRUME_MAX_CONNS: '9' } },
    );
    expect(stdout).not.toContain(token);
    expect(JSON.parse(stdout)).toMatchObject({
      port: 1001,
      maxConns: 9,
      adminToken: '********',
      web: join(root, 'dist/web'),
    });
  }, 60_000); // a tsx start on a busy machine
});
