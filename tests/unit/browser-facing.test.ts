// The relay as a browser meets it (issue 10, item 8), on a real port: the Host allow-list that
// stops DNS rebinding (HTTP and WebSocket upgrades), the admin console that no page may frame,
// a data directory only its user reads, and trust-list writes that neither collide nor stop a
// restart when torn.
import { mkdtempSync } from 'node:fs';
import { mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadOrCreateIdentity, memoryKeyStore } from '../../core/identity';
import { createRelay, type Relay } from '../../relay/server';

const silent = { info() {}, warn() {}, error() {} };
let dir: string;
let webRoot: string;
beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'brume-browser-'));
  webRoot = join(dir, 'web');
  await mkdir(webRoot, { recursive: true });
  await writeFile(join(webRoot, 'admin.html'), '<!doctype html><title>Brume admin</title>');
  await writeFile(join(webRoot, 'index.html'), '<!doctype html><title>Brume</title>');
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function relayIn(name: string, o: { allowedHosts?: string[] } = {}): Promise<Relay> {
  return createRelay({
    port: 0,
    dataDir: join(dir, name),
    webRoot,
    logger: silent,
    cloudNode: false,
    ...o,
  });
}

/** GET `path` with a Host header of our choosing (fetch does not let one set it). */
function get(relay: Relay, path: string, host: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ port: relay.port, host: '127.0.0.1', path, headers: { host } }, (res) => {
      let body = '';
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode!, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** Sends a WebSocket upgrade for `path` with `host`; answers the status line. */
function upgrade(relay: Relay, path: string, host: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(relay.port, '127.0.0.1', () => {
      socket.write(
        `GET ${path} HTTP/1.1\r\nHost: ${host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
          'Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n',
      );
    });
    let out = '';
    socket.on('data', (d) => {
      out += d;
      if (out.includes('\r\n')) {
        resolve(out.split('\r\n')[0]!);
        socket.destroy();
      }
    });
    socket.on('error', reject);
  });
}

describe('Host allow-list', () => {
  let relay: Relay;
  beforeAll(async () => {
    relay = await relayIn('hosts', { allowedHosts: ['relay.example.org', 'Pinned.Example:81'] });
  });
  afterAll(() => relay.close());

  it('refuses a request for a name that is not the relay’s, naming the host (DNS rebinding)', async () => {
    const res = await get(relay, '/api/health', `evil.example:${relay.port}`);
    expect(res.status).toBe(421);
    const { error } = JSON.parse(res.body);
    expect(error.code).toBe('E_HOST');
    expect(error.message).toContain(`evil.example:${relay.port}`);
    expect(error.message).toContain('--allow-host');
    expect((await get(relay, '/', `evil.example:${relay.port}`)).status).toBe(421);
    expect((await get(relay, '/api/health', 'pinned.example:82')).status).toBe(421);
  });

  it('answers its own names on loopback and the names it was given', async () => {
    for (const host of [
      `127.0.0.1:${relay.port}`,
      `localhost:${relay.port}`,
      `LOCALHOST:${relay.port}`,
      'relay.example.org',
      'relay.example.org:443',
      'pinned.example:81',
    ]) {
      expect((await get(relay, '/api/health', host)).status, host).toBe(200);
    }
  });

  it('refuses a WebSocket upgrade with a foreign Host, on every socket path', async () => {
    for (const path of ['/ws', '/peerjs/peerjs?id=x&token=y', '/elsewhere']) {
      expect(await upgrade(relay, path, `evil.example:${relay.port}`), path).toBe(
        'HTTP/1.1 421 Misdirected Request',
      );
    }
    expect(await upgrade(relay, '/ws', `127.0.0.1:${relay.port}`)).toBe(
      'HTTP/1.1 101 Switching Protocols',
    );
  });
});

describe('admin console', () => {
  it('may not be framed by any page', async () => {
    const relay = await relayIn('frames');
    try {
      for (const path of ['/admin', '/admin.html']) {
        const res = await fetch(`${relay.url}${path}`);
        expect(res.status, path).toBe(200);
        expect(res.headers.get('content-security-policy'), path).toBe("frame-ancestors 'none'");
        expect(res.headers.get('x-frame-options'), path).toBe('DENY');
      }
      // The join page is left as it was (the embed frames /embed.html, never the console).
      expect((await fetch(`${relay.url}/`)).headers.get('x-frame-options')).toBeNull();
    } finally {
      await relay.close();
    }
  });
});

describe('data directory', () => {
  it('is created readable by its user only, with its secrets 0600', async () => {
    const relay = await relayIn('private');
    try {
      await relay.admin.trust((await loadOrCreateIdentity(memoryKeyStore(), 'f')).publicKey, '');
      await relay.keys.create(['call'], '');
    } finally {
      await relay.close();
    }
    const data = join(dir, 'private');
    expect((await stat(data)).mode & 0o777).toBe(0o700);
    for (const file of ['admin-token', 'trust.json', 'keys.json']) {
      expect((await stat(join(data, file))).mode & 0o777, file).toBe(0o600);
    }
  });
});

describe('trust list', () => {
  it('takes 24 concurrent additions, all answered 201 and all kept', async () => {
    const relay = await relayIn('trust');
    try {
      const keys = await Promise.all(
        Array.from({ length: 24 }, async (_, i) => {
          return (await loadOrCreateIdentity(memoryKeyStore(), `fog-${i}`)).publicKey;
        }),
      );
      const answers = await Promise.all(
        keys.map((publicKey) =>
          fetch(`${relay.url}/api/trust`, {
            method: 'POST',
            headers: {
              authorization: `Bearer ${relay.admin.token}`,
              'content-type': 'application/json',
            },
            body: JSON.stringify({ publicKey, label: 'fog' }),
          }),
        ),
      );
      expect(answers.map((r) => r.status)).toEqual(keys.map(() => 201));
      const stored = JSON.parse(await readFile(join(dir, 'trust', 'trust.json'), 'utf8'));
      expect(stored.map((e: { publicKey: string }) => e.publicKey).sort()).toEqual(keys.sort());
      expect((await readdir(join(dir, 'trust'))).filter((f) => f.endsWith('.tmp'))).toEqual([]);
    } finally {
      await relay.close();
    }
  });

  it('starts when trust.json is torn, moving it aside with a message', async () => {
    const data = join(dir, 'torn');
    await mkdir(data, { recursive: true });
    await writeFile(join(data, 'trust.json'), '[{"publicKey": "MFkwEw');
    const warnings: string[] = [];
    const relay = await createRelay({
      port: 0,
      dataDir: data,
      webRoot,
      logger: { ...silent, warn: (m: unknown) => warnings.push(String(m)) },
      cloudNode: false,
    });
    try {
      expect(relay.admin.trustList()).toEqual([]);
      expect(warnings.join('\n')).toMatch(/trust\.json is corrupt .*moved it to/);
      expect((await readdir(data)).some((f) => f.startsWith('trust.json.corrupt-'))).toBe(true);
    } finally {
      await relay.close();
    }
  });
});
