#!/usr/bin/env -S npx tsx
/**
 * The `brume` command: run a relay, pack an app, deploy a bundle.
 *
 * @example
 * npx tsx relay/cli.ts start --port 8787
 * npx tsx relay/cli.ts pack my-app --out my-app.brume
 * npx tsx relay/cli.ts deploy my-app.brume --relay http://127.0.0.1:8787 --key brume_…
 * npx tsx relay/cli.ts keys create --scope deploy:my-app --label CI
 */
import { readdir, readFile, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type ParseArgsConfig, parseArgs } from 'node:util';
import { BrumeError } from '../core/errors';
import { loadAdmin } from './admin';
import type { HubLimits } from './limits';
import { packApp } from './pack';
import { createRelay, type RelayOptions } from './server';

const packageRoot = fileURLToPath(new URL('..', import.meta.url));

const USAGE = `Usage: brume <command> [options]

Commands:
  start                 run a relay: the page, the app API, the fabric (nodes, calls, context)
  pack <dir>            pack <dir>/brume.json and the files it names into a .brume bundle
  deploy <file.brume>   upload a bundle to a relay (needs the deploy scope for its app)
  current <app> <ver>   make a deployed version current, e.g. to roll back (admin)
  keys                  list API keys (admin)
  keys create           make an API key: --scope (repeatable) and --label; shows the key once
  keys revoke <id>      revoke an API key
  trust [<publicKey>]   list the fog/cloud trust list, or add (or --revoke) a node's public key
  token                 print the admin token of a data directory (--rotate: issue a new one)

start:
  --port <n>            port (env BRUME_PORT, default 8787; 0 picks a free one)
  --host <addr>         interface (env BRUME_HOST, default 127.0.0.1; 0.0.0.0 for the network)
  --data <dir>          storage directory (env BRUME_DATA, default .brume)
  --web <dir>           the built web app (default dist/web)
  --apps <dir>          .brume files deployed when the store has no app yet (default dist/apps)
  --max-bundle-mib <n>  largest bundle a deploy may upload (default 256)
  --max-signal-kib <n>  largest PeerJS signalling message a node may send (env
                        BRUME_MAX_SIGNAL_KIB, default 64; a larger one closes its socket)
  --origin <url>        also let pages from this origin open node sockets (repeatable;
                        env BRUME_ORIGINS, comma-separated); the relay's own is always allowed
  --no-cloud            do not run the relay's own cloud node (onnxruntime-node)
  --context-catchup-kib <n>   bytes of context per catch-up frame, a catch-up in more
                        parts beyond (default 4096, at most 12288: a frame is 16 MiB)
  --context-compact-mib <n>   compact context.log once it is over twice the live
                        context plus this (default 1)
  --context-agreements <n>    agreement keys kept in agreements.json (and recent joins
                        in memory) at most (default 10000)
  --logic-timeout-ms <n>  the cloud node's cap on a Logic step, whatever its manifest asks
                        (default 10000)
  --logic-memory-mib <n>  the cloud node's cap on a Logic's guest memory (default 256)
  --logic-heap-mib <n>  the JS heap of each of the cloud node's Logic worker threads (default 64)
  --allow-host <name>   also answer requests with this Host header (repeatable; env
                        BRUME_ALLOWED_HOSTS, comma-separated): name (any port) or name:port;
                        * allows any. The relay's own names are always allowed; any other Host
                        is refused with 421 (DNS rebinding)
  --call-rate <n>       anonymous HTTP calls per minute per client address (env BRUME_CALL_RATE,
                        default 600); over it: 429 with Retry-After. A key with the call
                        scope (or the admin token) is not limited
  --no-anonymous-calls  HTTP calls and schedules need a key with the call scope (env
                        BRUME_ANONYMOUS_CALLS=off)
  --frame-rate <n>      frames a second a node may send unasked, burst twice that (default 500)
  --max-calls-per-node <n>  calls in flight to one node, and that one node waits on (default 64)
  --max-calls <n>       calls in flight through the relay in all (default 4096)
  --max-call-mib <n>    MiB of call input held for calls in flight, in all (default 256)
  --max-node-buffer-mib <n>  MiB queued for one node before calls to it are refused; a node
                        over it at two heartbeats in a row is closed (default 32)
  --join-timeout-ms <n> a socket that has not joined by then is closed (default 10000)
  --max-conns-per-address <n>  node sockets from one client address (env
                        BRUME_MAX_CONNS_PER_ADDRESS, default 256)
  --max-conns <n>       node sockets in all (env BRUME_MAX_CONNS, default 10000)
  --verify-fraction <f> share (0 to 1) of calls on untrusted nodes also run on a second node
                        and compared; a node that disagrees is quarantined (env
                        BRUME_VERIFY_FRACTION, default 0: only qos.verify calls are checked)
  --max-quarantined <n> nodes kept in quarantine at most, the oldest released first (default 1000)

pack:
  --out <file>          where to write (default <dir>/<name>-<version>.brume)

deploy, current, keys, trust:
  --relay <url>         the relay (env BRUME_RELAY, default http://127.0.0.1:8787)
  --key <key>           an API key (env BRUME_KEY)
  --token <token>       the admin token (env BRUME_ADMIN_TOKEN)
  --data <dir>          the relay's storage directory, to use its admin token (env BRUME_DATA,
                        default .brume); used when no --key or --token is given

keys create:
  --scope <scope>       repeatable: deploy:<apps>, context:write:<apps>, call, jobs, admin;
                        <apps> is a name or a pattern like team-* (deploy alone: every app)
  --label <text>        a note kept with the key (e.g. "CI")

trust:
  --label <text>        a note kept with the key (e.g. "lab desktop")
  --revoke              remove the key instead

token:
  --data <dir>          the relay's storage directory (env BRUME_DATA, default .brume)
  --rotate              replace the token; a running relay takes the new one when restarted

  -h, --help            this text
  -v, --version         the Brume version
`;

