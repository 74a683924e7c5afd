// A real redis-server as a child process, for the Redis stores' tests (relay/cluster/): on a free
// 127.0.0.1 port, in a fresh directory, with its append-only file fsynced on every write, so a
// reply means the write is on disk. Never the system service, never a fixed sleep: it is ready
// when it answers PING.
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { endChild, launchChild } from './child-server';
import { freePort } from './free-port';

export interface RedisProcess {
  /** `redis://127.0.0.1:<port>` */
  url: string;
  port: number;
  /** Its working directory: the append-only files live here. */
  dir: string;
  /** Everything it printed, for failure messages. */
  output(): string;
  /** SIGTERM, and waits for it to exit. */
  stop(): Promise<void>;
  /** SIGKILL (a crash: no shutdown save), and waits for it to exit. */
  kill(): Promise<void>;
  /** SIGSTOP: it holds its connections and answers nothing (a hung server) until `resume`. */
  pause(): void;
  resume(): void;
  /** Starts it again on the same port and directory (it reloads its AOF); ready when it resolves. */
  restart(): Promise<void>;
  /** Stops it and removes its directory. */
  close(): Promise<void>;
}

const BINARY = process.env.BRUME_REDIS_SERVER ?? 'redis-server';

export async function startRedis(): Promise<RedisProcess> {
  const dir = mkdtempSync(join(tmpdir(), 'brume-redis-'));
  const log = { text: '' };
  let child: ChildProcess | undefined;
  let port = 0;

  async function launch(): Promise<void> {
    child = await launchChild({
      binary: BINARY,
      args: [
        '--save',
        '',
        '--appendonly',
        'yes',
        '--appendfsync',
        'always',
        '--bind',
        '127.0.0.1',
        '--port',
        String(port),
        '--dir',
        dir,
        '--daemonize',
        'no',
      ],
      install: 'apt-get install redis-server (.ci/run does it)',
      log,
      ready: () => ping(port),
      what: `redis-server on port ${port} to answer PING`,
    });
  }

  const end = (signal: NodeJS.Signals) => endChild(child, signal);

  // A port that was free a moment ago may be taken by the time redis binds it: try another.
  for (let attempt = 1; ; attempt++) {
    port = await freePort();
    try {
      await launch();
      break;
    } catch (e) {
      await end('SIGKILL');
      if (attempt >= 3 || !/Address already in use/.test(log.text)) {
        await rm(dir, { recursive: true, force: true });
        throw e;
      }
    }
  }

  const redis: RedisProcess = {
    url: `redis://127.0.0.1:${port}`,
    port,
    dir,
    output: () => log.text,
    stop: () => end('SIGTERM'),
    kill: () => end('SIGKILL'),
    pause: () => void child?.kill('SIGSTOP'),
    resume: () => void child?.kill('SIGCONT'),
    async restart() {
      await end('SIGKILL');
      await launch();
    },
    async close() {
      child?.kill('SIGCONT'); // a paused server takes no SIGTERM until it runs again
      await end('SIGTERM');
      await rm(dir, { recursive: true, force: true });
    },
  };
  return redis;
}

/** Whether a server on `port` answers PING with PONG now (a loading one answers -LOADING). */
function ping(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    let got = '';
    const done = (ok: boolean) => {
      s.destroy();
      resolve(ok);
    };
    s.setTimeout(2000, () => done(false));
    s.on('error', () => done(false));
    s.on('connect', () => s.write('PING\r\n'));
    s.on('data', (d) => {
      got += d;
      if (got.includes('\r\n')) done(got.startsWith('+PONG'));
    });
  });
}
