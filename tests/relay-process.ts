// The relay as a real child process, for browser tests and benchmarks; and in this process, on a
// real port, for unit tests that drive its hub.
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import { type AddressInfo, connect, createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Bundle, packBundle } from '../core/manifest';
import { createRelay, type Relay, type RelayOptions } from '../relay/server';

export interface RelayProcess {
  url: string;
  port: number;
  /**
   * Its admin token: the one `token` gave, or read from `<dataDir>/admin-token` (it is printed
   * only when made); empty when neither (a relay with --redis keeps it in Redis).
   */
  token: string;
  child: ChildProcess;
  dataDir: string;
  /** Everything the relay printed, for failure messages. */
  output: () => string;
  /** The relay's resident memory now, in bytes (Linux /proc). */
  rss(): number;
  /** SIGTERM (the relay drains), and waits for it to exit. */
  stop(): Promise<void>;
  /** SIGKILL (a crash: nothing drained or flushed), and waits for it to exit. */
  kill(): Promise<void>;
}

/** Relays this process started and that still run: killed when it exits, however a test ended. */
const children = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of children) child.kill('SIGKILL');
});

/**
 * Starts `relay/cli.ts start` as a real process on a free port (or `port`) with a fresh data
 * directory; `entry` runs another build of the CLI instead (e.g. the installed package's
 * lib/brume.js), in `cwd`. `token` is given to it as its admin token (BRUME_ADMIN_TOKEN, never a
 * flag); `env` is added to its environment.
 */
export async function startRelay(
  options: {
    dataDir?: string;
    args?: string[];
    entry?: string;
    cwd?: string;
    port?: number;
    token?: string;
    env?: Record<string, string>;
  } = {},
): Promise<RelayProcess> {
  const dataDir = options.dataDir ?? mkdtempSync(join(tmpdir(), 'brume-e2e-'));
  // Node itself with tsx's loader, not the tsx command: the child is the relay, so a signal
  // (SIGKILL included) reaches the relay and not a wrapper that would leave it orphaned.
  const child = spawn(
    process.execPath,
    [
      ...(options.entry ? [options.entry] : ['--import', 'tsx', 'relay/cli.ts']),
      'start',
      '--port',
      String(options.port ?? 0),
      '--data',
      dataDir,
      ...(options.args ?? []),
    ],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
      ...(options.cwd && { cwd: options.cwd }),
      env: {
        ...process.env,
        ...options.env,
        ...(options.token !== undefined && { BRUME_ADMIN_TOKEN: options.token }),
      },
    },
  );
  children.add(child);
  let out = '';
  let stopping = false;
  child.once('exit', (code, signal) => {
    children.delete(child);
    // A relay that dies under a test or a benchmark says so, with why, instead of leaving its
    // clients waiting on sockets that closed.
    if (!stopping && url !== undefined)
      console.error(
        `relay ${child.pid} exited on its own (${signal ?? `code ${code}`}); its last output:\n${out.slice(-4000)}`,
      );
  });
  // The last 64 KiB of what it printed: a relay with a thousand nodes joined logs a lot.
  const keep = (d: Buffer) => {
    out = (out + d).slice(-65_536);
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  let url: string | undefined;
  url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`relay did not start:\n${out}`)), 30_000);
    child.stdout!.on('data', () => {
      // The admin-token line comes after the token file is written.
      const m = /listening on (http:\/\/[\d.]+:\d+)[\s\S]*admin token: /.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]!);
      }
    });
    child.on('exit', (code) => reject(new Error(`relay exited with ${code}:\n${out}`)));
  });
  const token =
    options.token ??
    (await readFile(join(dataDir, 'admin-token'), 'utf8').then(
      (t) => t.trim(),
      () => '',
    ));
  const end = async (signal: NodeJS.Signals) => {
    stopping = true;
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill(signal);
      await exited;
    }
  };
  return {
    url,
    port: Number(new URL(url).port),
    token,
    child,
    dataDir,
    output: () => out,
    rss() {
      const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'));
      if (!m) throw new Error(`no VmRSS for the relay (process ${child.pid})`);
      return Number(m[1]) * 1024;
    },
    stop: () => end('SIGTERM'),
    kill: () => end('SIGKILL'),
  };
}

/** A relay in this process on a free port, without its cloud node, logging nothing. */
export async function inProcessRelay(
  options: Partial<RelayOptions> & { apps?: Bundle[] } = {},
): Promise<{ relay: Relay; dataDir: string; ws: string; close(): Promise<void> }> {
  const dataDir = mkdtempSync(join(tmpdir(), 'brume-unit-'));
  const silent = { info() {}, warn() {}, error() {} };
  const { apps = [], ...relayOptions } = options;
  const relay = await createRelay({
    port: 0,
    dataDir,
    webRoot: join(dataDir, 'web'),
    logger: silent,
    cloudNode: false,
    ...relayOptions,
  });
  for (const b of apps) await relay.deploy(packBundle(b.manifest, b.files));
  return {
    relay,
    dataDir,
    /** Where nodes join. */
    ws: `${relay.url.replace('http', 'ws')}/ws`,
    async close() {
      await relay.close();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

/** Deploys a bundle with the relay's admin token, as `brume deploy` does. */
export async function deploy(
  relay: { url: string; token: string },
  bundle: Uint8Array,
): Promise<Response> {
  return fetch(`${relay.url}/api/apps`, {
    method: 'POST',
    headers: {
      'content-type': 'application/vnd.brume.bundle',
      authorization: `Bearer ${relay.token}`,
    },
    body: Buffer.from(bundle),
  });
}

/**
 * A TCP proxy in front of the relay: pages opened through it can be cut off from the relay (every
 * open socket destroyed, new ones refused) and healed, as a network failure would.
 */
export async function startProxy(): Promise<{
  url: string;
  /** Where connections go (set before the first one). */
  target: string;
  cut(): void;
  heal(): void;
  close(): Promise<void>;
}> {
  const sockets = new Set<Socket>();
  let open = true;
  const server = createServer((client) => {
    if (!open) return client.destroy();
    const { port, hostname } = new URL(proxy.target);
    const upstream = connect(Number(port), hostname);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => {});
    }
    client.pipe(upstream).pipe(client);
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const proxy = {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    target: '',
    cut() {
      open = false;
      for (const s of sockets) s.destroy();
    },
    heal() {
      open = true;
    },
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
  return proxy;
}
