/**
 * The `brume` commands that talk to a running relay (deploy, apps, call, current, keys, trust),
 * all through the one relay client: a refusal prints the relay's status, code and message and
 * exits 1. With --json a command prints its answer as one JSON value on stdout.
 */
import { createReadStream } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { AppSummary } from '../../core/api';
import { decode } from '../../core/codec';
import { BrumeError, httpStatus, InputError } from '../../core/errors';
import { type RelayClient, relayClient } from '../../core/relay-client';
import { type Flag, type Invocation, UsageError } from './args';

export function relayOf(flag: Flag): string {
  return flag('relay') ?? process.env.BRUME_RELAY ?? 'http://127.0.0.1:8787';
}

/** The credential to send: --key, --token, the token in --data, BRUME_KEY, BRUME_ADMIN_TOKEN, .brume. */
async function credential(flag: Flag): Promise<string> {
  const fromDir = async (dir: string) =>
    (await readFile(join(resolve(dir), 'admin-token'), 'utf8').catch(() => '')).trim();
  const token =
    flag('key') ??
    flag('token') ??
    (flag('data') !== undefined ? await fromDir(flag('data')!) : undefined) ??
    process.env.BRUME_KEY ??
    process.env.BRUME_ADMIN_TOKEN ??
    (await fromDir(process.env.BRUME_DATA ?? '.brume'));
  if (!token) {
    throw new UsageError(
      `no credential: pass --key <key> (env BRUME_KEY), --token <admin token>, or --data <the relay's dir>`,
    );
  }
  return token;
}

/**
 * The relay the flags name, with the credential they give; `anonymous`: none is needed, and one
 * is sent only when given (a flag or BRUME_KEY/BRUME_ADMIN_TOKEN, not a token found in .brume).
 */
export async function relayFor(flag: Flag, anonymous = false): Promise<RelayClient> {
  const given = anonymous
    ? (flag('key') ??
      flag('token') ??
      (flag('data') !== undefined ? await credential(flag) : undefined) ??
      process.env.BRUME_KEY ??
      process.env.BRUME_ADMIN_TOKEN)
    : await credential(flag);
  return relayClient({ base: relayOf(flag), ...(given && { credential: given }), fetch });
}

/** Prints `value` as JSON (binary as { "$bin": base64 }) when --json is given, else `text()`. */
export function show(values: Record<string, unknown>, value: unknown, text: () => void): void {
  if (values.json) console.log(JSON.stringify(value, binAsBase64, 2));
  else text();
}

function binAsBase64(_key: string, v: unknown): unknown {
  return v instanceof Uint8Array ? { $bin: Buffer.from(v).toString('base64') } : v;
}

/** The largest --input file read. */
const MAX_INPUT_BYTES = 256 * 2 ** 20;

/**
 * --input as the value to send: JSON text, `@file.json`, or `@file.msgpack` (MessagePack, which
 * can carry binary fields); `{}` when not given. `msgpack` says which it was, to send it so.
 */
export async function inputOf(flag: Flag): Promise<{ value: unknown; msgpack: boolean }> {
  const text = flag('input');
  if (text === undefined) return { value: {}, msgpack: false };
  if (!text.startsWith('@')) return { value: parseJson(text, '--input'), msgpack: false };
  const file = text.slice(1);
  const bytes = await readBounded(file, MAX_INPUT_BYTES);
  if (file.endsWith('.msgpack')) {
    try {
      return { value: decode(bytes), msgpack: true };
    } catch (e) {
      throw new InputError(`--input: ${file} is not MessagePack (${(e as Error).message})`);
    }
  }
  return { value: parseJson(bytes.toString('utf8'), `--input ${file}`), msgpack: false };
}

/** The bytes of `file`, refused past `max` (a device or a pipe says no size before it is read). */
async function readBounded(file: string, max: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of createReadStream(file, { end: max })) {
      size += (chunk as Buffer).length;
      chunks.push(chunk as Buffer);
    }
  } catch (e) {
    throw new UsageError(`--input: cannot read ${file} (${(e as NodeJS.ErrnoException).code})`);
  }
  if (size > max) throw new InputError(`--input: ${file} is over the ${max} bytes read at most`);
  return Buffer.concat(chunks);
}

function parseJson(text: string, what: string): unknown {
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new UsageError(`${what} is not JSON (${(e as Error).message}); a file is @file.json`);
  }
}

/**
 * Runs `action` against the relay; a refusal or an unreachable relay is printed (`what` refused,
 * with the relay's status and code) and answers exit code 1.
 */
export async function remote(what: string, action: () => Promise<void>): Promise<number> {
  try {
    await action();
    return 0;
  } catch (e) {
    if (!(e instanceof BrumeError)) throw e;
    // The client's own UnavailableError has the fetch failure as its cause; the relay's has none.
    if (e.cause !== undefined) console.error(`${e.message}: is it running? (brume start)`);
    else console.error(`${what} (${httpStatus(e)} ${e.code}): ${e.message}`);
    return 1;
  }
}

export async function deploy({ positionals, values, flag }: Invocation): Promise<number> {
  const [file, ...extra] = positionals;
  if (!file || extra.length) throw new UsageError('deploy takes one file: brume deploy <file>');
  return deployBundle(file, values, flag);
}

/** Uploads the bundle in `file`; answers the exit code (1: refused or unreachable). */
export async function deployBundle(
  file: string,
  values: Record<string, unknown>,
  flag: Flag,
): Promise<number> {
  const relay = await relayFor(flag);
  const body = new Uint8Array(await readFile(file));
  return remote('deploy refused', async () => {
    const res = await relay.send('POST', '/api/apps', {
      headers: { 'content-type': 'application/vnd.brume.bundle' },
      body,
    });
    const reply = (await res.json()) as {
      name: string;
      version: string;
      current?: boolean;
      note?: string;
    };
    show(values, { ...reply, created: res.status === 201 }, () => {
      // 201: stored now; 200: this very bundle was there already.
      const what = res.status === 201 ? 'deployed' : 'already deployed:';
      console.log(`${what} ${reply.name}@${reply.version} to ${relay.base}`);
      if (reply.current === false && reply.note) console.log(reply.note);
    });
  });
}

