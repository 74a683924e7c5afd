// A real HAProxy as a child process, the load balancer in front of a cluster of relays (issue 17):
// on a free 127.0.0.1 port, its config in a fresh directory, HTTP mode with WebSocket upgrades
// passed through (`timeout tunnel`), round robin, health checks on `/api/health` every 200 ms (a
// server is out after 2 failures — a refused connection, or no answer in 5 s —, back after 1
// success), `option redispatch` and retries so a
// request to a dead relay goes to another. Its backends' state comes from its admin socket
// (`show stat`). Never the system service, never a fixed sleep: it is ready when that socket
// answers and its port accepts.
import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { endChild, launchChild } from './child-server';
import { freePort } from './free-port';
import { until } from './until';

export interface Backend {
  /** The server's name in HAProxy (letters, digits, `_-.`). */
  name: string;
  host: string;
  port: number;
}

/** One backend server as HAProxy sees it now. */
export interface ServerState {
  name: string;
  /** `UP`, `DOWN`, `UP 1/2` (going down), `DOWN 1/1` (coming up), `MAINT`, `no check`... */
  status: string;
  /** Sessions it has served since the start. */
  served: number;
}

export interface HaproxyProcess {
  /** `http://127.0.0.1:<port>`: where clients go. */
  url: string;
  port: number;
  /** Its working directory: the config and the admin socket. */
  dir: string;
  /** Everything it printed, for failure messages. */
  output(): string;
  /** The backend servers' state, from the admin socket's `show stat`. */
  servers(): Promise<ServerState[]>;
  /** Resolves once HAProxy's checks see `name` up (status exactly `UP`). */
  untilUp(name: string, timeoutMs?: number): Promise<void>;
  /** Resolves once HAProxy's checks have taken `name` out (status starting with `DOWN`). */
  untilDown(name: string, timeoutMs?: number): Promise<void>;
  /**
   * Sets server `name`'s admin state: `drain` sends it no new connection (those open stay),
   * `ready` takes it back. Tests use it to land nodes on a chosen relay through the balancer.
   */
  setState(name: string, state: 'ready' | 'drain'): Promise<void>;
  /** Stops it and removes its directory. */
  stop(): Promise<void>;
}

/** Debian installs it in /usr/sbin, which a user's PATH may lack. */
const BINARY =
  process.env.BRUME_HAPROXY ?? (existsSync('/usr/sbin/haproxy') ? '/usr/sbin/haproxy' : 'haproxy');
/** How long a health check waits for `/api/health` to answer: a busy relay is not a dead one. */
export const CHECK_TIMEOUT = '5s';
/** The backend's name in the config and in `show stat`. */
const BACKEND = 'relays';
const NAME = /^[A-Za-z0-9_.-]{1,32}$/;

/**
 * Starts HAProxy in front of `backends`. `checkHost` is the Host header of its health checks:
 * relays refuse a Host that is not one of their names (421), so they run with
 * `--allow-host 127.0.0.1` (as a real deployment names its public host).
 */
