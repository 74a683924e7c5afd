#!/usr/bin/env -S npx tsx
/**
 * The `brume` command: run a relay, scaffold, pack and deploy an app, call it, run a server node.
 * This file reads the command line and hands each command to its part: `cli/start.ts` runs a
 * relay, `cli/new.ts` scaffolds an app, `cli/build.ts` packs one (and `dev` redeploys it on
 * change), `cli/remote.ts` and `cli/jobs.ts` talk to a relay over its HTTP API, `cli/node.ts`
 * runs a server node, `cli/usage.ts` holds the table of commands, their flags and --help.
 *
 * @example
 * npx tsx relay/cli.ts start --port 8787
 * npx tsx relay/cli.ts new hello && cd hello && npx tsx ../relay/cli.ts dev
 * npx tsx relay/cli.ts pack my-app --out my-app.brume
 * npx tsx relay/cli.ts deploy my-app.brume --relay http://127.0.0.1:8787 --key brume_…
 * npx tsx relay/cli.ts keys create --scope deploy:my-app --label CI
 * npx tsx relay/cli.ts node --relay http://127.0.0.1:8787 --role fog
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { BrumeError } from '../core/errors';
import { type Flag, type Invocation, noPositionals, UsageError } from './cli/args';
import { blob } from './cli/blobs';
import { dev, pack } from './cli/build';
import { loadConfig, printConfig } from './cli/config';
import { job, submit } from './cli/jobs';
import { scaffold } from './cli/new';
import { nodeOptions, runNode } from './cli/node';
import { projects, users } from './cli/projects';
import { apps, call, current, deploy, keys, trust } from './cli/remote';
import { start, startOptions } from './cli/start';
import { token } from './cli/token';
import { commandHelp, commands, common, USAGE } from './cli/usage';
import { packageRoot } from './package-root';

function parse(argv: string[]) {
  const command = argv[0] && !argv[0].startsWith('-') ? argv[0] : undefined;
  const rest = command ? argv.slice(1) : argv;
  if (command && !commands[command]) throw new UsageError(`unknown command "${command}"`);
  try {
    const parsed = parseArgs({
      args: rest,
      options: { ...common, ...(command ? commands[command] : {}) },
      allowPositionals: true,
      strict: true,
    });
    return { command, ...parsed };
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

/** Each command's handler, by name: the work is in relay/cli/*.ts. */
const handlers: Record<string, (i: Invocation) => Promise<number>> = {
  async start({ positionals, values }) {
    noPositionals(positionals);
    const config = await loadConfig(values, process.env, packageRoot);
    if (values['print-config']) {
      process.stdout.write(printConfig(config));
      return 0;
    }
    return start(startOptions(config));
  },
  async node({ positionals, flag }) {
    noPositionals(positionals);
    return runNode(nodeOptions(flag));
  },
  new: scaffold,
  dev,
  pack,
  deploy,
  apps,
  call,
  submit,
  job,
  current,
  keys,
  blob: ({ positionals, values, flag }) => blob(positionals, flag, Boolean(values.json)),
  users: ({ positionals, values, flag }) => users(positionals, values, flag),
  projects: ({ positionals, values, flag }) => projects(positionals, values, flag),
  trust,
  token,
};

async function main(argv: string[]): Promise<number> {
  const { command, values, positionals } = parse(argv);
  const flag: Flag = (name) => values[name] as string | undefined;
  if (values.help) {
    process.stdout.write(command ? commandHelp(command) : USAGE);
    return 0;
  }
  if (values.version) {
    const pkg = JSON.parse(await readFile(join(packageRoot, 'package.json'), 'utf8'));
    console.log(pkg.version);
    return 0;
  }
  if (!command) throw new UsageError('no command given');
  return handlers[command]!({ positionals, values, flag });
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
