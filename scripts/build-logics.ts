/**
 * Compiles every Logic to `logics/build/<name>.wasm`: each `.ts` (AssemblyScript) or `.wat` file
 * directly inside a folder of `logics/` (not `sdk/` or `build/`; helpers go in subfolders), named
 * as `findLogics` says (`logics/digits/classify.ts` → `digits.wasm`). A module whose output is
 * newer than all its inputs is not rebuilt. Offline and deterministic: same sources, same bytes.
 * @example npx tsx scripts/build-logics.ts [--force]
 *          const built = await buildLogics();   // [{ name: 'digits', output, size, ... }]
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, dirname, extname, join, relative, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import wabt from 'wabt';
import { ascPackage, compileLogics } from '../relay/asc';
import { writeDurable } from '../relay/durable';
import { writeOcrKeys } from './ocr-keys';

const here = fileURLToPath(import.meta.url);
/** The repository root. */
export const repoRoot = resolve(dirname(here), '..');

export interface BuiltLogic {
  /** Module name (`digits`, `echo`, ...): see findLogics. */
  name: string;
  /** Source path, relative to the repository root. */
  source: string;
  /** Absolute path of the `.wasm`. */
  output: string;
  /** Size in bytes. */
  size: number;
  /** Whether it was compiled now (false: it was up to date). */
  compiled: boolean;
  /** Milliseconds spent compiling (0 if up to date). */
  ms: number;
}

export interface BuildOptions {
  /** Repository root (default: the one this script lives in). */
  root?: string;
  /** Rebuild even what is up to date. */
  force?: boolean;
  /** Only these module names (default: all). */
  only?: string[];
  /** Where the one-line-per-module report goes (default: nowhere). */
  log?: (line: string) => void;
}

/** Compiles what is stale and returns every module, in name order. Throws on a compile error. */
export async function buildLogics(options: BuildOptions = {}): Promise<BuiltLogic[]> {
  const root = options.root ?? repoRoot;
  const outDir = join(root, 'logics', 'build');
  mkdirSync(outDir, { recursive: true });
  writeOcrKeys(root); // a generated source of the ocr app (scripts/ocr-keys.ts)
  // A change of this script's flags or of the compiler makes every module stale.
  const compiler = fileURLToPath(new URL('../relay/asc.ts', import.meta.url));
  const script = Math.max(...[here, compiler, ascPackage()].map((f) => statSync(f).mtimeMs));
  const jobs = findLogics(root)
    .filter(({ name }) => !options.only || options.only.includes(name))
    .map(({ source, name }) => {
      const output = join(outDir, `${name}.wasm`);
      const newest = Math.max(script, ...inputsOf(root, source).map((f) => statSync(f).mtimeMs));
      const stale = options.force || !existsSync(output) || statSync(output).mtimeMs <= newest;
      return { source, name, output, stale };
    });
  const times = new Map<string, number>();
  const stale = jobs.filter((j) => j.stale);
  for (const job of stale.filter((j) => j.source.endsWith('.wat'))) {
    const start = performance.now();
    await writeDurable(job.output, await compileWat(root, job.source), { mode: 0o644 });
    times.set(job.name, performance.now() - start);
  }
  const asJobs = stale.filter((j) => j.source.endsWith('.ts'));
  if (asJobs.length > 0) {
    const compiled = await compileLogics(
      asJobs.map((j) => j.source),
      { cwd: root },
    );
    // Tests in parallel processes may build at once: readers see the old file or the new one, whole.
    for (const [i, job] of asJobs.entries()) {
      await writeDurable(job.output, compiled[i]!.bytes, { mode: 0o644 });
      times.set(job.name, compiled[i]!.ms);
    }
  }
  return jobs.map(({ source, name, output, stale }) => {
    const size = statSync(output).size;
    const ms = times.get(name) ?? 0;
    options.log?.(
      `${relative(root, output).padEnd(34)} ${(size / 1024).toFixed(1).padStart(6)} KiB  ${
        stale ? `compiled in ${(ms / 1000).toFixed(1)} s` : 'up to date'
      }`,
    );
    return { name, source, output, size, compiled: stale, ms };
  });
}

/**
 * The entry points and the names they build to, by name. An app's Logic `logics/<app>/<file>.ts`
 * builds to `<app>.wasm` (`<app>-<file>.wasm` when the app has several); a fixture
 * `logics/fixtures/<file>.{ts,wat}` to `<file>.wasm`. Two entries with one name are refused.
 */
export function findLogics(root: string = repoRoot): { name: string; source: string }[] {
  const logics = join(root, 'logics');
  const found = new Map<string, string>();
  for (const dir of readdirSync(logics, { withFileTypes: true })) {
    if (!dir.isDirectory() || dir.name === 'sdk' || dir.name === 'build') continue;
    const entries = readdirSync(join(logics, dir.name), { withFileTypes: true })
      .filter((f) => f.isFile() && /^[a-z][a-z0-9-]*\.(ts|wat)$/.test(f.name))
      .map((f) => f.name);
    for (const file of entries) {
      const stem = basename(file, extname(file));
      const name =
        dir.name === 'fixtures' ? stem : entries.length === 1 ? dir.name : `${dir.name}-${stem}`;
      const source = `logics/${dir.name}/${file}`;
      const other = found.get(name);
      if (other) {
        throw new Error(`${other} and ${source} would both build to ${name}.wasm; rename one`);
      }
      found.set(name, source);
    }
  }
  return [...found]
    .map(([name, source]) => ({ name, source }))
    .sort((a, b) => a.name.localeCompare(b.name));
}

// What a module is built from: the sources of its folder (helpers included), of the SDK, and of
// the other apps' folders it imports helpers from (digits-ee frames digits as digits does).
function inputsOf(root: string, source: string): string[] {
  if (source.endsWith('.wat')) return [join(root, source)];
  const folders = new Set([dirname(source), 'logics/sdk']);
  const text = readFileSync(join(root, source), 'utf8');
  for (const m of text.matchAll(/from\s+"\.\.\/([a-z][a-z0-9-]*)\//g))
    folders.add(`logics/${m[1]}`);
  return [...folders].flatMap((f) => listSources(join(root, f)));
}

function listSources(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile() && e.name.endsWith('.ts'))
    .map((e) => join(e.parentPath, e.name));
}

let wabtModule: ReturnType<typeof wabt> | undefined;

async function compileWat(root: string, source: string): Promise<Uint8Array> {
  wabtModule ??= wabt();
  const w = await wabtModule;
  let module: ReturnType<typeof w.parseWat> | undefined;
  try {
    module = w.parseWat(source, readFileSync(join(root, source), 'utf8'));
    module.validate();
    return module.toBinary({ log: false, write_debug_names: false }).buffer.slice();
  } catch (e) {
    throw new Error(`wabt could not compile ${source}:\n${(e as Error).message}`, { cause: e });
  } finally {
    module?.destroy();
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  const force = process.argv.includes('--force');
  buildLogics({ force, log: (line) => console.log(line) }).catch((e: Error) => {
    console.error(e.message);
    process.exitCode = 1;
  });
}
