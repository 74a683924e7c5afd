/**
 * `brume start`'s settings from flags, environment and an optional JSON config file, in that
 * order of precedence over the defaults (relay/cli/settings.ts). Every value is checked against
 * the one table; a bad one is a UsageError naming where it came from: `--port`, `BRUME_PORT` or
 * `"port" in brume.json`.
 *
 * @example
 * const config = await loadConfig(values, process.env, packageRoot);
 * console.log(printConfig(config)); // secrets masked
 */
import { open } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { UsageError } from './args';
import { envName, fileSchema, type Setting, settings } from './settings';

/** Where a setting's value came from. */
export type Source = 'flag' | 'env' | 'file' | 'default';

export interface Config {
  /** By key, as a config file would hold them (paths resolved); unset ones absent. */
  values: Record<string, unknown>;
  from: Record<string, Source>;
  /** The config file read, if any. */
  file?: string;
}

/** A config file is small: anything bigger is a mistake, not settings. */
const MAX_FILE_BYTES = 1 << 20;

/**
 * Reads the settings: `flags` as parseArgs gave them, `env` (process.env), the file named by
 * --config or BRUME_CONFIG. `packageRoot` holds the build outputs the defaults point to.
 */
export async function loadConfig(
  flags: Record<string, unknown>,
  env: Record<string, string | undefined>,
  packageRoot: string,
): Promise<Config> {
  const fileName = (flags.config as string | undefined) ?? (env.BRUME_CONFIG || undefined);
  const file = fileName === undefined ? undefined : await readConfigFile(resolve(fileName));
  const config: Config = { values: {}, from: {}, ...(file && { file: file.path }) };
  for (const s of settings) {
    const given = fromFlag(s, flags) ?? fromEnv(s, env) ?? fromFile(s, file);
    const chosen =
      given ??
      (s.default === undefined
        ? undefined
        : { source: 'default' as const, raw: s.default, base: s.inPackage ? packageRoot : '.' });
    if (!chosen) continue;
    const value = check(s, chosen.raw, chosen.label ?? `default of ${s.key}`, chosen.text);
    config.values[s.key] = s.kind.path ? resolve(chosen.base, value as string) : value;
    config.from[s.key] = chosen.source;
  }
  return config;
}

interface Given {
  source: Source;
  raw: unknown;
  /** The name a message gives it: `--port`, `BRUME_PORT`, `"port" in brume.json`. */
  label?: string;
  /** What a relative path is relative to. */
  base: string;
  /** The text as typed (a flag, an environment variable), for messages. */
  text?: string;
}

function fromFlag(s: Setting, flags: Record<string, unknown>): Given | undefined {
  const v = s.flag === undefined ? undefined : flags[s.flag];
  if (v === undefined) return undefined;
  // A switch (no arg) is a --no-… flag: given, it turns the setting off.
  const raw = s.arg === undefined ? false : s.list ? v : s.kind.fromText(v as string);
  const text = Array.isArray(v) ? v.join(',') : typeof v === 'string' ? v : undefined;
  return {
    source: 'flag',
    raw,
    label: `--${s.flag}`,
    base: '.',
    ...(text !== undefined && { text }),
  };
}

function fromEnv(s: Setting, env: Record<string, string | undefined>): Given | undefined {
  const name = envName(s.key);
  const v = env[name];
  // An empty variable is an unset one, as shells and compose files write them.
  if (v === undefined || v === '') return undefined;
  return { source: 'env', raw: s.kind.fromText(v), label: name, base: '.', text: v };
}

function fromFile(s: Setting, file: ConfigFile | undefined): Given | undefined {
  if (!file || !Object.hasOwn(file.json, s.key)) return undefined;
  return {
    source: 'file',
    raw: file.json[s.key],
    label: `"${s.key}" in ${file.path}`,
    base: dirname(file.path),
  };
}

function check(s: Setting, raw: unknown, label: string, typed?: string): unknown {
  const r = s.kind.schema.safeParse(raw);
  if (!r.success)
    throw new UsageError(`${label} must be ${s.kind.what}, got ${show(typed ?? raw)}`);
  return r.data;
}

function show(raw: unknown): string {
  const text = typeof raw === 'string' ? `"${raw}"` : JSON.stringify(raw);
  return text === undefined ? String(raw) : text.length > 80 ? `${text.slice(0, 80)}…` : text;
}

interface ConfigFile {
  path: string;
  json: Record<string, unknown>;
}

async function readConfigFile(path: string): Promise<ConfigFile> {
  let text: string;
  try {
    const handle = await open(path, 'r');
    try {
      const buf = Buffer.alloc(MAX_FILE_BYTES + 1);
      const { bytesRead } = await handle.read(buf, 0, buf.length, 0);
      if (bytesRead > MAX_FILE_BYTES) {
        throw new UsageError(`config file ${path} is over ${MAX_FILE_BYTES} bytes`);
      }
      text = buf.subarray(0, bytesRead).toString('utf8');
    } finally {
      await handle.close();
    }
  } catch (e) {
    if (e instanceof UsageError) throw e;
    throw new UsageError(`config file ${path} cannot be read: ${(e as Error).message}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new UsageError(`config file ${path} is not JSON: ${(e as Error).message}`);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new UsageError(`config file ${path} must hold one JSON object of settings`);
  }
  // The whole file against the one schema: an unknown key (a typo, `__proto__`) or a bad value
  // is refused by its name.
  const r = fileSchema.safeParse(json);
  if (!r.success) {
    const issue = r.error.issues[0]!;
    if (issue.code === 'unrecognized_keys') {
      throw new UsageError(
        `config file ${path}: unknown setting "${issue.keys[0]}" (brume --help lists them)`,
      );
    }
    const key = String(issue.path[0]);
    const s = settings.find((x) => x.key === key)!;
    check(s, (json as Record<string, unknown>)[key], `"${key}" in ${path}`);
    throw new UsageError(`config file ${path}: ${key}: ${issue.message}`);
  }
  return { path, json: json as Record<string, unknown> };
}

/** The settings as a config file (JSON), secrets masked: what `brume start --print-config` prints. */
export function printConfig(config: Config): string {
  const shown: Record<string, unknown> = {};
  for (const s of settings) {
    if (!(s.key in config.values)) continue;
    const value = config.values[s.key];
    // An empty list of secrets (no peer keys) hides nothing, and reads back as itself.
    const empty = Array.isArray(value) && value.length === 0;
    shown[s.key] = s.secret && !empty ? '********' : value;
  }
  return `${JSON.stringify(shown, null, 2)}\n`;
}
