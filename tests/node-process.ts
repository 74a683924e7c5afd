// A server node (`brume node`) as a real child process, for tests and benchmarks: started as a
// user would, its id and public key read from what it prints, stopped by a signal.
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { until } from './until';

export interface NodeProcess {
  id: string;
  publicKey: string;
  dataDir: string;
  child: ChildProcess;
  /** Everything it printed so far. */
  output: () => string;
  /** SIGTERM (it drains), then its exit code once it exits. */
  stop(): Promise<number | null>;
  /** SIGKILL, as a crash or a pulled plug would; resolves once it is gone. */
  kill(): Promise<void>;
}

/** Nodes this process started that still run: killed when it exits, however a test ended. */
const children = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of children) child.kill('SIGKILL');
});

/** Starts `relay/cli.ts node --relay <relayUrl>` with a fresh data directory unless given. */
export async function startNodeProcess(
  relayUrl: string,
  options: { dataDir?: string; args?: string[] } = {},
): Promise<NodeProcess> {
  const dataDir = options.dataDir ?? mkdtempSync(join(tmpdir(), 'brume-node-'));
  // Node with tsx's loader, not the tsx command: a signal reaches the node, not a wrapper.
  const child = spawn(
    process.execPath,
    [
      '--import',
      'tsx',
      'relay/cli.ts',
      'node',
      '--relay',
      relayUrl,
      '--data',
      dataDir,
      ...(options.args ?? []),
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  children.add(child);
  let out = '';
  const keep = (d: Buffer) => {
    out = (out + d).slice(-262_144);
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  const exited = new Promise<number | null>((r) =>
    child.once('exit', (code) => {
      children.delete(child);
      r(code);
    }),
  );
  let gone = false;
  void exited.then(() => {
    gone = true;
  });
  const printed = await until(
    () => {
      if (gone) throw new Error(`brume node exited before it started:\n${out}`);
      const m = /node ([0-9a-f]{32}) \(data:[\s\S]*public key: ([\w-]+)\n/.exec(out);
      return m && { id: m[1]!, publicKey: m[2]! };
    },
    'brume node to print its key',
    60_000,
  );
  return {
    ...printed,
    dataDir,
    child,
    output: () => out,
    async stop() {
      if (!gone) child.kill('SIGTERM');
      return exited;
    },
    async kill() {
      if (!gone) child.kill('SIGKILL');
      await exited;
    },
  };
}
