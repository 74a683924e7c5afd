#!/usr/bin/env -S npx tsx
/**
 * The `brume` command: run a relay, pack an app, deploy a bundle.
 *
 * @example
 * npx tsx relay/cli.ts start --port 8787
 * npx tsx relay/cli.ts pack my-app --out my-app.brume
 * npx tsx relay/cli.ts deploy my-app.brume --relay http://127.0.0.1:8787
 */
import { readdir, readFile, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type ParseArgsConfig, parseArgs } from 'node:util';
import { BrumeError } from '../core/errors';
import { loadAdmin } from './admin';
import { packApp } from './pack';
import { createRelay } from './server';

const packageRoot = fileURLToPath(new URL('..', import.meta.url));

const USAGE = `Usage: brume <command> [options]

Commands:
  start                 run a relay: the page, the app API, the fabric (nodes, calls, context)
  pack <dir>            pack <dir>/brume.json and the files it names into a .brume bundle
  deploy <file.brume>   upload a bundle to a relay
  trust [<publicKey>]   list the fog/cloud trust list, or add (or --revoke) a node's public key
  token                 print the admin token of a data directory (--rotate: issue a new one)

start:
  --port <n>            port (env BRUME_PORT, default 8787; 0 picks a free one)
  --host <addr>         interface (env BRUME_HOST, default 127.0.0.1; 0.0.0.0 for the network)
  --data <dir>          storage directory (env BRUME_DATA, default .brume)
  --web <dir>           the built web app (default dist/web)
  --apps <dir>          .brume files deployed when the store has no app yet (default dist/apps)
  --max-bundle-mib <n>  largest bundle a deploy may upload (default 256)
  --origin <url>        also let pages from this origin open node sockets (repeatable;
                        env BRUME_ORIGINS, comma-separated); the relay's own is always allowed
  --no-cloud            do not run the relay's own cloud node (onnxruntime-node)
  --verify-fraction <f> share (0 to 1) of calls on untrusted nodes also run on a second node
                        and compared; a node that disagrees is quarantined (env
                        BRUME_VERIFY_FRACTION, default 0: only qos.verify calls are checked)
  --max-quarantined <n> nodes kept in quarantine at most, the oldest released first (default 1000)

pack:
  --out <file>          where to write (default <dir>/<name>-<version>.brume)

deploy, trust:
  --relay <url>         the relay (env BRUME_RELAY, default http://127.0.0.1:8787)

trust:
  --label <text>        a note kept with the key (e.g. "lab desktop")
  --revoke              remove the key instead
  --token <token>       the admin token (env BRUME_ADMIN_TOKEN; default: read from --data)
  --data <dir>          the relay's storage directory, to read its token (default .brume)

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

const commands: Record<string, Options> = {
  start: {
    port: { type: 'string' },
    host: { type: 'string' },
    data: { type: 'string' },
    web: { type: 'string' },
    apps: { type: 'string' },
    'max-bundle-mib': { type: 'string' },
    origin: { type: 'string', multiple: true },
    'no-cloud': { type: 'boolean' },
    'verify-fraction': { type: 'string' },
    'max-quarantined': { type: 'string' },
  },
  pack: { out: { type: 'string' } },
  deploy: { relay: { type: 'string' } },
  token: { data: { type: 'string' }, rotate: { type: 'boolean' } },
  trust: {
    relay: { type: 'string' },
    label: { type: 'string' },
    revoke: { type: 'boolean' },
    token: { type: 'string' },
    data: { type: 'string' },
  },
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
        origins: [
          ...((values.origin as string[] | undefined) ?? []),
          ...(process.env.BRUME_ORIGINS?.split(',').filter(Boolean) ?? []),
        ].map(origin),
        cloud: !values['no-cloud'],
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
      return deploy(file, flag('relay') ?? process.env.BRUME_RELAY ?? 'http://127.0.0.1:8787');
    }
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
      const data = resolve(flag('data') ?? process.env.BRUME_DATA ?? '.brume');
      const token =
        flag('token') ??
        process.env.BRUME_ADMIN_TOKEN ??
        (await readFile(join(data, 'admin-token'), 'utf8').catch(() => '')).trim();
      if (!token) throw new UsageError(`no admin token: pass --token, or --data <the relay's dir>`);
      const relayUrl = flag('relay') ?? process.env.BRUME_RELAY ?? 'http://127.0.0.1:8787';
      return trust(relayUrl, token, key, flag('label') ?? '', Boolean(values.revoke));
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
  origins: string[];
  cloud: boolean;
  verifyFraction: number;
  maxQuarantined: number;
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
    origins: o.origins,
    cloudNode: o.cloud,
    verifyFraction: o.verifyFraction,
    maxQuarantined: o.maxQuarantined,
  });
  console.log(`Brume relay listening on ${relay.url} — open it in a browser to join`);
  console.log(`admin token: ${relay.admin.token} (also in ${join(o.data, 'admin-token')})`);
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

async function deploy(file: string, relayUrl: string): Promise<number> {
  const body = await readFile(file);
  const url = new URL('/api/apps', relayUrl);
  let res: Response;
  try {
    res = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/vnd.brume.bundle' },
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
    error?: { code: string; message: string };
  };
  if (!res.ok) {
    const err = reply.error ?? { code: `HTTP ${res.status}`, message: res.statusText };
    console.error(`deploy refused (${res.status} ${err.code}): ${err.message}`);
    return 1;
  }
  const what = res.status === 201 ? 'deployed' : 'already deployed, made current:';
  console.log(`${what} ${reply.name}@${reply.version} to ${relayUrl}`);
  return 0;
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
