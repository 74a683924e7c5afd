// The host's caps on Logics, whatever a manifest asks (it may ask for 600 s and 4 GiB), and Logic
// worker threads that die (out of heap, an uncaught throw): the step fails with a typed error,
// the worker is replaced, and the process that hosts them (the relay, for its cloud node) lives on.

import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BrumeError } from '../../core/errors';
import { type Bundle, buildManifest, type LogicService, packBundle } from '../../core/manifest';
import { createRuntime, type Runtime } from '../../core/runtime';
import { memoryAppSource } from '../../core/sources';
import { nodePlatform } from '../../relay/platform';
import { buildLogics } from '../../scripts/build-logics';
import { type RelayProcess, startRelay } from '../relay-process';

const wasm = (name: string) =>
  new Uint8Array(readFileSync(new URL(`../../logics/build/${name}.wasm`, import.meta.url)));

/** Logics whose manifest asks for the most the schema allows. */
async function greedyApp(): Promise<Bundle> {
  const files = { 'loop.wasm': wasm('loop-forever'), 'hog.wasm': wasm('memory-hog') };
  const limits = { timeoutMs: 600_000, memoryMiB: 4096 };
  const manifest = await buildManifest(
    {
      brume: 1,
      name: 'greedy',
      version: '1.0.0',
      services: {
        loop: { kind: 'logic', file: 'loop.wasm', rpcs: ['run'], limits },
        hog: { kind: 'logic', file: 'hog.wasm', rpcs: ['run'], limits },
      },
    },
    files,
  );
  return { manifest, files };
}

/** The echo Logic, with rpcs the hostile worker thread breaks on. */
async function crashyApp(): Promise<Bundle> {
  const files = { 'echo.wasm': wasm('echo') };
  const manifest = await buildManifest(
    {
      brume: 1,
      name: 'crashy',
      version: '1.0.0',
      services: { echo: { kind: 'logic', file: 'echo.wasm', rpcs: ['echo', 'oom', 'throw'] } },
    },
    files,
  );
  return { manifest, files };
}

async function failure(p: Promise<unknown>): Promise<BrumeError> {
  const e = await p.then(
    () => undefined,
    (x: unknown) => x,
  );
  expect(e).toBeInstanceOf(BrumeError);
  return e as BrumeError;
}

let greedy: Bundle;
beforeAll(async () => {
  await buildLogics();
  greedy = await greedyApp();
}, 120_000);

describe('host caps on Logics', () => {
  let node: Runtime;
  beforeAll(async () => {
    node = createRuntime(nodePlatform(memoryAppSource([greedy])), {
      logicTimeoutMs: 300,
      logicMemoryMiB: 8,
    });
    await node.refresh();
  });
  afterAll(() => node.close());

  it('stop a Logic at the node’s time cap, not the 600 s its manifest asks', async () => {
    const svc = greedy.manifest.services.loop as LogicService;
    expect(node.logicLimits(svc)).toEqual({ timeoutMs: 300, memoryMiB: 8 });
    const e = await failure(node.call('greedy', 'loop', {}));
    expect(e.code).toBe('E_LOGIC_TIMEOUT');
    expect(e.message).toContain('300 ms');
  });

  it('stop a Logic at the node’s memory cap, not the 4 GiB its manifest asks', async () => {
    const e = await failure(node.call('greedy', 'hog', {}));
    expect(e.code).toBe('E_LOGIC_MEMORY');
    expect(e.message).toContain('memory limit of 8 MiB');
  });

  it('default to 10 s and 256 MiB', () => {
    const plain = createRuntime(nodePlatform(memoryAppSource([])));
    expect(plain.logicLimits(greedy.manifest.services.hog as LogicService)).toEqual({
      timeoutMs: 10_000,
      memoryMiB: 256,
    });
  });
});

describe('a Logic worker thread that dies', () => {
  let node: Runtime;
  beforeAll(async () => {
    const entry = new URL('../fixtures/hostile-logic-thread.ts', import.meta.url);
    const platform = nodePlatform(memoryAppSource([await crashyApp()]), {
      logicEntry: entry,
      logicHeapMiB: 32,
    });
    node = createRuntime(platform);
    await node.refresh();
  });
  afterAll(() => node.close());

  it('out of its heap: the step fails naming the heap, and a fresh worker serves the next', async () => {
    expect((await node.call('crashy', 'echo', 'before')).value).toBe('before');
    const e = await failure(node.call('crashy', 'echo', {}, {}, { rpc: 'oom' }));
    expect(e.code).toBe('E_LOGIC_MEMORY');
    expect(e.message).toBe('the Logic worker ran out of its 32 MiB heap and was replaced');
    expect((await node.call('crashy', 'echo', 'after')).value).toBe('after');
  });

  it('on an uncaught throw: the step fails at once, and a fresh worker serves the next', async () => {
    const e = await failure(node.call('crashy', 'echo', {}, {}, { rpc: 'throw' }));
    expect(e.code).toBe('E_LOGIC_FAULT');
    expect(e.message).toContain('deliberate uncaught throw');
    expect((await node.call('crashy', 'echo', 'again')).value).toBe('again');
  });
});

describe("the relay's cloud node", () => {
  let relay: RelayProcess;
  beforeAll(async () => {
    relay = await startRelay({ args: ['--logic-timeout-ms', '300', '--logic-memory-mib', '8'] });
  }, 60_000);
  afterAll(() => relay?.stop());

  it('applies --logic-timeout-ms and --logic-memory-mib, and stays up', async () => {
    const res = await fetch(`${relay.url}/api/apps`, {
      method: 'POST',
      headers: {
        'content-type': 'application/vnd.brume.bundle',
        authorization: `Bearer ${relay.token}`,
      },
      body: Buffer.from(packBundle(greedy.manifest, greedy.files)),
    });
    expect(res.status, await res.text()).toBeLessThan(300);
    const call = (service: string) =>
      fetch(`${relay.url}/api/call/greedy/${service}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ input: {} }),
      }).then(async (r) => (await r.json()) as { error?: { code: string; message: string } });
    const loop = await call('loop');
    expect(loop.error?.code).toBe('E_LOGIC_TIMEOUT');
    expect(loop.error?.message).toContain('300 ms');
    const hog = await call('hog');
    expect(hog.error?.code).toBe('E_LOGIC_MEMORY');
    expect(hog.error?.message).toContain('8 MiB');
    expect((await fetch(`${relay.url}/api/health`)).status).toBe(200);
  });
});