type Options = NonNullable<ParseArgsConfig['options']>;

const common: Options = {
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean', short: 'v' },
};

const credentials: Options = {
  relay: { type: 'string' },
  key: { type: 'string' },
  token: { type: 'string' },
  data: { type: 'string' },
};

const commands: Record<string, Options> = {
  start: {
    port: { type: 'string' },
    host: { type: 'string' },
    data: { type: 'string' },
    web: { type: 'string' },
    apps: { type: 'string' },
    'max-bundle-mib': { type: 'string' },
    'max-signal-kib': { type: 'string' },
    origin: { type: 'string', multiple: true },
    'no-cloud': { type: 'boolean' },
    'context-catchup-kib': { type: 'string' },
    'context-compact-mib': { type: 'string' },
    'context-agreements': { type: 'string' },
    'logic-timeout-ms': { type: 'string' },
    'logic-memory-mib': { type: 'string' },
    'logic-heap-mib': { type: 'string' },
    'allow-host': { type: 'string', multiple: true },
    'call-rate': { type: 'string' },
    'no-anonymous-calls': { type: 'boolean' },
    'frame-rate': { type: 'string' },
    'max-calls-per-node': { type: 'string' },
    'max-calls': { type: 'string' },
    'max-call-mib': { type: 'string' },
    'max-node-buffer-mib': { type: 'string' },
    'join-timeout-ms': { type: 'string' },
    'max-conns-per-address': { type: 'string' },
    'max-conns': { type: 'string' },
    'verify-fraction': { type: 'string' },
    'max-quarantined': { type: 'string' },
  },
  pack: { out: { type: 'string' } },
  deploy: { ...credentials },
  current: { ...credentials },
  keys: { ...credentials, scope: { type: 'string', multiple: true }, label: { type: 'string' } },
  token: { data: { type: 'string' }, rotate: { type: 'boolean' } },
  trust: { ...credentials, label: { type: 'string' }, revoke: { type: 'boolean' } },
};

/** A mistake in how the command was called: exit code 2 and a pointer to --help. */
class UsageError extends Error {}

