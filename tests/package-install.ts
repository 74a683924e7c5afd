// The installable package as a user gets it: packed by `npm pack` into a tarball, installed into
// a directory of its own, offline. Tests run where nothing but loopback is reachable, so every
// dependency comes from the npm cache that `npm ci` filled (CI runs it before `npm test`).
import { execFile } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
const root = fileURLToPath(new URL('..', import.meta.url));

export interface Installed {
  /** The directory installed into (its node_modules holds brume and its dependencies). */
  dir: string;
  /** node_modules/.bin/brume, the link npm made to the package's bin. */
  bin: string;
  /** The compiled CLI inside the installed package. */
  cli: string;
  version: string;
}

interface LockEntry {
  dev?: boolean;
  devOptional?: boolean;
  optional?: boolean;
  [field: string]: unknown;
}

/**
 * Packs this checkout (lib/ compiled now; dist/ from `npm run build`) into `dir` and installs the
 * tarball there with `npm ci --offline`, from a lock file made of the package's own shrinkwrap.
 */
export async function packAndInstall(dir: string): Promise<Installed> {
  const tsx = join(root, 'node_modules/.bin/tsx');
  await run(tsx, ['scripts/build-package.ts', '--pack', dir], { cwd: root });
  const pkg = JSON.parse(await readFile(join(root, 'package.json'), 'utf8'));
  const tarball = `${pkg.name}-${pkg.version}.tgz`;
  // What the tarball carries, not this checkout: its package.json and its shrinkwrap.
  await run('tar', ['-xzf', tarball, 'package/package.json', 'package/npm-shrinkwrap.json'], {
    cwd: dir,
  });
  const inside = async (f: string) => JSON.parse(await readFile(join(dir, 'package', f), 'utf8'));
  const packed = await inside('package.json');
  const shrinkwrap = (await inside('npm-shrinkwrap.json')) as {
    packages: Record<string, LockEntry>;
  };
  await writeFile(join(dir, 'package.json'), JSON.stringify(installer(tarball)));
  await writeFile(
    join(dir, 'package-lock.json'),
    JSON.stringify(lockFor(tarball, packed, shrinkwrap)),
  );
  try {
    // No install scripts: none of the relay's dependencies needs one on Linux (onnxruntime-node
    // ships its CPU binaries; its script only fetches optional GPU builds).
    await run('npm', ['ci', '--offline', '--ignore-scripts', '--no-audit', '--no-fund'], {
      cwd: dir,
      maxBuffer: 16 << 20,
    });
  } catch (e) {
    const text = `${(e as { stderr?: string }).stderr ?? ''}${(e as Error).message}`;
    const hint = text.includes('ENOTCACHED')
      ? '\nThe install is offline: run `npm ci` first, so the npm cache holds every dependency.'
      : '';
    throw new Error(`npm ci of the packed tarball failed:\n${text}${hint}`);
  }
  return {
    dir,
    bin: join(dir, 'node_modules/.bin/brume'),
    cli: join(dir, 'node_modules/brume', packed.bin.brume),
    version: packed.version,
  };
}

function installer(tarball: string) {
  return { name: 'brume-install', private: true, dependencies: { brume: `file:${tarball}` } };
}

/** The installing project's lock: brume from the tarball, its dependencies as it pins them. */
function lockFor(
  tarball: string,
  packed: Record<string, unknown>,
  shrinkwrap: { packages: Record<string, LockEntry> },
) {
  const { version, license, bin, engines, dependencies } = packed;
  const packages: Record<string, unknown> = {
    '': installer(tarball),
    'node_modules/brume': {
      version,
      resolved: `file:${tarball}`,
      license,
      bin,
      engines,
      dependencies,
    },
  };
  for (const [path, entry] of Object.entries(shrinkwrap.packages)) {
    if (!path.startsWith('node_modules/') || entry.dev) continue;
    // Needed by the package only where optional (a platform's binary, say).
    const { devOptional, ...rest } = entry;
    packages[path] = devOptional ? { ...rest, optional: true } : rest;
  }
  return { name: 'brume-install', lockfileVersion: 3, requires: true, packages };
}
