/**
 * The relay's one way to write and read its small state files (trust list, keys, agreement keys,
 * snapshots): a write goes to a unique temporary file, is fsynced, renamed over the target and the
 * directory fsynced, so a reader (or a restart after a crash) sees the old file or the new one,
 * never a mix. Writes to one path run one at a time, in call order. A file that is there but
 * cannot be parsed is moved aside with a message, so a relay still starts; only a missing file
 * reads as "nothing yet".
 * @example await writeDurable(join(dir, 'trust.json'), JSON.stringify(list));
 *          const list = await readDurable(join(dir, 'trust.json'), JSON.parse, log) ?? [];
 */
import { randomBytes } from 'node:crypto';
import { open, readdir, readFile, rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

const queues = new Map<string, Promise<unknown>>();

/** Writes `data` to `path` atomically and durably; concurrent writes to one path are serialized. */
export function writeDurable(
  path: string,
  data: string | Uint8Array,
  options: { mode?: number } = {},
): Promise<void> {
  const previous = queues.get(path) ?? Promise.resolve();
  const run = previous.then(() => writeNow(path, data, options.mode ?? 0o600));
  const settled = run.catch(() => undefined);
  queues.set(path, settled);
  // The queue forgets a path once its last write is done: names from the network cannot grow it.
  void settled.then(() => {
    if (queues.get(path) === settled) queues.delete(path);
  });
  return run;
}

/** The names writeDurable gives its temporary files. */
const TEMPORARY = /^\..+\.[0-9a-f]{12}\.tmp$/;

async function writeNow(path: string, data: string | Uint8Array, mode: number): Promise<void> {
  const tmp = join(dirname(path), `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`);
  const file = await open(tmp, 'wx', mode);
  try {
    await file.writeFile(data);
    await file.sync();
  } catch (e) {
    await file.close();
    await rm(tmp, { force: true });
    throw e;
  }
  await file.close();
  try {
    await rename(tmp, path);
  } catch (e) {
    await rm(tmp, { force: true });
    throw e;
  }
  await syncDir(dirname(path));
}

/**
 * Removes the temporary files writeDurable left in `dir` (only those of the files named in `of`,
 * if given) when a process died mid-write: never complete, never used. Run at start, before any
 * write to those files.
 */
export async function removeTemporaries(dir: string, of?: string[]): Promise<void> {
  for (const name of await readdir(dir)) {
    if (!TEMPORARY.test(name)) continue;
    if (of && !of.some((target) => name.startsWith(`.${target}.`))) continue;
    await rm(join(dir, name), { force: true });
  }
}

/** fsyncs a directory, so a rename in it survives a crash. */
export async function syncDir(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * Reads and parses `path`. Missing: undefined. Unparseable (`parse` throws): the file is renamed
 * to `<path>.corrupt-<time>`, `warn` says so and where it went, and the answer is undefined. Any
 * other read error (permissions, I/O) is thrown: starting empty would silently lose state.
 */
export async function readDurable<T>(
  path: string,
  parse: (bytes: Buffer) => T,
  warn: (message: string) => void,
): Promise<T | undefined> {
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
  try {
    return parse(bytes);
  } catch (e) {
    const aside = await moveAside(path);
    warn(
      `${path} is corrupt (${(e as Error).message}); moved it to ${aside} and started without it`,
    );
    return undefined;
  }
}

/** Renames a damaged file out of the way, keeping it for a person to look at. */
export async function moveAside(path: string): Promise<string> {
  const aside = `${path}.corrupt-${new Date().toISOString().replace(/[:.]/g, '-')}`;
  await rename(path, aside);
  return aside;
}
