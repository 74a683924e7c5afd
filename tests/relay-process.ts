// The relay as a real child process, for browser tests and benchmarks.
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface RelayProcess {
  url: string;
  child: ChildProcess;
  dataDir: string;
  /** Everything the relay printed, for failure messages. */
  output: () => string;
  stop(): Promise<void>;
}

/** Starts `relay/cli.ts start` as a real process on a free port with a fresh data directory. */
export async function startRelay(
  dataDir = mkdtempSync(join(tmpdir(), 'brume-e2e-')),
): Promise<RelayProcess> {
  const child = spawn(
    'node_modules/.bin/tsx',
    ['relay/cli.ts', 'start', '--port', '0', '--data', dataDir],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`relay did not start:\n${out}`)), 30_000);
    child.stdout!.on('data', () => {
      const m = /listening on (http:\/\/[\d.]+:\d+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]!);
      }
    });
    child.on('exit', (code) => reject(new Error(`relay exited with ${code}:\n${out}`)));
  });
  return {
    url,
    child,
    dataDir,
    output: () => out,
    async stop() {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        await exited;
      }
    },
  };
}

export async function deploy(relayUrl: string, bundle: Uint8Array): Promise<Response> {
  return fetch(`${relayUrl}/api/apps`, {
    method: 'POST',
    headers: { 'content-type': 'application/vnd.brume.bundle' },
    body: Buffer.from(bundle),
  });
}
