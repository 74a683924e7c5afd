/**
 * `brume blob put <file>` and `brume blob get <hash> [--out file]`: a file streamed to or from a
 * relay's blob store (PROTOCOL.md §6), never held whole in memory, with progress on stderr
 * (percent and MB/s). Both check the sha256 of what they moved against the relay's.
 */
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { rm, stat } from 'node:fs/promises';
import { Readable, Transform, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { InternalError, UnavailableError } from '../../core/errors';
import { isSha256 } from '../../core/names';
import { refusal } from '../../core/relay-client';
import { type Flag, UsageError } from './args';
import { relayFor, relayOf, remote } from './remote';

export async function blob(positionals: string[], flag: Flag, json: boolean): Promise<number> {
  const [action, arg, ...extra] = positionals;
  if (action === 'put') {
    if (!arg || extra.length)
      throw new UsageError('blob put takes one file: brume blob put <file>');
    return put(arg, flag, json);
  }
  if (action === 'get') {
    if (!arg || extra.length)
      throw new UsageError('blob get takes one hash: brume blob get <hash>');
    if (!isSha256(arg)) throw new UsageError(`"${arg}" is not a sha256 (64 lowercase hex digits)`);
    return get(arg, flag, json);
  }
  throw new UsageError(`blob takes put <file> or get <hash>, not "${action ?? ''}"`);
}

async function put(file: string, flag: Flag, json: boolean): Promise<number> {
  const { size } = await stat(file).catch((e: NodeJS.ErrnoException) => {
    throw new UsageError(`cannot read ${file}: ${e.code ?? e.message}`);
  });
  const relay = await relayFor(flag);
  return remote('upload refused', async () => {
    const hasher = createHash('sha256');
    const meter = progress('uploading', size);
    const counted = createReadStream(file).pipe(through(hasher, meter.add));
    const res = await request(relay.base, '/api/blobs', {
      method: 'PUT',
      headers: {
        ...auth(relay.credential),
        'content-type': 'application/octet-stream',
        'content-length': String(size),
      },
      body: Readable.toWeb(counted) as ReadableStream,
      duplex: 'half',
    });
    meter.done();
    const stored = (await res.json()) as { hash: string; size: number };
    const hash = hasher.digest('hex');
    if (stored.hash !== hash) {
      throw new InternalError(`the relay stored ${stored.hash}, but ${file} hashes to ${hash}`);
    }
    console.log(json ? JSON.stringify(stored) : `${stored.hash}  ${stored.size} bytes`);
  });
}

async function get(hash: string, flag: Flag, json: boolean): Promise<number> {
  // An app's file needs no credential: without one, ask anyway.
  const relay = await relayFor(flag).catch((e: unknown) => {
    if (e instanceof UsageError) return { base: relayOf(flag), credential: undefined };
    throw e;
  });
  const out = flag('out');
  return remote('download refused', async () => {
    const res = await request(relay.base, `/api/blobs/${hash}`, {
      headers: auth(relay.credential),
    });
    const size = Number(res.headers.get('content-length') ?? Number.NaN);
    const hasher = createHash('sha256');
    const meter = progress('downloading', size);
    const sink: Writable = out ? createWriteStream(out) : process.stdout;
    try {
      await pipeline(Readable.fromWeb(res.body as never), through(hasher, meter.add), sink, {
        end: out !== undefined,
      });
      const got = hasher.digest('hex');
      if (got !== hash)
        throw new InternalError(`the relay sent bytes that hash to ${got}, not ${hash}`);
    } catch (e) {
      if (out) await rm(out, { force: true });
      throw e;
    }
    meter.done();
    if (out)
      console.log(json ? JSON.stringify({ hash, size: meter.bytes(), out }) : `${hash} → ${out}`);
  });
}

function auth(credential: string | undefined): Record<string, string> {
  return credential ? { authorization: `Bearer ${credential}` } : {};
}

/** A fetch whose refusal is the relay's error and whose network failure is E_UNAVAILABLE. */
async function request(base: string, path: string, init: RequestInit): Promise<Response> {
  let res: Response;
  try {
    res = await fetch(new URL(path, base), init);
  } catch (e) {
    const why = (e as { cause?: { code?: string } }).cause?.code ?? (e as Error).message;
    throw new UnavailableError(`cannot reach the relay at ${base} (${why})`, { cause: e });
  }
  if (!res.ok) throw await refusal(res, `${init.method ?? 'GET'} ${path}`);
  return res;
}

function through(hasher: ReturnType<typeof createHash>, add: (n: number) => void): Transform {
  return new Transform({
    transform(chunk: Buffer, _enc, done) {
      hasher.update(chunk);
      add(chunk.length);
      done(null, chunk);
    },
  });
}

/**
 * Progress on stderr: on a terminal one line rewritten at most 5 times a second, elsewhere a line
 * per tenth; `total` NaN when unknown (then bytes only).
 */
function progress(what: string, total: number) {
  const started = performance.now();
  const tty = process.stderr.isTTY === true;
  let bytes = 0;
  let shownAt = 0;
  let shownTenth = -1;
  const line = () => {
    const s = (performance.now() - started) / 1000;
    const rate = s > 0 ? (bytes / 1e6 / s).toFixed(1) : '0.0';
    const part =
      Number.isFinite(total) && total > 0 ? `${Math.floor((bytes / total) * 100)}% ` : '';
    return `${what} ${part}(${(bytes / 1e6).toFixed(1)} MB) ${rate} MB/s`;
  };
  return {
    add(n: number) {
      bytes += n;
      const tenth = Number.isFinite(total) && total > 0 ? Math.floor((bytes / total) * 10) : -1;
      if (tty && performance.now() - shownAt > 200) {
        shownAt = performance.now();
        process.stderr.write(`\r${line()}`);
      } else if (!tty && tenth > shownTenth && tenth < 10) {
        shownTenth = tenth;
        process.stderr.write(`${line()}\n`);
      }
    },
    done() {
      process.stderr.write(tty ? `\r${line()}\n` : `${line()}\n`);
    },
    bytes: () => bytes,
  };
}
