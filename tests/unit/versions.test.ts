// Versions across the fabric (issue 19): a deploy or a rollback reaches the relay's cloud node
// without a restart, calls in flight finish on the version they were taken for, answers say which
// version ran, and a caller may pin a version or a range. The relay runs as a real process.
import { encode } from '@msgpack/msgpack';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildManifest, packBundle } from '../../core/manifest';
import { decodeFrame } from '../../core/protocol';
import { createRuntime } from '../../core/runtime';
import { memoryAppSource } from '../../core/sources';
import { nodePlatform } from '../../relay/platform';
import { buildLogics } from '../../scripts/build-logics';
import { greetApp } from '../apps';
import { deploy, type RelayProcess, startRelay } from '../relay-process';
import { until } from '../until';

const greet = greetApp;

interface Answer {
  value: unknown;
  version: string;
  node: string;
  trace: { version?: string }[];
}

let relay: RelayProcess;
const ship = async (version: string) => {
  const b = await greet(version);
  const res = await deploy(relay, packBundle(b.manifest, b.files));
  expect(res.status, await res.clone().text()).toBeLessThan(300);
  return res;
};
async function call(
  rpc: string,
  input: unknown,
  qos: Record<string, unknown> = {},
): Promise<{ status: number; body: Answer & { error?: { code: string; message: string } } }> {
  const res = await fetch(`${relay.url}/api/call/greet/greet`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${relay.token}` },
    body: JSON.stringify({ input, qos, rpc }),
  });
  return { status: res.status, body: await res.json() };
}
const admin = (path: string, init: RequestInit = {}) =>
  fetch(`${relay.url}${path}`, {
    ...init,
    headers: { 'content-type': 'application/json', authorization: `Bearer ${relay.token}` },
  });
/** The relay's own cloud node as GET /api/nodes shows it. */
async function cloud(): Promise<{ load: { queue: number }; versions?: Record<string, string[]> }> {
  const nodes = (await (await admin('/api/nodes')).json()) as {
    role: string;
    queue: number;
    versions?: Record<string, string[]>;
  }[];
  const n = nodes.find((x) => x.role === 'cloud')!;
  return { load: { queue: n.queue }, ...(n.versions && { versions: n.versions }) };
}

beforeAll(async () => {
  await buildLogics();
  relay = await startRelay();
  await ship('1.0.0');
}, 120_000);
afterAll(() => relay?.stop());

describe('versions across the fabric, relay process and its cloud node', () => {
  it('says which version ran, in the answer and in each trace entry', async () => {
    const r = await call('echo', 'hi');
    expect(r.status).toBe(200);
    expect(r.body.value).toBe('hi');
    expect(r.body.version).toBe('1.0.0');
    expect(r.body.trace.map((t) => t.version)).toEqual(['1.0.0']);
  });

  it('finishes calls in flight on 1.0.0 and runs every call after the deploy on 1.0.1, no restart', async () => {
    const pid = relay.child.pid;
    // Four long calls (half a second each on a quiet machine) queue on the cloud node's worker.
    const started = [1, 2, 3, 4].map(() =>
      call('spin', { n: 600_000_000 }).then((r) => ({ ...r, at: performance.now() })),
    );
    await until(async () => (await cloud()).load.queue >= 2, 'the long calls to be running');
    await ship('1.0.1');
    const deployedAt = performance.now();
    // Calls that start after the deploy answered: the relay announced 1.0.1 before answering.
    for (let i = 0; i < 5; i++) {
      const r = await call('echo', i);
      expect(r.body.version).toBe('1.0.1');
      expect(r.body.trace[0]!.version).toBe('1.0.1');
    }
    const inFlight = await Promise.all(started);
    for (const r of inFlight) {
      expect(r.status, JSON.stringify(r.body)).toBe(200);
      expect(r.body.version).toBe('1.0.0');
      expect(r.body.value).toEqual({ n: 600_000_000, x: expect.any(Number) });
    }
    // The check is only worth something if calls were still running when 1.0.1 arrived.
    expect(inFlight.filter((r) => r.at > deployedAt).length).toBeGreaterThan(0);
    expect(relay.child.pid).toBe(pid);
    expect(relay.child.exitCode).toBe(null);
    // The node reports the versions it holds, the current one first.
    const held = await until(async () => {
      const v = (await cloud()).versions?.greet;
      return v?.[0] === '1.0.1' && v;
    }, 'the cloud node to report 1.0.1');
    expect(held[0]).toBe('1.0.1');
  }, 120_000);

  it('runs a call pinned to a version or a range where that version runs', async () => {
    const old = await call('echo', 'old', { version: '1.0.0' });
    expect(old.status).toBe(200);
    expect(old.body.version).toBe('1.0.0');
    expect((await call('echo', 'any', { version: '^1.0.0' })).body.version).toBe('1.0.1');
    expect((await call('echo', 'patch', { version: '~1.0.0 <1.0.1' })).body.version).toBe('1.0.0');
  });

  it('refuses a pin no deployed version satisfies, and a range that is not one, naming qos.version', async () => {
    const none = await call('echo', 'x', { version: '^2.0.0' });
    expect(none.status).toBe(400);
    expect(none.body.error!.code).toBe('E_INPUT');
    expect(none.body.error!.message).toContain('qos.version');
    expect(none.body.error!.message).toContain('1.0.1');
    const bad = await call('echo', 'x', { version: 'not a range' });
    expect(bad.status).toBe(400);
    expect(bad.body.error!.message).toContain('qos.version');
  });

  it('takes a rollback the same way: calls after it run the version made current', async () => {
    const res = await admin('/api/apps/greet/current', {
      method: 'POST',
      body: JSON.stringify({ version: '1.0.0' }),
    });
    expect(res.status).toBe(200);
    for (let i = 0; i < 3; i++) expect((await call('echo', i)).body.version).toBe('1.0.0');
    // Forward again with a deploy of a higher version.
    await ship('1.0.2');
    expect((await call('echo', 'new')).body.version).toBe('1.0.2');
  });
});

describe('versions a node holds', () => {
  it('drops a version no longer current after its grace period, and fetches it again when pinned', async () => {
    await buildLogics();
    const v1 = await greet('1.0.0');
    const v2 = await greet('1.0.1');
    const runtime = createRuntime(nodePlatform(memoryAppSource([v1, v2])), {
      versionGraceMs: 50,
    });
    try {
      runtime.install(v1.manifest);
      expect((await runtime.call('greet', 'greet', 'a')).version).toBe('1.0.0');
      // Announced while a call runs on 1.0.0: that call keeps its version.
      const running = runtime.call('greet', 'greet', { n: 50_000_000 }, {}, { rpc: 'spin' });
      await runtime.announce('greet', '1.0.1');
      expect((await runtime.call('greet', 'greet', 'b')).version).toBe('1.0.1');
      expect((await running).version).toBe('1.0.0');
      await until(() => runtime.versions().greet?.length === 1, '1.0.0 to be dropped');
      expect(runtime.versions().greet).toEqual(['1.0.1']);
      const pinned = await runtime.call('greet', 'greet', 'c', { version: '1.0.0' });
      expect(pinned.version).toBe('1.0.0');
      expect(pinned.trace[0]!.version).toBe('1.0.0');
    } finally {
      runtime.close();
    }
  });

  it('keeps at most maxVersions versions of an app, and its source forgets their own files', async () => {
    // Each version ships a file of its own beside the Logic they share.
    const bundles = await Promise.all(
      ['1.0.0', '1.0.1', '1.0.2', '1.0.3'].map(async (v) => {
        const g = await greet(v);
        const files = { ...g.files, 'notes.txt': new TextEncoder().encode(`notes of ${v}`) };
        return { manifest: await buildManifest(g.manifest, files), files };
      }),
    );
    const forgotten: string[] = [];
    const source = {
      ...memoryAppSource(bundles),
      forget: async (sha256s: string[]) => void forgotten.push(...sha256s),
    };
    const runtime = createRuntime(nodePlatform(source), {
      maxVersions: 2,
      versionGraceMs: 3_600_000,
    });
    try {
      for (const b of bundles) {
        await runtime.announce('greet', b.manifest.version);
        await runtime.call('greet', 'greet', 'x');
      }
      expect(runtime.versions().greet).toEqual(['1.0.3', '1.0.2']);
      const notes = (i: number) => bundles[i]!.manifest.files['notes.txt']!.sha256;
      expect(forgotten.sort()).toEqual([notes(0), notes(1)].sort());
    } finally {
      runtime.close();
    }
  });
});

describe('the version fields on the wire', () => {
  const heartbeat = {
    t: 'heartbeat',
    load: { queue: 0, maxConcurrency: 1 },
    apps: ['greet'],
    models: {},
    stats: {},
    paused: false,
  };
  it('takes an app frame and heartbeat versions that follow the rules', () => {
    expect(decodeFrame(encode({ t: 'app', name: 'greet', version: '1.0.1' }), 'toNode')).toEqual({
      t: 'app',
      name: 'greet',
      version: '1.0.1',
    });
    const hb = { ...heartbeat, versions: { greet: ['1.0.1', '1.0.0'] }, fetch: true };
    expect(decodeFrame(encode(hb), 'toRelay')).toEqual(hb);
  });

  it('refuses versions that are not MAJOR.MINOR.PATCH, too many of them, and bad ranges', () => {
    const bad = (frame: unknown, direction: 'toNode' | 'toRelay') =>
      expect(() => decodeFrame(encode(frame), direction)).toThrow(/version/);
    bad({ t: 'app', name: 'greet', version: '^1.0.0' }, 'toNode');
    bad({ t: 'app', name: 'greet', version: 'x'.repeat(100) }, 'toNode');
    bad({ ...heartbeat, versions: { greet: ['1.0'] } }, 'toRelay');
    const many = Array.from({ length: 9 }, (_, i) => `1.0.${i}`);
    expect(() =>
      decodeFrame(encode({ ...heartbeat, versions: { greet: many } }), 'toRelay'),
    ).toThrow();
    const call = { t: 'schedule', id: 1, app: 'greet', service: 'greet' };
    bad({ ...call, qos: { version: 'not a range' } }, 'toRelay');
    bad({ ...call, qos: { version: '1'.repeat(200) } }, 'toRelay');
    expect(decodeFrame(encode({ ...call, qos: { version: '^1.2.0' } }), 'toRelay')).toMatchObject({
      qos: { version: '^1.2.0' },
    });
  });
});
