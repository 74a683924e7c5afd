import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encode } from '../../core/codec';
import {
  BUNDLE_FORMAT,
  buildManifest,
  type Manifest,
  type ManifestDraft,
  packBundle,
} from '../../core/manifest';
import { createRelay, type Relay, type RelayLogger } from '../../relay/server';
import { identityOnnx, wasm } from '../apps';

const bytes = (text: string) => new TextEncoder().encode(text);
const silent: RelayLogger = { info() {}, warn() {}, error() {} };

function draft(version: string, description = 'test app'): ManifestDraft {
  return {
    brume: 1,
    name: 'echo',
    version,
    description,
    services: {
      main: { kind: 'logic', file: 'logic/echo.wasm', rpcs: ['echo'] },
      model: {
        kind: 'model',
        task: 'identity',
        inputs: [{ name: 'x', type: 'float32', dims: [-1, 4] }],
        outputs: [{ name: 'y', type: 'float32', dims: [-1, 4] }],
        variants: {
          tiny: {
            file: 'models/tiny.onnx',
            accuracy: 1,
            latencyMs: 0.01,
            params: 0,
            weights: 'random',
            measured: 'test fixture',
          },
        },
      },
    },
  };
}

const files = {
  // Real code: a deploy checks the rpcs and the model's inputs and outputs against it.
  'logic/echo.wasm': wasm('echo'),
  'models/tiny.onnx': identityOnnx('x', 'y', [-1, 4]),
};

async function bundle(d: ManifestDraft, f: Record<string, Uint8Array> = files) {
  const manifest = await buildManifest(d, f);
  return { manifest, bytes: packBundle(manifest, f) };
}

const BUNDLE = { 'content-type': 'application/vnd.brume.bundle' };

