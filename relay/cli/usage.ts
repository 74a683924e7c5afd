/**
 * What the `brume` command accepts: the --help text and, per command, the flags parseArgs
 * takes. The two are kept side by side so a new flag is added to both; `start`'s come from its
 * settings table (relay/cli/settings.ts).
 */
import type { ParseArgsConfig } from 'node:util';
import { envName, type Setting, settings } from './settings';

/** The help column: flags on the left, their text from here. */
const COLUMN = 24;
const WIDTH = 98;

function wrap(text: string, first: string): string[] {
  const lines: string[] = [];
  let line = first.length >= COLUMN ? `${first} ` : first.padEnd(COLUMN);
  for (const word of text.split(' ')) {
    if (line.length + word.length > WIDTH && line.trim().length > 0) {
      lines.push(line.trimEnd());
      line = ' '.repeat(COLUMN);
    }
    line += `${word} `;
  }
  lines.push(line.trimEnd());
  return lines;
}

function settingHelp(s: Setting): string[] {
  const shown = (v: unknown) => (Array.isArray(v) ? v.join(',') || 'none' : String(v));
  const where = [
    `env ${envName(s.key)}${s.list ? ' (comma-separated)' : ''}`,
    `file "${s.key}"`,
    ...(s.default === undefined ? [] : [`default ${shown(s.default)}`]),
  ].join(', ');
  const flag =
    s.flag === undefined ? '(env or file only)' : `--${s.flag}${s.arg ? ` ${s.arg}` : ''}`;
  const repeat = s.list ? ' (repeatable)' : '';
  return [...wrap(`${s.help}${repeat}`, `  ${flag}`), ...wrap(`[${where}]`, '')];
}

function startHelp(): string {
  return [
    ...wrap(
      'a JSON file of settings, keys as shown in [ ] (env BRUME_CONFIG)',
      '  --config <file>',
    ),
    ...wrap(
      'print the settings it would run with (secrets masked) as such a file, and exit',
      '  --print-config',
    ),
    ...wrap(
      'Each setting is taken from its flag, else its environment variable, else the file, else its default.',
      '',
    ),
    ...settings.flatMap(settingHelp),
  ].join('\n');
}

export const USAGE = `Usage: brume <command> [options]

Commands:
  start                 run a relay: the page, the app API, the fabric (nodes, calls, context)
  pack <dir>            pack <dir>/brume.json and the files it names into a .brume bundle,
                        checking the code against it (rpcs exported, model inputs and outputs)
  deploy <file.brume>   upload a bundle to a relay (needs the deploy scope for its app)
  current <app> <ver>   make a deployed version current, e.g. to roll back (admin)
  keys                  list API keys (admin)
  keys create           make an API key: --scope (repeatable) and --label; shows the key once
  keys revoke <id>      revoke an API key
  trust [<publicKey>]   list the fog/cloud trust list, or add (or --revoke) a node's public key
  token                 print the admin token of a data directory (--rotate: issue a new one)
  blob put <file>       stream a file to the relay's blob store; prints its hash and size
                        (needs the jobs or a deploy scope)
  blob get <hash>       stream a blob back to stdout or --out (an app's file: no credential;
                        another blob: the jobs scope)
  node                  run a server node: this machine joins a relay as a cloud or fog node

start:
${startHelp()}
pack:
  --out <file>          where to write (default <dir>/<name>-<version>.brume)

deploy, current, keys, trust, blob:
  --relay <url>         the relay (env BRUME_RELAY, default http://127.0.0.1:8787)
  --key <key>           an API key (env BRUME_KEY)
  --token <token>       the admin token (env BRUME_ADMIN_TOKEN)
  --data <dir>          the relay's storage directory, to use its admin token (env BRUME_DATA,
                        default .brume); used when no --key or --token is given

keys create:
  --scope <scope>       repeatable: deploy:<apps>, context:write:<apps>, call, jobs, metrics,
                        admin; <apps> is a name or a pattern like team-* (deploy alone: every app)
  --label <text>        a note kept with the key (e.g. "CI")

blob:
  --out <file>          get: write the blob there (checked against its hash; removed if it fails)
  --json                print { hash, size } (get --out: and out) as JSON
                        Progress goes to stderr: percent and MB/s.

trust:
  --label <text>        a note kept with the key (e.g. "lab desktop")
  --revoke              remove the key instead

node:
  --relay <url>         the relay (env BRUME_RELAY, default http://127.0.0.1:8787)
  --role <role>         cloud or fog (default cloud); either needs its key trusted on the relay
                        (brume trust <key>) to serve as such: an untrusted cloud is refused
  --data <dir>          its identity (node-key.json, mode 0600) and app files (env
                        BRUME_NODE_DATA, default .brume-node)
  --threads <n>         onnxruntime threads per model, Logic workers per service (default
                        cores - 1, at most 4)
  --concurrency <n>     calls it runs at once (default 4 x threads)
  --max-queued <n>      calls waiting for a slot before it refuses more (default 64)
  --apps <a,b>          serve only these apps, loaded at start (default: every app)
  --logic-timeout-ms <n>, --logic-memory-mib <n>, --logic-heap-mib <n>
                        its caps on Logics, whatever their manifests ask (as for start)
  SIGTERM or SIGINT drains it: no new calls, those in flight finish, then it exits 0

token:
  --data <dir>          the relay's storage directory (env BRUME_DATA, default .brume)
  --rotate              replace the token; a running relay takes the new one when restarted

  -h, --help            this text
  -v, --version         the Brume version
`;

export type Options = NonNullable<ParseArgsConfig['options']>;

export const common: Options = {
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean', short: 'v' },
};

const credentials: Options = {
  relay: { type: 'string' },
  key: { type: 'string' },
  token: { type: 'string' },
  data: { type: 'string' },
};

export const commands: Record<string, Options> = {
  start: {
    config: { type: 'string' },
    'print-config': { type: 'boolean' },
    ...Object.fromEntries(
      settings.flatMap((s) =>
        s.flag === undefined
          ? []
          : [[s.flag, { type: s.arg ? 'string' : 'boolean', ...(s.list && { multiple: true }) }]],
      ),
    ),
  },
  pack: { out: { type: 'string' } },
  deploy: { ...credentials },
  current: { ...credentials },
  keys: { ...credentials, scope: { type: 'string', multiple: true }, label: { type: 'string' } },
  token: { data: { type: 'string' }, rotate: { type: 'boolean' } },
  node: {
    relay: { type: 'string' },
    role: { type: 'string' },
    data: { type: 'string' },
    threads: { type: 'string' },
    concurrency: { type: 'string' },
    'max-queued': { type: 'string' },
    apps: { type: 'string' },
    'logic-timeout-ms': { type: 'string' },
    'logic-memory-mib': { type: 'string' },
    'logic-heap-mib': { type: 'string' },
  },
  trust: { ...credentials, label: { type: 'string' }, revoke: { type: 'boolean' } },
  blob: { ...credentials, out: { type: 'string' }, json: { type: 'boolean' } },
};
