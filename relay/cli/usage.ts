/**
 * What the `brume` command accepts, made from its one table of commands (relay/cli/commands.ts):
 * `brume --help`, `brume <command> --help` and the flags parseArgs takes, so they cannot drift
 * apart. `start`'s flags come from its settings table (relay/cli/settings.ts).
 */
import type { ParseArgsConfig } from 'node:util';
import { type Command, type FlagRow, table } from './commands';
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

const byName = new Map(table.map((c) => [c.name, c]));

/** Text wrapped at WIDTH with no indent. */
function paragraph(text: string): string {
  const lines = [''];
  for (const word of text.split(' ')) {
    if (lines.at(-1)!.length + word.length > WIDTH) lines.push('');
    lines[lines.length - 1] += `${lines.at(-1) ? ' ' : ''}${word}`;
  }
  return lines.join('\n');
}

function flagLines(flags: readonly FlagRow[]): string[] {
  return flags.flatMap((f) => wrap(f.help, `  --${f.name}${f.arg ? ` ${f.arg}` : ''}`));
}

function headLine(c: Command): string {
  return `${c.name}${c.args ? ` ${c.args}` : ''}`;
}

function optionsOf(c: Command): string {
  return c.name === 'start' ? startHelp() : flagLines(c.flags).join('\n');
}

/** `brume --help`: every command in a line or two, then each one's flags. */
export const USAGE = `Usage: brume <command> [options]    (brume <command> --help: that command alone)

Commands:
${table.map((c) => wrap(c.summary, `  ${headLine(c)}`).join('\n')).join('\n')}

${table
  .filter((c) => c.name === 'start' || c.flags.length > 0)
  .map((c) => `${c.name}:\n${optionsOf(c)}\n`)
  .join('')}
  -h, --help            this text
  -v, --version         the Brume version
`;

/** `brume <command> --help`. */
export function commandHelp(name: string): string {
  const c = byName.get(name)!;
  const more = c.more ? `\n${c.more.map((l) => `  ${l}`).join('\n')}\n` : '';
  return `Usage: brume ${headLine(c)} [options]

${paragraph(c.summary)}
${more}
Options:
${optionsOf(c)}
  -h, --help            this text
`;
}

export type Options = NonNullable<ParseArgsConfig['options']>;

export const common: Options = {
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean', short: 'v' },
};

function flagsOf(c: Command): Options {
  if (c.name === 'start') {
    return {
      config: { type: 'string' },
      'print-config': { type: 'boolean' },
      ...Object.fromEntries(
        settings.flatMap((s) =>
          s.flag === undefined
            ? []
            : [[s.flag, { type: s.arg ? 'string' : 'boolean', ...(s.list && { multiple: true }) }]],
        ),
      ),
    };
  }
  return Object.fromEntries(
    c.flags.map((f) => [
      f.name,
      { type: f.arg ? 'string' : 'boolean', ...(f.multiple && { multiple: true }) },
    ]),
  ) as Options;
}

/** Per command, the flags parseArgs takes. */
export const commands: Record<string, Options> = Object.fromEntries(
  table.map((c) => [c.name, flagsOf(c)]),
);