describe('relay', () => {
  let dir: string;
  let webRoot: string;
  let dataDir: string;
  let relay: Relay;
  let v1: { manifest: Manifest; bytes: Uint8Array };

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'brume-relay-'));
    webRoot = join(dir, 'web');
    dataDir = join(dir, 'data');
    await mkdir(join(webRoot, 'assets'), { recursive: true });
    await writeFile(join(webRoot, 'index.html'), '<!doctype html><title>Brume</title>');
    await writeFile(join(webRoot, 'assets', 'ort.wasm'), new Uint8Array([0, 97, 115, 109]));
    relay = await createRelay({
      host: '127.0.0.1',
      port: 0,
      dataDir,
      webRoot,
      logger: silent,
      cloudNode: false,
    });
    v1 = await bundle(draft('1.0.0'));
  });

  afterAll(async () => {
    await relay?.close();
    await rm(dir, { recursive: true, force: true });
  });

  const get = (path: string, init?: RequestInit) => fetch(`${relay.url}${path}`, init);
  const post = (b: Uint8Array, headers: Record<string, string> = BUNDLE) =>
    fetch(`${relay.url}/api/apps`, {
      method: 'POST',
      headers: { ...headers, authorization: `Bearer ${relay.admin.token}` },
      body: b.slice(),
    });

  function expectIsolated(res: Response) {
    expect(res.headers.get('cross-origin-opener-policy')).toBe('same-origin');
    expect(res.headers.get('cross-origin-embedder-policy')).toBe('require-corp');
    expect(res.headers.get('cross-origin-resource-policy')).toBe('same-origin');
  }

  it('listens on the port it reports', () => {
    expect(relay.port).toBeGreaterThan(0);
    expect(relay.url).toBe(`http://127.0.0.1:${relay.port}`);
  });

  it('serves the web app cross-origin isolated, wasm as application/wasm', async () => {
    const page = await get('/');
    expect(page.status).toBe(200);
    expect(await page.text()).toContain('<title>Brume</title>');
    expectIsolated(page);
    const wasm = await get('/assets/ort.wasm');
    expect(wasm.status).toBe(200);
    expect(wasm.headers.get('content-type')).toBe('application/wasm');
    expect(wasm.headers.get('cache-control')).toContain('immutable');
    expectIsolated(wasm);
  });

  it('isolates errors too, and answers JSON for them', async () => {
    for (const path of ['/nope.html', '/api/nope']) {
      const res = await get(path);
      expect(res.status).toBe(404);
      expectIsolated(res);
      expect((await res.json()).error.code).toBe('E_NOT_FOUND');
    }
  });

  it('reports health', async () => {
    const res = await get('/api/health');
    expectIsolated(res);
    const body = await res.json();
    expect(body).toEqual({ ok: true, version: expect.any(String), uptimeS: expect.any(Number) });
    expect(body.uptimeS).toBeGreaterThanOrEqual(0);
  });

  it('deploys a bundle, lists it, serves its manifest and every file by hash', async () => {
    const res = await post(v1.bytes);
    expect(res.status).toBe(201);
    expect(await res.json()).toMatchObject({ name: 'echo', version: '1.0.0' });

    const list = await (await get('/api/apps')).json();
    expect(list).toEqual([
      {
        name: 'echo',
        version: '1.0.0',
        description: 'test app',
        manifestSha256: expect.stringMatching(/^[0-9a-f]{64}$/),
        services: {
          main: { kind: 'logic', rpcs: ['echo'] },
          model: {
            kind: 'model',
            task: 'identity',
            variants: { tiny: { accuracy: 1, latencyMs: 0.01, params: 0, weights: 'random' } },
          },
        },
      },
    ]);

    const manifest = await (await get('/api/apps/echo')).json();
    expect(manifest).toEqual(v1.manifest);

    for (const [path, entry] of Object.entries(v1.manifest.files)) {
      const blob = await get(`/api/blobs/${entry.sha256}`);
      expect(blob.status).toBe(200);
      expect(blob.headers.get('content-type')).toBe('application/octet-stream');
      expect(blob.headers.get('cache-control')).toContain('immutable');
      expectIsolated(blob);
      expect(new Uint8Array(await blob.arrayBuffer())).toEqual(files[path as keyof typeof files]);
      const again = await get(`/api/blobs/${entry.sha256}`, {
        headers: { 'if-none-match': blob.headers.get('etag')! },
      });
      expect(again.status).toBe(304);
    }
  });

  it('answers 404 for an unknown hash or app and 400 for a malformed hash', async () => {
    // A hash that is no app's file is not public (blobs hold jobs' data): 401 without a key.
    const hidden = await get(`/api/blobs/${'0'.repeat(64)}`);
    expect(hidden.status).toBe(401);
    const unknown = await get(`/api/blobs/${'0'.repeat(64)}`, {
      headers: { authorization: `Bearer ${relay.admin.token}` },
    });
    expect(unknown.status).toBe(404);
    expect((await unknown.json()).error.code).toBe('E_NOT_FOUND');
    for (const bad of ['xyz', 'A'.repeat(64), '0'.repeat(63), '..%2F..%2Fetc%2Fpasswd']) {
      const res = await get(`/api/blobs/${bad}`);
      expect(res.status, bad).toBe(400);
      expect((await res.json()).error).toEqual({
        code: 'E_INPUT',
        message: expect.stringContaining('sha256'),
      });
    }
    const noApp = await get('/api/apps/nothing-here');
    expect(noApp.status).toBe(404);
    expect((await noApp.json()).error.message).toContain('nothing-here');
  });

  it('refuses a tampered bundle with 400 naming the file, and stores nothing of it', async () => {
    const v2 = await buildManifest(draft('2.0.0'), files);
    const tampered = { ...files, 'models/tiny.onnx': files['models/tiny.onnx'].slice() };
    tampered['models/tiny.onnx'][5]! ^= 1;
    const res = await post(encode({ format: BUNDLE_FORMAT, manifest: v2, files: tampered }));
    expect(res.status).toBe(400);
    const { error } = await res.json();
    expect(error.code).toBe('E_INTEGRITY');
    expect(error.message).toContain('models/tiny.onnx');
    expect((await (await get('/api/apps/echo')).json()).version).toBe('1.0.0');
    const versions = await (await get('/api/apps/echo/versions')).json();
    expect(versions).toEqual(['1.0.0']);
  });

  it('refuses garbage, a bad manifest, and a wrong content-type with JSON errors', async () => {
    const garbage = await post(bytes('certainly not a bundle'));
    expect(garbage.status).toBe(400);
    expect((await garbage.json()).error.code).toBe('E_CODEC');

    const badManifest = encode({
      format: BUNDLE_FORMAT,
      manifest: { ...v1.manifest, name: 'Bad Name' },
      files,
    });
    const bad = await post(badManifest);
    expect(bad.status).toBe(400);
    expect((await bad.json()).error).toEqual({
      code: 'E_MANIFEST',
      message: expect.stringMatching(/^name must match/),
    });

    for (const type of ['application/json', 'text/plain', 'image/png']) {
      const res = await post(bytes('{}'), { 'content-type': type });
      expect(res.status, type).toBe(415);
      const { error } = await res.json();
      expect(error.code).toBe('E_INPUT');
      expect(error.message).toContain('application/vnd.brume.bundle');
    }
  });

  it('accepts the same version again unchanged, and refuses it with different content (409)', async () => {
    const same = await post(v1.bytes);
    expect(same.status).toBe(200);
    const changed = await bundle(draft('1.0.0', 'sneaky change'));
    const res = await post(changed.bytes, { 'content-type': 'application/octet-stream' });
    expect(res.status).toBe(409);
    const { error } = await res.json();
    expect(error.code).toBe('E_CONFLICT');
    expect(error.message).toContain('echo@1.0.0');
  });

  it('makes a new version current and keeps the history', async () => {
    const v11 = await bundle(draft('1.1.0', 'second'));
    expect((await post(v11.bytes)).status).toBe(201);
    expect((await (await get('/api/apps/echo')).json()).description).toBe('second');
    expect(await (await get('/api/apps/echo/versions')).json()).toEqual(['1.0.0', '1.1.0']);
    const old = await (await get('/api/apps/echo/versions/1.0.0')).json();
    expect(old).toEqual(v1.manifest);
  });

  it('keeps apps across a restart with the same dataDir, on disk as documented', async () => {
    await relay.close();
    // A write cut short by a crash leaves its temporary next to its target: gone at start.
    await writeFile(join(dataDir, 'blobs', '.abc.0123456789ab.tmp'), 'half');
    relay = await createRelay({ port: 0, dataDir, webRoot, logger: silent, cloudNode: false });
    const list = await (await get('/api/apps')).json();
    expect(list.map((a: { name: string; version: string }) => `${a.name}@${a.version}`)).toEqual([
      'echo@1.1.0',
    ]);
    const sha = v1.manifest.files['logic/echo.wasm']!.sha256;
    const blob = await get(`/api/blobs/${sha}`);
    expect(new Uint8Array(await blob.arrayBuffer())).toEqual(files['logic/echo.wasm']);

    expect((await readdir(join(dataDir, 'blobs'))).sort()).toEqual(
      Object.values(v1.manifest.files)
        .map((f) => f.sha256)
        .sort(),
    );
    expect(await readdir(join(dataDir, 'apps'))).toEqual(
      expect.arrayContaining(['echo.json', 'echo']),
    );
    expect((await readdir(join(dataDir, 'apps', 'echo'))).sort()).toEqual([
      '1.0.0.json',
      '1.1.0.json',
    ]);
  });
});

