// A server binary the tests start as a child process (redis-server, HAProxy): spawned with its
// output kept for failure messages, killed when the test process exits however a test ended, and
// ready when a caller's check says so, never after a fixed sleep.
import { type ChildProcess, spawn } from 'node:child_process';
import { until } from './until';

/** How much of a child's output is kept (its last bytes): enough for the error that matters. */
const OUTPUT_KEPT = 32_768;

/** Servers this process started and that still run: killed when it exits. */
const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

/**
 * Spawns `binary` with `args` and resolves with the child once `ready()` holds. What it prints
 * is appended to `log.text` (the last OUTPUT_KEPT characters), across restarts when the caller
 * keeps `log`. If it exits or never becomes ready, it is killed and the error carries its output;
 * `install` says how to get a binary that is missing.
 */
export async function launchChild(o: {
  binary: string;
  args: string[];
  /** Said when the binary is not found, e.g. `apt-get install haproxy`. */
  install: string;
  log: { text: string };
  ready: () => Promise<boolean>;
  /** What is awaited, for the error on timeout (e.g. `haproxy on port 8080 to accept`). */
  what: string;
}): Promise<ChildProcess> {
  const c = spawn(o.binary, o.args, { stdio: ['ignore', 'pipe', 'pipe'] });
  running.add(c);
  const keep = (d: Buffer) => {
    o.log.text = (o.log.text + d).slice(-OUTPUT_KEPT);
  };
  c.stdout!.on('data', keep);
  c.stderr!.on('data', keep);
  let exited = false;
  c.once('exit', () => {
    exited = true;
    running.delete(c);
  });
  c.once('error', (e) => {
    exited = true;
    o.log.text += `\n${e.message}`;
    if ((e as NodeJS.ErrnoException).code === 'ENOENT')
      o.log.text += `\n${o.binary} is not installed: ${o.install}`;
  });
  try {
    await until(async () => {
      if (exited) throw new Error(`${o.binary} exited before ${o.what}:\n${o.log.text}`);
      return o.ready();
    }, o.what);
  } catch (e) {
    await endChild(c, 'SIGKILL');
    throw e;
  }
  return c;
}

/** Sends `signal` to `child` unless it is not running, and waits for it to exit. */
export async function endChild(
  child: ChildProcess | undefined,
  signal: NodeJS.Signals,
): Promise<void> {
  // No pid: it never started (the error says why), and no exit will come.
  if (!child?.pid || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill(signal);
  await exited;
}