export async function startHaproxy(options: {
  backends: Backend[];
  checkHost?: string;
  /** The port to listen on (e.g. reserved before the relays start, to name it in `--origin`). */
  port?: number;
}): Promise<HaproxyProcess> {
  for (const b of options.backends)
    if (!NAME.test(b.name)) throw new Error(`backend name "${b.name}" must match ${NAME}`);
  const dir = mkdtempSync(join(tmpdir(), 'brume-haproxy-'));
  const socket = join(dir, 'admin.sock');
  const configFile = join(dir, 'haproxy.cfg');
  const log = { text: '' };
  let child: ChildProcess | undefined;
  let port = 0;

  const config = () =>
    [
      'global',
      `  stats socket ${socket} mode 600 level admin`,
      '  maxconn 4096',
      'defaults',
      '  mode http',
      '  timeout connect 2s',
      '  timeout client 60s',
      '  timeout server 60s',
      // A WebSocket, once upgraded, is a tunnel: it lives as long as the node stays joined.
      '  timeout tunnel 1h',
      '  timeout http-request 10s',
      '  option redispatch',
      '  retries 3',
      // A check waits this long for the answer (connecting still fails within `inter`): without
      // it HAProxy gives the answer only `inter` (200 ms), so a relay whose event loop is busy
      // that long twice — the survivor taking a dead relay's 1,500 nodes — is taken out too,
      // and with every server out each request is HAProxy's own 503 (tests/bench/cluster-kill.ts).
      `  timeout check ${CHECK_TIMEOUT}`,
      'frontend front',
      `  bind 127.0.0.1:${port}`,
      `  default_backend ${BACKEND}`,
      `backend ${BACKEND}`,
      '  balance roundrobin',
      '  option httpchk',
      `  http-check send meth GET uri /api/health ver HTTP/1.1 hdr Host ${options.checkHost ?? '127.0.0.1'}`,
      '  http-check expect status 200',
      '  default-server inter 200ms fall 2 rise 1',
      ...options.backends.map((b) => `  server ${b.name} ${b.host}:${b.port} check`),
      '',
    ].join('\n');

  async function launch(): Promise<void> {
    writeFileSync(configFile, config());
    // -db: in the foreground, so the child is HAProxy itself and its signals reach it.
    child = await launchChild({
      binary: BINARY,
      args: ['-db', '-f', configFile],
      install: 'apt-get install haproxy',
      log,
      ready: async () =>
        (await accepts(port)) && (await command(socket, 'show info').then(Boolean, () => false)),
      what: `haproxy on port ${port} to accept and answer on its admin socket`,
    });
  }

  // A port free a moment ago may be taken by the time HAProxy binds it: try another (unless the
  // caller named one).
  for (let attempt = 1; ; attempt++) {
    port = options.port ?? (await freePort());
    try {
      await launch();
      break;
    } catch (e) {
      if (
        attempt >= 3 ||
        options.port !== undefined ||
        !/cannot bind|Address already in use/i.test(log.text)
      ) {
        await rm(dir, { recursive: true, force: true });
        throw e;
      }
    }
  }

  async function servers(): Promise<ServerState[]> {
    const csv = await command(socket, 'show stat');
    const lines = csv.split('\n').filter((l) => l.trim() !== '');
    const head = (lines.shift() ?? '').replace(/^# /, '').split(',');
    const col = (name: string) => {
      const i = head.indexOf(name);
      if (i < 0) throw new Error(`haproxy's show stat has no ${name} column:\n${csv}`);
      return i;
    };
    const [px, sv, status, stot] = ['pxname', 'svname', 'status', 'stot'].map(col);
    return lines
      .map((l) => l.split(','))
      .filter((f) => f[px!] === BACKEND && f[sv!] !== 'BACKEND')
      .map((f) => ({ name: f[sv!]!, status: f[status!]!, served: Number(f[stot!]) }));
  }

  const state = async (name: string) => (await servers()).find((s) => s.name === name)?.status;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    dir,
    output: () => log.text,
    servers,
    async untilUp(name, timeoutMs = 30_000) {
      await until(
        async () => (await state(name)) === 'UP',
        `haproxy to see ${name} UP`,
        timeoutMs,
        50,
      );
    },
    async setState(name, to) {
      if (!NAME.test(name)) throw new Error(`backend name "${name}" must match ${NAME}`);
      const answer = await command(socket, `set server ${BACKEND}/${name} state ${to}`);
      // It answers nothing on success, a reason otherwise.
      if (answer.trim() !== '') throw new Error(`haproxy refused ${to} for ${name}: ${answer}`);
    },
    async untilDown(name, timeoutMs = 30_000) {
      await until(
        async () => (await state(name))?.startsWith('DOWN'),
        `haproxy to take ${name} out (DOWN)`,
        timeoutMs,
        50,
      );
    },
    async stop() {
      await endChild(child, 'SIGTERM');
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** Sends one command to HAProxy's admin socket and resolves with its whole answer. */
function command(socket: string, line: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect(socket);
    let got = '';
    s.setTimeout(5000, () => {
      s.destroy();
      reject(new Error(`haproxy's admin socket did not answer "${line}" within 5 s`));
    });
    s.on('error', reject);
    s.on('connect', () => s.write(`${line}\n`));
    s.on('data', (d) => {
      got += d;
    });
    s.on('end', () => resolve(got));
  });
}

/** Whether something accepts TCP connections on 127.0.0.1:`port` now. */
function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    const done = (ok: boolean) => {
      s.destroy();
      resolve(ok);
    };
    s.setTimeout(2000, () => done(false));
    s.on('error', () => done(false));
    s.on('connect', () => done(true));
  });
}
