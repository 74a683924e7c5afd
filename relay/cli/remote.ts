/**
 * The `brume` commands that talk to a running relay (deploy, current, keys, trust), all through
 * the one relay client: a refusal prints the relay's status, code and message and exits 1.
 */
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { BrumeError, httpStatus } from '../../core/errors';
import { type RelayClient, relayClient } from '../../core/relay-client';
import { type Flag, UsageError } from './args';

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

/** The relay the flags name, with the credential they give. */
export async function relayFor(flag: Flag): Promise<RelayClient> {
  const credentialText = await credential(flag);
  return relayClient({
    base: relayOf(flag),
    credential: credentialText,
    fetch,
  });
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

export async function deploy(file: string, flag: Flag): Promise<number> {
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
    // 201: stored now; 200: this very bundle was there already.
    const what = res.status === 201 ? 'deployed' : 'already deployed:';
    console.log(`${what} ${reply.name}@${reply.version} to ${relay.base}`);
    if (reply.current === false && reply.note) console.log(reply.note);
  });
}

export async function current(name: string, version: string, flag: Flag): Promise<number> {
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

export async function keys(
  positionals: string[],
  values: Record<string, unknown>,
  flag: Flag,
): Promise<number> {
  const [action = 'list', id, ...extra] = positionals;
  if (action === 'list') {
    if (id) throw new UsageError('keys list takes no argument');
    const relay = await relayFor(flag);
    return remote('refused', async () => {
      const list = await relay.json<KeyInfo[]>('GET', '/api/keys');
      if (list.length === 0) console.log('no API keys');
      for (const k of list) {
        console.log(
          `${k.id}  ${k.scopes.join(',')}  ${k.createdAt}${k.label ? `  ${k.label}` : ''}`,
        );
      }
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
      console.log(`key ${made.id} (${made.scopes.join(', ')}):`);
      console.log(made.key);
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

/** Lists the trust list, or adds (or with `revoke` removes) one public key. */
export async function trust(
  flag: Flag,
  key: string | undefined,
  label: string,
  revoke: boolean,
): Promise<number> {
  const relay = await relayFor(flag);
  return remote('trust refused', async () => {
    if (!key) {
      const list = await relay.json<{ publicKey: string; label: string }[]>('GET', '/api/trust');
      if (list.length === 0) console.log('the trust list is empty');
      for (const e of list) console.log(`${e.publicKey}${e.label ? `  ${e.label}` : ''}`);
    } else if (revoke) {
      await relay.json('DELETE', `/api/trust/${encodeURIComponent(key)}`);
      console.log(`revoked ${key.slice(0, 16)}…`);
    } else {
      const added = await relay.json<{ nodeId: string }>('POST', '/api/trust', {
        publicKey: key,
        label,
      });
      console.log(`trusted node ${added.nodeId} (${key.slice(0, 16)}…)`);
    }
  });
}