describe('relay start-up', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'brume-relay-seed-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('seeds apps into an empty store, once, logging one line per app', async () => {
    const seed = join(dir, 'echo.brume');
    await writeFile(seed, (await bundle(draft('3.0.0'))).bytes);
    const lines: string[] = [];
    const logger: RelayLogger = {
      // The line's message: pino's shape is info(fields, message) or info(message).
      info: (a: unknown, m?: string) => lines.push(typeof a === 'string' ? a : String(m)),
      warn() {},
      error() {},
    };
    const dataDir = join(dir, 'data');
    const relay = await createRelay({
      port: 0,
      dataDir,
      webRoot: dir,
      appsToSeed: [seed],
      logger,
      cloudNode: false,
    });
    const list = await (await fetch(`${relay.url}/api/apps`)).json();
    expect(list[0]).toMatchObject({ name: 'echo', version: '3.0.0' });
    expect(lines).toEqual([`seeded echo@3.0.0 from ${seed}`]);
    await relay.close();

    // The store has apps now: seeds are not deployed over them.
    await writeFile(seed, (await bundle(draft('4.0.0'))).bytes);
    lines.length = 0;
    const again = await createRelay({
      port: 0,
      dataDir,
      webRoot: dir,
      appsToSeed: [seed],
      logger,
      cloudNode: false,
    });
    expect((await (await fetch(`${again.url}/api/apps/echo`)).json()).version).toBe('3.0.0');
    expect(lines).toEqual([]);
    await again.close();
  });

  it('refuses to start from a corrupt seed, naming it', async () => {
    const seed = join(dir, 'corrupt.brume');
    await writeFile(seed, bytes('corrupt'));
    await expect(
      createRelay({
        port: 0,
        dataDir: join(dir, 'd2'),
        webRoot: dir,
        appsToSeed: [seed],
        logger: silent,
      }),
    ).rejects.toThrow(seed);
  });

  it('answers 503 at / when the web app is not built', async () => {
    const relay = await createRelay({
      port: 0,
      dataDir: join(dir, 'd3'),
      webRoot: join(dir, 'not-built'),
      logger: silent,
    });
    try {
      const res = await fetch(`${relay.url}/`);
      expect(res.status).toBe(503);
      expect(res.headers.get('cross-origin-opener-policy')).toBe('same-origin');
      expect((await res.json()).error.message).toContain('web app not built: run npm run build');
      const html = await fetch(`${relay.url}/`, { headers: { accept: 'text/html' } });
      expect(await html.text()).toContain('npm run build');
      expect((await fetch(`${relay.url}/api/health`)).status).toBe(200);
    } finally {
      await relay.close();
    }
  });

  it('refuses a bundle over the body limit with 413', async () => {
    const relay = await createRelay({
      port: 0,
      dataDir: join(dir, 'd4'),
      webRoot: dir,
      bodyLimit: 1024,
      logger: silent,
    });
    try {
      const big = await bundle(draft('1.0.0'), {
        ...files,
        'models/tiny.onnx': new Uint8Array(4096),
      });
      const res = await fetch(`${relay.url}/api/apps`, {
        method: 'POST',
        headers: { ...BUNDLE, authorization: `Bearer ${relay.admin.token}` },
        body: big.bytes.slice(),
      });
      expect(res.status).toBe(413);
      expect((await res.json()).error.message).toMatch(/limit/);
    } finally {
      await relay.close();
    }
  });
});
