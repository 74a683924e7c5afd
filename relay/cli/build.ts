/**
 * `brume pack` (an app folder into a .brume bundle) and `brume dev` (pack and deploy it, then
 * again on every change of its files). dev deploys each build as the next patch version after
 * both brume.json's and the relay's current one, so each change becomes current at once without
 * editing brume.json; a build or a deploy that fails is printed and the watch goes on.
 */
import { type FSWatcher, watch } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { BrumeError, InputError, NotFoundError } from '../../core/errors';
import { packApp } from '../pack';
import { type Flag, type Invocation, integer, UsageError } from './args';
import { deployBundle, relayFor, show } from './remote';

function appDir(positionals: string[], verb: string): string {
  const [dir = '.', ...extra] = positionals;
  if (extra.length) throw new UsageError(`${verb} takes one directory: brume ${verb} [<dir>]`);
  return resolve(dir);
}

export async function pack({ positionals, values, flag }: Invocation): Promise<number> {
  const dir = appDir(positionals, 'pack');
  const out = flag('out');
  const r = await packApp(join(dir, 'brume.json'), out && resolve(out));
  const files = Object.keys(r.manifest.files).length;
  const answer = { name: r.manifest.name, version: r.manifest.version, files, bytes: r.bytes };
  show(values, { ...answer, out: r.outPath }, () =>
    console.log(
      `packed ${answer.name}@${answer.version} (${files} files, ${r.bytes} bytes) → ${r.outPath}`,
    ),
  );
  return 0;
}

type Version = [number, number, number];

function parseVersion(text: unknown): Version | undefined {
  const m = typeof text === 'string' ? /^(\d+)\.(\d+)\.(\d+)$/.exec(text) : null;
  return m ? [Number(m[1]), Number(m[2]), Number(m[3])] : undefined;
}

const newer = (a: Version, b: Version) => a[0] - b[0] || a[1] - b[1] || a[2] - b[2];

/**
 * The version the next dev deploy gets: brume.json's while the relay has no newer one of the app,
 * else the patch after the relay's current.
 */
async function nextVersion(dir: string, flag: Flag): Promise<string | undefined> {
  const file = join(dir, 'brume.json');
  const text = await readFile(file, 'utf8').catch(() => {
    throw new InputError(`cannot read ${file}: is ${dir} an app? (brume new <name> makes one)`);
  });
  let draft: { name?: unknown; version?: unknown };
  try {
    draft = JSON.parse(text);
  } catch (e) {
    throw new InputError(`${file}: not valid JSON (${(e as Error).message})`);
  }
  const own = parseVersion(draft.version);
  if (typeof draft.name !== 'string' || !own) return undefined; // packApp says what is wrong
  const relay = await relayFor(flag);
  const current = await relay
    .json<{ version?: unknown }>('GET', `/api/apps/${encodeURIComponent(draft.name)}`)
    .then(
      (m) => parseVersion(m.version),
      (e: unknown) => {
        if (e instanceof NotFoundError) return undefined;
        throw e;
      },
    );
  if (!current || newer(own, current) > 0) return own.join('.');
  return [current[0], current[1], current[2] + 1].join('.');
}

/** Packs `dir` as its next version into `outDir` and deploys it; answers the exit code. */
async function buildAndDeploy(
  dir: string,
  outDir: string,
  values: Record<string, unknown>,
  flag: Flag,
): Promise<number> {
  const started = performance.now();
  let file: string;
  try {
    const version = await nextVersion(dir, flag);
    const r = await packApp(join(dir, 'brume.json'), join(outDir, 'dev.brume'), {
      ...(version !== undefined && { version }),
    });
    file = r.outPath;
    const s = ((performance.now() - started) / 1000).toFixed(1);
    console.log(`built ${r.manifest.name}@${r.manifest.version} in ${s} s`);
  } catch (e) {
    if (!(e instanceof BrumeError)) throw e;
    console.error(`build failed: ${e.message}`);
    return 1;
  }
  return deployBundle(file, values, flag);
}

export async function dev({ positionals, values, flag }: Invocation): Promise<number> {
  const dir = appDir(positionals, 'dev');
  const debounceMs = integer('--debounce-ms', flag('debounce-ms') ?? '300', 0, 60_000);
  const outDir = await mkdtemp(join(tmpdir(), 'brume-dev-'));
  try {
    const first = await buildAndDeploy(dir, outDir, values, flag);
    if (values.once) return first;
    return await watchLoop(dir, debounceMs, () => buildAndDeploy(dir, outDir, values, flag));
  } finally {
    await rm(outDir, { recursive: true, force: true });
  }
}

/** What a change of is not the app's: dotfiles, bundles, node_modules. */
const ignored = (name: string) =>
  name.split('/').some((part) => part.startsWith('.') || part === 'node_modules') ||
  name.endsWith('.brume');

/**
 * Runs `rebuild` `debounceMs` after the last change under `dir`: one at a time, and changes made
 * during a build make one more build after it (never a queue). Ends on SIGINT or SIGTERM.
 */
function watchLoop(
  dir: string,
  debounceMs: number,
  rebuild: () => Promise<number>,
): Promise<number> {
  return new Promise((done, fail) => {
    let timer: NodeJS.Timeout | undefined;
    let running = false;
    let again = false;
    const changed = new Set<string>();
    const run = async () => {
      if (running) {
        again = true;
        return;
      }
      running = true;
      console.log(`changed: ${[...changed].sort().join(', ')}`);
      changed.clear();
      try {
        await rebuild();
      } catch (e) {
        stop();
        fail(e);
        return;
      }
      running = false;
      if (again) {
        again = false;
        void run();
      }
    };
    const watcher: FSWatcher = watch(dir, { recursive: true }, (_event, name) => {
      if (!name || ignored(name)) return;
      changed.add(name);
      clearTimeout(timer);
      timer = setTimeout(run, debounceMs);
    });
    watcher.on('error', (e) => {
      stop();
      fail(e);
    });
    const stop = () => {
      clearTimeout(timer);
      watcher.close();
      process.off('SIGINT', end).off('SIGTERM', end);
    };
    const end = () => {
      stop();
      done(0);
    };
    process.on('SIGINT', end).on('SIGTERM', end);
    console.log(`watching ${dir} for changes (Ctrl-C to stop)`);
  });
}