export async function apps({ positionals, values, flag }: Invocation): Promise<number> {
  if (positionals.length) throw new UsageError('apps takes no argument');
  const relay = await relayFor(flag, true);
  return remote('refused', async () => {
    const list = await relay.json<AppSummary[]>('GET', '/api/apps');
    show(values, list, () => {
      if (list.length === 0) console.log('no apps deployed');
      for (const a of list) {
        const services = Object.entries(a.services).map(([name, s]) =>
          s.kind === 'logic'
            ? `${name}(${s.rpcs.join(',')})`
            : `${name}[${Object.keys(s.variants).join(',')}]`,
        );
        console.log(`${a.name}@${a.version}  ${services.join(' ')}`);
      }
    });
  });
}

interface CallAnswer {
  value: unknown;
  node?: string;
  [field: string]: unknown;
}

export async function call({ positionals, values, flag }: Invocation): Promise<number> {
  const [app, service, ...extra] = positionals;
  if (!app || !service || extra.length) {
    throw new UsageError('call takes an app and a service: brume call digits classify --input …');
  }
  const input = await inputOf(flag);
  const rpc = flag('rpc');
  const relay = await relayFor(flag, true);
  const path = `/api/call/${encodeURIComponent(app)}/${encodeURIComponent(service)}`;
  const body = { input: input.value, ...(rpc !== undefined && { rpc }) };
  return remote('call refused', async () => {
    const answer = input.msgpack
      ? await relay.msgpack<CallAnswer>('POST', path, body)
      : await relay.json<CallAnswer>('POST', path, body);
    show(values, answer, () => console.log(JSON.stringify(answer.value, binAsBase64, 2)));
  });
}

export async function current({ positionals, flag }: Invocation): Promise<number> {
  const [name, version, ...extra] = positionals;
  if (!name || !version || extra.length) {
    throw new UsageError('current takes an app and a version: brume current digits 1.0.0');
  }
  const relay = await relayFor(flag);
  return remote('refused', async () => {
    await relay.json('POST', `/api/apps/${encodeURIComponent(name)}/current`, { version });
    console.log(`${name}@${version} is now current on ${relay.base}`);
  });
}

interface KeyInfo {
  id: string;
  label: string;
  scopes: string[];
  createdAt: string;
  key?: string;
}

export async function keys({ positionals, values, flag }: Invocation): Promise<number> {
  const [action = 'list', id, ...extra] = positionals;
  if (action === 'list') {
    if (id) throw new UsageError('keys list takes no argument');
    const relay = await relayFor(flag);
    return remote('refused', async () => {
      const list = await relay.json<KeyInfo[]>('GET', '/api/keys');
      show(values, list, () => {
        if (list.length === 0) console.log('no API keys');
        for (const k of list) {
          console.log(
            `${k.id}  ${k.scopes.join(',')}  ${k.createdAt}${k.label ? `  ${k.label}` : ''}`,
          );
        }
      });
    });
  }
  if (action === 'create') {
    if (id) throw new UsageError('keys create takes no argument: give --scope and --label');
    const scopes = (values.scope as string[] | undefined) ?? [];
    if (scopes.length === 0) throw new UsageError('keys create needs at least one --scope');
    const relay = await relayFor(flag);
    return remote('refused', async () => {
      const body = { scopes, label: flag('label') ?? '' };
      const made = await relay.json<KeyInfo>('POST', '/api/keys', body);
      show(values, made, () => {
        console.log(`key ${made.id} (${made.scopes.join(', ')}):`);
        console.log(made.key);
      });
      console.error('this is the only time the key is shown: keep it somewhere safe');
    });
  }
  if (action === 'revoke') {
    if (!id || extra.length) throw new UsageError('keys revoke takes one key id');
    const relay = await relayFor(flag);
    return remote('refused', async () => {
      await relay.json('DELETE', `/api/keys/${encodeURIComponent(id)}`);
      console.log(`revoked key ${id}`);
    });
  }
  throw new UsageError(`unknown keys action "${action}": list, create or revoke`);
}

/** Lists the trust list, or adds (or with --revoke removes) one public key. */
export async function trust({ positionals, values, flag }: Invocation): Promise<number> {
  const [key, ...extra] = positionals;
  if (extra.length) throw new UsageError('trust takes at most one public key');
  if (values.revoke && !key) throw new UsageError('--revoke needs the public key to remove');
  const [label, revoke] = [flag('label') ?? '', Boolean(values.revoke)];
  const relay = await relayFor(flag);
  return remote('trust refused', async () => {
    if (!key) {
      const list = await relay.json<{ publicKey: string; label: string }[]>('GET', '/api/trust');
      show(values, list, () => {
        if (list.length === 0) console.log('the trust list is empty');
        for (const e of list) console.log(`${e.publicKey}${e.label ? `  ${e.label}` : ''}`);
      });
    } else if (revoke) {
      await relay.json('DELETE', `/api/trust/${encodeURIComponent(key)}`);
      console.log(`revoked ${key.slice(0, 16)}…`);
    } else {
      const added = await relay.json<{ nodeId: string }>('POST', '/api/trust', {
        publicKey: key,
        label,
      });
      show(values, added, () => console.log(`trusted node ${added.nodeId} (${key.slice(0, 16)}…)`));
    }
  });
}
