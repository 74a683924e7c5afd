/**
 * App files kept on disk between a server node's runs: `<dir>/<sha256>`, each checked against its
 * name before use (a file that does not hash to it is deleted and fetched again), written to a
 * temporary file and renamed so a crash never leaves half a file under a good name. App lists
 * and manifests always come from the relay: they say which version is current.
 * @example const source = diskCachedSource(httpAppSource(url, fetch), join(data, 'blobs'), log);
 */
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, rename, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { InputError } from '../core/errors';
import { sha256Hex } from '../core/manifest';
import { isSha256 } from '../core/names';
import type { AppSource } from '../core/runtime';

export interface DiskSource extends AppSource {
  /** Files read from disk, and files fetched from the relay, since this source was made. */
  readonly counts: { fromDisk: number; fetched: number };
}

export function diskCachedSource(
  inner: AppSource,
  dir: string,
  log: (line: string) => void = () => {},
): DiskSource {
  const counts = { fromDisk: 0, fetched: 0 };
  let made: Promise<unknown> | undefined;
  return {
    counts,
    list: () => inner.list(),
    manifest: (app, version) => inner.manifest(app, version),
    versions: (app) => inner.versions(app),
    async blob(sha256, onProgress) {
      // The name becomes a path: only a hash may.
      if (!isSha256(sha256)) throw new InputError(`not a sha256: "${sha256.slice(0, 80)}"`);
      made ??= mkdir(dir, { recursive: true, mode: 0o700 }).catch((e: unknown) => {
        made = undefined; // tried again by the next file
        throw e;
      });
      await made;
      const path = join(dir, sha256);
      const kept = await readFile(path).catch((e: NodeJS.ErrnoException) => {
        if (e.code === 'ENOENT') return undefined;
        throw e;
      });
      if (kept) {
        const bytes = new Uint8Array(kept.buffer, kept.byteOffset, kept.byteLength);
        if ((await sha256Hex(bytes)) === sha256) {
          counts.fromDisk++;
          log(`app file ${sha256.slice(0, 12)}: ${bytes.byteLength} bytes from disk`);
          return bytes;
        }
        log(`app file ${sha256.slice(0, 12)} on disk does not match its hash: fetching it again`);
        await unlink(path).catch(() => {});
      }
      const bytes = await inner.blob(sha256, onProgress);
      counts.fetched++;
      log(`app file ${sha256.slice(0, 12)}: ${bytes.byteLength} bytes from the relay`);
      // Kept only when it is what it claims: the runtime checks it against the manifest anyway.
      if ((await sha256Hex(bytes)) === sha256) {
        const tmp = `${path}.${randomBytes(6).toString('hex')}.tmp`;
        try {
          await writeFile(tmp, bytes, { mode: 0o600 });
          await rename(tmp, path);
        } catch (e) {
          await unlink(tmp).catch(() => {});
          log(`app file ${sha256.slice(0, 12)} not kept on disk: ${(e as Error).message}`);
        }
      }
      return bytes;
    },
    async forget(sha256s) {
      for (const sha256 of sha256s) {
        if (!isSha256(sha256)) continue;
        await unlink(join(dir, sha256)).catch(() => {});
        log(`app file ${sha256.slice(0, 12)}: no version held names it, removed from disk`);
      }
    },
  };
}
