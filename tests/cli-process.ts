// The `brume` command as a real process (relay/cli.ts under tsx), for the tests of its verbs:
// run to the end, or started and read line by line while it runs (`brume dev`).
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { until } from './until';

export const root = fileURLToPath(new URL('..', import.meta.url));
// tsx itself rather than `npx tsx`: npm exec dies of a SIGTERM instead of passing it on.
const tsx = `${root}node_modules/.bin/tsx`;
export const cli = `${root}relay/cli.ts`;

export interface Done {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `brume <args>` to its end in `cwd` (default the repository). */
export function brume(
  args: string[],
  o: { env?: Record<string, string>; cwd?: string } = {},
): Promise<Done> {
  return new Promise((resolve) => {
    execFile(
      tsx,
      [cli, ...args],
      { cwd: o.cwd ?? root, env: { ...process.env, ...o.env }, maxBuffer: 64 * 2 ** 20 },
      (err, stdout, stderr) => {
        resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
      },
    );
  });
}

export interface Running {
  child: ChildProcess;
  /** Everything it printed so far, stdout and stderr interleaved as they came. */
  output(): string;
  /** Waits until its output from `from` on matches `pattern`; answers the match's end. */
  waitFor(pattern: RegExp, from?: number, timeoutMs?: number): Promise<number>;
  /** SIGTERM, then its exit code. */
  stop(): Promise<number | null>;
}

/** Starts `brume <args>` and keeps what it prints. */
export function startBrume(
  args: string[],
  o: { env?: Record<string, string>; cwd?: string } = {},
): Running {
  const child = spawn(tsx, [cli, ...args], {
    cwd: o.cwd ?? root,
    env: { ...process.env, ...o.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  process.once('exit', () => child.kill('SIGKILL'));
  return {
    child,
    output: () => out,
    async waitFor(pattern, from = 0, timeoutMs = 120_000) {
      const m = await until(
        () => (child.exitCode !== null ? 'exited' : pattern.exec(out.slice(from))),
        `${pattern} in the output of brume ${args.join(' ')}`,
        timeoutMs,
        50,
      );
      if (m === 'exited') throw new Error(`brume exited ${child.exitCode}:\n${out}`);
      return from + m.index + m[0].length;
    },
    async stop() {
      if (child.exitCode === null) child.kill('SIGTERM');
      return exited;
    },
  };
}
