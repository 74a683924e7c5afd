/**
 * The installable package's compiled part: the relay's CLI and its Logic worker-thread entry,
 * bundled by esbuild to plain JavaScript in lib/ (dependencies stay external: npm installs them),
 * and npm-shrinkwrap.json, a copy of the lock file, so an install of the tarball resolves the very
 * versions tested here (and can do so offline, from the npm cache `npm ci` filled).
 * `npm pack` runs it (prepack, after `npm run build` made dist/web and dist/apps); postpack
 * runs it with --clean, because a shrinkwrap at the root would replace package-lock.json for
 * this checkout's own installs.
 *
 * @example
 * npx tsx scripts/build-package.ts                 # lib/ and npm-shrinkwrap.json
 * npx tsx scripts/build-package.ts --pack <dir>    # also packs into <dir>, then cleans up
 * npx tsx scripts/build-package.ts --clean         # removes npm-shrinkwrap.json
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build, type Metafile } from 'esbuild';

const root = fileURLToPath(new URL('..', import.meta.url));
const shrinkwrap = join(root, 'npm-shrinkwrap.json');

/** Each file the relay runs, by its name in lib/: the CLI and every Worker it spawns. */
const entries = {
  brume: 'relay/cli.ts',
  // relay/platform.ts spawns it (new Worker) beside the CLI: lib/logic-thread.js.
  'logic-thread': 'relay/logic-thread.ts',
};

/** The build outputs the package carries; `npm run build` makes them. */
const carried = ['dist/web/index.html', 'dist/apps'];

async function buildPackage(): Promise<void> {
  for (const f of carried) {
    if (!existsSync(join(root, f))) throw new Error(`${f} is missing: run npm run build first`);
  }
  rmSync(join(root, 'lib'), { recursive: true, force: true });
  const result = await build({
    absWorkingDir: root,
    metafile: true,
    entryPoints: entries,
    outdir: 'lib',
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20.19',
    packages: 'external',
    logLevel: 'warning',
  });
  checkDependencies(result.metafile);
  // The source's shebang runs tsx; the compiled CLI runs on plain Node.
  const cli = join(root, 'lib/brume.js');
  const text = readFileSync(cli, 'utf8').replace(/^#!.*\n/, '');
  writeFileSync(cli, `#!/usr/bin/env node\n${text}`, { mode: 0o755 });
  writeFileSync(shrinkwrap, `${JSON.stringify(shrinkwrapOf(root), null, 2)}\n`);
}

interface LockEntry {
  name?: string;
  version?: string;
  resolved?: string;
  link?: boolean;
  [field: string]: unknown;
}

/**
 * The lock file as the package's shrinkwrap: its root entry as package.json says now, and every
 * entry with the tarball URL this checkout's npm omits (omit-lockfile-registry-resolved), so an
 * install fetches tarballs by URL and integrity (from the cache when offline) without asking the
 * registry for metadata first.
 */
function shrinkwrapOf(dir: string) {
  const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
  const lock = JSON.parse(readFileSync(join(dir, 'package-lock.json'), 'utf8')) as {
    packages: Record<string, LockEntry>;
  };
  const registry = (process.env.npm_config_registry ?? 'https://registry.npmjs.org/').replace(
    /\/?$/,
    '/',
  );
  for (const [path, entry] of Object.entries(lock.packages)) {
    if (path === '' || entry.link || entry.resolved || !entry.version) continue;
    const name =
      entry.name ?? path.slice(path.lastIndexOf('node_modules/') + 'node_modules/'.length);
    entry.resolved = `${registry}${name}/-/${name.split('/').pop()}-${entry.version}.tgz`;
  }
  const { name, version, license, bin, engines, dependencies, devDependencies } = pkg;
  lock.packages[''] = { name, version, license, bin, engines, dependencies, devDependencies };
  return { ...lock, name, version };
}

/**
 * Every package the compiled relay imports is one npm installs with it: a dependency, not a
 * devDependency (those serve the build of the page, which the package carries built).
 */
function checkDependencies(meta: Metafile): void {
  const { dependencies = {} } = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
  const missing = new Set<string>();
  for (const output of Object.values(meta.outputs)) {
    for (const { path, external } of output.imports) {
      if (!external || path.startsWith('node:')) continue;
      const name = path
        .split('/')
        .slice(0, path.startsWith('@') ? 2 : 1)
        .join('/');
      if (!(name in dependencies)) missing.add(name);
    }
  }
  if (missing.size) {
    throw new Error(
      `the relay imports ${[...missing].join(', ')}, not in package.json "dependencies": an installed package would lack it`,
    );
  }
}

function clean(): void {
  rmSync(shrinkwrap, { force: true });
}

/** Builds lib/, packs the package into `dir` (without prepack's full build) and cleans up. */
async function packInto(dir: string): Promise<void> {
  await buildPackage();
  mkdirSync(dir, { recursive: true });
  try {
    execFileSync('npm', ['pack', '--ignore-scripts', '--pack-destination', dir], {
      cwd: root,
      stdio: ['ignore', 'inherit', 'inherit'],
    });
  } finally {
    clean();
  }
}

const [flag, arg] = process.argv.slice(2);
if (flag === '--clean') clean();
else if (flag === '--pack' && arg) await packInto(arg);
else if (flag === undefined) await buildPackage();
else throw new Error('usage: build-package.ts [--pack <dir> | --clean]');
