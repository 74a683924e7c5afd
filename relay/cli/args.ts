/** Reading the `brume` command's flags: each mistake a UsageError that names the flag. */

/** A mistake in how the command was called: exit code 2 and a pointer to --help. */
export class UsageError extends Error {}

/** A string flag's value, if given. */
export type Flag = (name: string) => string | undefined;

export function origin(text: string): string {
  try {
    return new URL(text).origin;
  } catch {
    throw new UsageError(`--origin must be a URL like http://localhost:5173, got "${text}"`);
  }
}

export function integer(name: string, text: string, min: number, max: number): number {
  const n = Number(text);
  if (!/^\d+$/.test(text) || n < min || n > max) {
    throw new UsageError(`${name} must be a whole number from ${min} to ${max}, got "${text}"`);
  }
  return n;
}

export function fraction(name: string, text: string): number {
  const n = Number(text);
  if (text.trim() === '' || !(n >= 0 && n <= 1)) {
    throw new UsageError(`${name} must be a number from 0 to 1, got "${text}"`);
  }
  return n;
}

export function noPositionals(positionals: string[]): void {
  if (positionals.length) throw new UsageError(`unexpected argument "${positionals[0]}"`);
}

/** What a command's handler gets: its arguments, its flags, and a reader for string flags. */
export interface Invocation {
  positionals: string[];
  values: Record<string, unknown>;
  flag: Flag;
}
