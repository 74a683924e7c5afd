/**
 * Compiles AssemblyScript Logics to WebAssembly with the `assemblyscript` package's compiler, for
 * `scripts/build-logics.ts` (the sample apps) and `brume pack` (an app whose brume.json names a
 * `.ts` source for a `.wasm`). A Logic imports the SDK as `"brume-sdk"` (or, inside this
 * repository's logics/, as `"../sdk"`): the compiler finds it in the package's logics/sdk.
 *
 * @example
 * const [{ bytes }] = await compileLogics(['logic/hello.ts'], { cwd: appDir });
 */
import { execFile } from 'node:child_process';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { InputError } from '../core/errors';
import { packageRoot } from './package-root';

/**
 * asc flags for every Logic (PROTOCOL.md §3.1): memory imported from env.memory so the host can
 * bound it, and not re-exported; the incremental GC so one instance serves many invocations
 * without growing. -O3s: -O3's speed, ~15% smaller (-Oz saves 2% more but echoes 20% slower).
 */
export const ascFlags = [
  '-O3s',
  '--importMemory',
  '--noExportMemory',
  '--runtime',
  'incremental',
] as const;

/** The Logic SDK's folder: `import … from "brume-sdk"` reads its index.ts. */
export const sdkDir = join(packageRoot, 'logics', 'sdk');

/** The name a Logic imports the SDK by. */
export const SDK_IMPORT = 'brume-sdk';

/**
 * The compiler's package.json: beside this package (its dependency), else in the app author's
 * own project (`npm install --save-dev assemblyscript` there).
 */
export function ascPackage(cwd: string = process.cwd()): string {
  for (const from of [import.meta.url, pathToFileURL(join(cwd, 'package.json')).href]) {
    try {
      return createRequire(from).resolve('assemblyscript/package.json');
    } catch {
      // try the next place
    }
  }
  throw new InputError(
    'the AssemblyScript compiler is not installed: run "npm install --save-dev assemblyscript" in your app\'s folder',
  );
}

const run = promisify(execFile);

/**
 * The compiler runs in one child process for all modules: importing it takes seconds, and later
 * modules compile faster once the first has warmed it up. `--path <virtual>` makes asc look for
 * packages there too; reads under it are answered from the SDK's folder.
 */
const compilerScript = `
const [ascUrl, flags, sdkName, sdkDir, ...sources] = process.argv.slice(1);
const asc = await import(ascUrl);
const { readFile } = await import('node:fs/promises');
const { resolve, join } = await import('node:path');
const virtual = resolve('/brume-sdk-packages');
const sdkPrefix = join(virtual, sdkName) + '/';
const read = (name, baseDir) => {
  let path = resolve(baseDir, name);
  if (path.startsWith(sdkPrefix)) path = join(sdkDir, path.slice(sdkPrefix.length));
  else if (path.startsWith(virtual)) return Promise.resolve(null);
  return readFile(path, 'utf8').catch(() => null);
};
for (const source of sources) {
  const start = performance.now();
  let binary;
  const stderr = asc.createMemoryStream();
  const { error } = await asc.main(
    [source, '--outFile', 'out.wasm', '--path', virtual, '--noColors', ...JSON.parse(flags)],
    {
      stderr,
      readFile: read,
      writeFile: (name, contents) => { if (name.endsWith('out.wasm')) binary = contents; },
    },
  );
  if (error || !binary) {
    process.stderr.write('asc could not compile ' + source + ':\\n' + stderr.toString());
    process.exit(1);
  }
  process.stdout.write(JSON.stringify({ ms: performance.now() - start, wasm: Buffer.from(binary).toString('base64') }) + '\\n');
}
`;

export interface CompiledLogic {
  bytes: Uint8Array;
  /** Milliseconds the compiler spent on it. */
  ms: number;
}

/**
 * Compiles each source (a path relative to `cwd`) and answers the modules in the same order.
 * A compile error throws InputError with the compiler's messages (file, line, column).
 */
export async function compileLogics(
  sources: string[],
  options: { cwd: string },
): Promise<CompiledLogic[]> {
  if (sources.length === 0) return [];
  const ascUrl = pathToFileURL(join(dirname(ascPackage(options.cwd)), 'dist', 'asc.js')).href;
  try {
    const { stdout } = await run(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        compilerScript,
        '--',
        ascUrl,
        JSON.stringify(ascFlags),
        SDK_IMPORT,
        sdkDir,
        ...sources,
      ],
      { cwd: options.cwd, maxBuffer: 256 * 1024 * 1024 },
    );
    return stdout
      .trim()
      .split('\n')
      .map((line) => {
        const { ms, wasm } = JSON.parse(line) as { ms: number; wasm: string };
        return { ms, bytes: new Uint8Array(Buffer.from(wasm, 'base64')) };
      });
  } catch (e) {
    const err = e as Error & { stderr?: string };
    throw new InputError((err.stderr || err.message).trim());
  }
}