async function main(argv: string[]): Promise<number> {
  const command = argv[0] && !argv[0].startsWith('-') ? argv[0] : undefined;
  const rest = command ? argv.slice(1) : argv;
  if (command && !commands[command]) throw new UsageError(`unknown command "${command}"`);
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({
      args: rest,
      options: { ...common, ...(command ? commands[command] : {}) },
      allowPositionals: true,
      strict: true,
    });
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  const { values, positionals } = parsed;
  const flag = (name: string) => values[name] as string | undefined;
  if (values.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  if (values.version) {
    const pkg = JSON.parse(await readFile(join(packageRoot, 'package.json'), 'utf8'));
    console.log(pkg.version);
    return 0;
  }
  if (!command) throw new UsageError('no command given');

  switch (command) {
    case 'start': {
      noPositionals(positionals);
      return start({
        port: integer('--port', flag('port') ?? process.env.BRUME_PORT ?? '8787', 0, 65535),
        host: flag('host') ?? process.env.BRUME_HOST ?? '127.0.0.1',
        data: resolve(flag('data') ?? process.env.BRUME_DATA ?? '.brume'),
        // Build outputs belong to this package, so their defaults do not depend on the cwd.
        web: flag('web') ? resolve(flag('web')!) : join(packageRoot, 'dist/web'),
        apps: flag('apps') ? resolve(flag('apps')!) : join(packageRoot, 'dist/apps'),
        bodyLimit: integer('--max-bundle-mib', flag('max-bundle-mib') ?? '256', 1, 4096) * 2 ** 20,
        maxSignalBytes:
          integer(
            '--max-signal-kib',
            flag('max-signal-kib') ?? process.env.BRUME_MAX_SIGNAL_KIB ?? '64',
            1,
            16_384,
          ) * 1024,
        origins: [
          ...((values.origin as string[] | undefined) ?? []),
          ...(process.env.BRUME_ORIGINS?.split(',').filter(Boolean) ?? []),
        ].map(origin),
        cloud: !values['no-cloud'],
        context: {
          catchUpBytes:
            integer('--context-catchup-kib', flag('context-catchup-kib') ?? '4096', 16, 12288) *
            1024,
          compactFloorBytes:
            integer('--context-compact-mib', flag('context-compact-mib') ?? '1', 0, 65536) *
            2 ** 20,
          maxAgreements: integer(
            '--context-agreements',
            flag('context-agreements') ?? '10000',
            0,
            1e7,
          ),
        },
        logicCaps: {
          timeoutMs: integer('--logic-timeout-ms', flag('logic-timeout-ms') ?? '10000', 1, 600_000),
          memoryMiB: integer('--logic-memory-mib', flag('logic-memory-mib') ?? '256', 1, 4096),
          heapMiB: integer('--logic-heap-mib', flag('logic-heap-mib') ?? '64', 16, 4096),
        },
        allowedHosts: [
          ...((values['allow-host'] as string[] | undefined) ?? []),
          ...(process.env.BRUME_ALLOWED_HOSTS?.split(',').filter(Boolean) ?? []),
        ],
        callRate: integer(
          '--call-rate',
          flag('call-rate') ?? process.env.BRUME_CALL_RATE ?? '600',
          1,
          1_000_000,
        ),
        anonymousCalls:
          !values['no-anonymous-calls'] && process.env.BRUME_ANONYMOUS_CALLS !== 'off',
        ...hubLimits(flag),
        verifyFraction: fraction(
          '--verify-fraction',
          flag('verify-fraction') ?? process.env.BRUME_VERIFY_FRACTION ?? '0',
        ),
        maxQuarantined: integer('--max-quarantined', flag('max-quarantined') ?? '1000', 1, 1e6),
      });
    }
    case 'pack': {
      const [dir, ...extra] = positionals;
      if (!dir || extra.length) throw new UsageError('pack takes one directory: brume pack <dir>');
      const out = flag('out');
      const r = await packApp(join(dir, 'brume.json'), out && resolve(out));
      console.log(
        `packed ${r.manifest.name}@${r.manifest.version} (${Object.keys(r.manifest.files).length} files, ${r.bytes} bytes) → ${r.outPath}`,
      );
      return 0;
    }
    case 'deploy': {
      const [file, ...extra] = positionals;
      if (!file || extra.length) throw new UsageError('deploy takes one file: brume deploy <file>');
      return deploy(file, relayOf(flag), await credential(flag));
    }
    case 'current': {
      const [name, version, ...extra] = positionals;
      if (!name || !version || extra.length) {
        throw new UsageError('current takes an app and a version: brume current digits 1.0.0');
      }
      const r = await api(
        relayOf(flag),
        await credential(flag),
        'POST',
        `/api/apps/${encodeURIComponent(name)}/current`,
        {
          version,
        },
      );
      if (r) console.log(`${name}@${version} is now current on ${relayOf(flag)}`);
      return r ? 0 : 1;
    }
    case 'keys':
      return keys(positionals, values, flag);
    case 'token': {
      noPositionals(positionals);
      const data = resolve(flag('data') ?? process.env.BRUME_DATA ?? '.brume');
      if (values.rotate) await rm(join(data, 'admin-token'), { force: true });
      const admin = await loadAdmin(data);
      console.log(admin.token);
      if (values.rotate) console.error('new token written; restart the relay to use it');
      return 0;
    }
    case 'trust': {
      const [key, ...extra] = positionals;
      if (extra.length) throw new UsageError('trust takes at most one public key');
      if (values.revoke && !key) throw new UsageError('--revoke needs the public key to remove');
      const token = await credential(flag);
      return trust(relayOf(flag), token, key, flag('label') ?? '', Boolean(values.revoke));
    }
  }
  return 0;
}

interface StartOptions {
  port: number;
  host: string;
  data: string;
  web: string;
  apps: string;
  bodyLimit: number;
  maxSignalBytes: number;
  origins: string[];
  cloud: boolean;
  context: NonNullable<RelayOptions['context']>;
  logicCaps: { timeoutMs: number; memoryMiB: number; heapMiB: number };
  allowedHosts: string[];
  callRate: number;
  anonymousCalls: boolean;
  frameRate?: number;
  limits: Partial<HubLimits>;
  verifyFraction: number;
  maxQuarantined: number;
}

/** The hub's bounds from `start`'s flags (and env): only those given, the rest default. */
function hubLimits(flag: (name: string) => string | undefined) {
  const given = (name: string, env?: string) => flag(name) ?? (env && process.env[env]);
  const n = (name: string, min: number, max: number, env?: string) => {
    const text = given(name, env);
    return text === undefined || text === '' ? undefined : integer(`--${name}`, text, min, max);
  };
  const mib = (name: string) => {
    const v = n(name, 1, 65536);
    return v === undefined ? undefined : v * 2 ** 20;
  };
  const limits: Partial<HubLimits> = {
    callsPerNode: n('max-calls-per-node', 1, 1_000_000),
    callsInFlight: n('max-calls', 1, 10_000_000),
    callBytes: mib('max-call-mib'),
    nodeBufferedBytes: mib('max-node-buffer-mib'),
    joinTimeoutMs: n('join-timeout-ms', 100, 3_600_000),
    connsPerAddress: n('max-conns-per-address', 1, 1_000_000, 'BRUME_MAX_CONNS_PER_ADDRESS'),
    conns: n('max-conns', 1, 10_000_000, 'BRUME_MAX_CONNS'),
  };
  for (const k of Object.keys(limits) as (keyof HubLimits)[])
    if (limits[k] === undefined) delete limits[k];
  const frameRate = n('frame-rate', 1, 1_000_000);
  return { limits, ...(frameRate !== undefined && { frameRate }) };
}

async function start(o: StartOptions): Promise<number> {
  const seeds = (await readdir(o.apps).catch(() => []))
    .filter((f) => f.endsWith('.brume'))
    .sort()
    .map((f) => join(o.apps, f));
  const relay = await createRelay({
    host: o.host,
    port: o.port,
    dataDir: o.data,
    webRoot: o.web,
    appsToSeed: seeds,
    bodyLimit: o.bodyLimit,
    maxSignalBytes: o.maxSignalBytes,
    origins: o.origins,
    cloudNode: o.cloud,
    context: o.context,
    logicCaps: o.logicCaps,
    allowedHosts: o.allowedHosts,
    anonymousCalls: o.anonymousCalls,
    anonymousCallLimit: { max: o.callRate, windowMs: 60_000 },
    limits: o.limits,
    ...(o.frameRate !== undefined && { frameRate: o.frameRate }),
    verifyFraction: o.verifyFraction,
    maxQuarantined: o.maxQuarantined,
  });
  console.log(`Brume relay listening on ${relay.url} — open it in a browser to join`);
  // The token is shown once, when made: logs of every later start do not carry it.
  const tokenFile = join(o.data, 'admin-token');
  if (relay.admin.created) console.log(`admin token: ${relay.admin.token} (saved in ${tokenFile})`);
  else console.log(`admin token: in ${tokenFile} (brume token --data ${o.data} prints it)`);
  console.log(`data: ${relay.store.location}`);

  return new Promise<number>((done) => {
    let stopping = false;
    const stop = (signal: NodeJS.Signals) => {
      if (stopping) {
        console.error(`${signal} again: exiting without waiting`);
        process.exit(1);
      }
      stopping = true;
      console.log(`${signal}: closing (requests in flight finish first)`);
      relay.close().then(
        () => done(0),
        (e: unknown) => {
          console.error(`error while closing: ${(e as Error).message}`);
          done(1);
        },
      );
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
}

async function deploy(file: string, relayUrl: string, token: string): Promise<number> {
  const body = await readFile(file);
  const url = new URL('/api/apps', relayUrl);
  let res: Response;
  try {
    res = await fetch(url, {
      method: 'POST',
      headers: {
        'content-type': 'application/vnd.brume.bundle',
        authorization: `Bearer ${token}`,
      },
      body,
    });
  } catch (e) {
    const why = (e as { cause?: { code?: string } }).cause?.code ?? (e as Error).message;
    console.error(`cannot reach the relay at ${relayUrl} (${why}): is it running? (brume start)`);
    return 1;
  }
  const reply = (await res.json().catch(() => ({}))) as {
    name?: string;
    version?: string;
    current?: boolean;
    note?: string;
    error?: { code: string; message: string };
  };
  if (!res.ok) {
    const err = reply.error ?? { code: `HTTP ${res.status}`, message: res.statusText };
    console.error(`deploy refused (${res.status} ${err.code}): ${err.message}`);
    return 1;
  }
  const what = res.status === 201 ? 'deployed' : 'already deployed:';
  console.log(`${what} ${reply.name}@${reply.version} to ${relayUrl}`);
  if (reply.current === false && reply.note) console.log(reply.note);
  return 0;
}

type Flag = (name: string) => string | undefined;

function relayOf(flag: Flag): string {
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

/** One JSON request with a credential; prints the relay's refusal and answers undefined. */
async function api(
  relayUrl: string,
  token: string,
  method: string,
  path: string,
  body?: unknown,
): Promise<unknown> {
  let res: Response;
  try {
    res = await fetch(new URL(path, relayUrl), {
      method,
      headers: {
        authorization: `Bearer ${token}`,
        ...(body !== undefined && { 'content-type': 'application/json' }),
      },
      ...(body !== undefined && { body: JSON.stringify(body) }),
    });
  } catch (e) {
    const why = (e as { cause?: { code?: string } }).cause?.code ?? (e as Error).message;
    console.error(`cannot reach the relay at ${relayUrl} (${why}): is it running? (brume start)`);
    return undefined;
  }
  const reply = res.status === 204 ? {} : await res.json().catch(() => ({}));
  if (!res.ok) {
    const err = (reply as { error?: { code: string; message: string } }).error;
    console.error(`refused (${res.status} ${err?.code ?? ''}): ${err?.message ?? res.statusText}`);
    return undefined;
  }
  return reply;
}

interface KeyInfo {
  id: string;
  label: string;
  scopes: string[];
  createdAt: string;
  key?: string;
}

async function keys(
  positionals: string[],
  values: Record<string, unknown>,
  flag: Flag,
): Promise<number> {
  const [action = 'list', id, ...extra] = positionals;
  const relayUrl = relayOf(flag);
  if (action === 'list') {
    if (id) throw new UsageError('keys list takes no argument');
    const list = (await api(relayUrl, await credential(flag), 'GET', '/api/keys')) as
      | KeyInfo[]
      | undefined;
    if (!list) return 1;
    if (list.length === 0) console.log('no API keys');
    for (const k of list) {
      console.log(`${k.id}  ${k.scopes.join(',')}  ${k.createdAt}${k.label ? `  ${k.label}` : ''}`);
    }
    return 0;
  }
  if (action === 'create') {
    if (id) throw new UsageError('keys create takes no argument: give --scope and --label');
    const scopes = (values.scope as string[] | undefined) ?? [];
    if (scopes.length === 0) throw new UsageError('keys create needs at least one --scope');
    const made = (await api(relayUrl, await credential(flag), 'POST', '/api/keys', {
      scopes,
      label: flag('label') ?? '',
    })) as KeyInfo | undefined;
    if (!made) return 1;
    console.log(`key ${made.id} (${made.scopes.join(', ')}):`);
    console.log(made.key);
    console.error('this is the only time the key is shown: keep it somewhere safe');
    return 0;
  }
  if (action === 'revoke') {
    if (!id || extra.length) throw new UsageError('keys revoke takes one key id');
    const done = await api(
      relayUrl,
      await credential(flag),
      'DELETE',
      `/api/keys/${encodeURIComponent(id)}`,
    );
    if (done) console.log(`revoked key ${id}`);
    return done ? 0 : 1;
  }
  throw new UsageError(`unknown keys action "${action}": list, create or revoke`);
}

async function trust(
  relayUrl: string,
  token: string,
  key: string | undefined,
  label: string,
  revoke: boolean,
): Promise<number> {
  const headers = { authorization: `Bearer ${token}` };
  const url = new URL(
    key && revoke ? `/api/trust/${encodeURIComponent(key)}` : '/api/trust',
    relayUrl,
  );
  let res: Response;
  try {
    if (!key) res = await fetch(url, { headers });
    else if (revoke) res = await fetch(url, { method: 'DELETE', headers });
    else
      res = await fetch(url, {
        method: 'POST',
        headers: { ...headers, 'content-type': 'application/json' },
        body: JSON.stringify({ publicKey: key, label }),
      });
  } catch (e) {
    const why = (e as { cause?: { code?: string } }).cause?.code ?? (e as Error).message;
    console.error(`cannot reach the relay at ${relayUrl} (${why}): is it running? (brume start)`);
    return 1;
  }
  const body = (await res.json().catch(() => ({}))) as {
    error?: { code: string; message: string };
    nodeId?: string;
  } & { publicKey: string; label: string }[];
  if (!res.ok) {
    console.error(
      `trust refused (${res.status} ${body.error?.code ?? ''}): ${body.error?.message ?? res.statusText}`,
    );
    return 1;
  }
  if (!key) {
    if (body.length === 0) console.log('the trust list is empty');
    for (const e of body) console.log(`${e.publicKey}${e.label ? `  ${e.label}` : ''}`);
  } else if (revoke) console.log(`revoked ${key.slice(0, 16)}…`);
  else console.log(`trusted node ${body.nodeId} (${key.slice(0, 16)}…)`);
  return 0;
}

function origin(text: string): string {
  try {
    return new URL(text).origin;
  } catch {
    throw new UsageError(`--origin must be a URL like http://localhost:5173, got "${text}"`);
  }
}

function integer(name: string, text: string, min: number, max: number): number {
  const n = Number(text);
  if (!/^\d+$/.test(text) || n < min || n > max) {
    throw new UsageError(`${name} must be a whole number from ${min} to ${max}, got "${text}"`);
  }
  return n;
}

function fraction(name: string, text: string): number {
  const n = Number(text);
  if (text.trim() === '' || !(n >= 0 && n <= 1)) {
    throw new UsageError(`${name} must be a number from 0 to 1, got "${text}"`);
  }
  return n;
}

function noPositionals(positionals: string[]): void {
  if (positionals.length) throw new UsageError(`unexpected argument "${positionals[0]}"`);
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (e: unknown) => {
    if (e instanceof UsageError) {
      console.error(`brume: ${e.message}\nRun "brume --help" for usage.`);
      process.exit(2);
    }
    if ((e as NodeJS.ErrnoException).code === 'EADDRINUSE') {
      console.error(
        `brume: ${(e as Error).message}: another process uses it; pick one with --port`,
      );
      process.exit(1);
    }
    const code = e instanceof BrumeError ? ` (${e.code})` : '';
    console.error(`brume: ${(e as Error).message ?? e}${code}`);
    process.exit(1);
  },
);
