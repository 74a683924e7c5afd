#!/usr/bin/env -S npx tsx
/**
 * The `brume` command: run a relay, pack an app, deploy a bundle, run a server node. This file reads the command
 * line and hands each command to its part: `cli/start.ts` runs a relay, `cli/remote.ts` talks to
 * one over its HTTP API, `cli/node.ts` runs a server node, `cli/usage.ts` holds the --help text and the flags.
 *
 * @example
 * npx tsx relay/cli.ts start --port 8787
 * npx tsx relay/cli.ts pack my-app --out my-app.brume
 * npx tsx relay/cli.ts deploy my-app.brume --relay http://127.0.0.1:8787 --key brume_…
 * npx tsx relay/cli.ts keys create --scope deploy:my-app --label CI
 * npx tsx relay/cli.ts node --relay http://127.0.0.1:8787 --role fog
 * npx tsx relay/cli.ts blob put input.bin --key brume_…
 */
import { readFile, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { BrumeError } from '../core/errors';
import { loadAdmin } from './admin';
import { type Flag, noPositionals, UsageError } from './cli/args';
import { blob } from './cli/blobs';
import { loadConfig, printConfig } from './cli/config';
import { nodeOptions, runNode } from './cli/node';
import { current, deploy, keys, trust } from './cli/remote';
import { start, startOptions } from './cli/start';
import { commands, common, USAGE } from './cli/usage';
import { packApp } from './pack';

const packageRoot = fileURLToPath(new URL('..', import.meta.url));

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

async function main(argv: string[]): Promise<number> {
  const { command, values, positionals } = parse(argv);
  const flag: Flag = (name) => values[name] as string | undefined;
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
      const config = await loadConfig(values, process.env, packageRoot);
      if (values['print-config']) {
        process.stdout.write(printConfig(config));
        return 0;
      }
      return start(startOptions(config));
    }
    case 'node':
      noPositionals(positionals);
      return runNode(nodeOptions(flag));
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
      return deploy(file, flag);
    }
    case 'current': {
      const [name, version, ...extra] = positionals;
      if (!name || !version || extra.length) {
        throw new UsageError('current takes an app and a version: brume current digits 1.0.0');
      }
      return current(name, version, flag);
    }
    case 'keys':
      return keys(positionals, values, flag);
    case 'blob':
      return blob(positionals, flag, Boolean(values.json));
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
      return trust(flag, key, flag('label') ?? '', Boolean(values.revoke));
    }
  }
  return 0;
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
