import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Page } from '@playwright/test';
import { packBundle } from '../../core/manifest';
import { hopsApp } from '../apps';
import { deploy, expect, openNode, test } from './fixtures';

/** Calls from the page; answers the error's code and message, or the value. */
function call(page: Page, app: string, service: string, input: unknown, rpc?: string) {
  return page.evaluate(
    async ({ app, service, input, rpc }) => {
      const t0 = performance.now();
      try {
        const r = await window.brume.invoke(app, service, input, {}, rpc ? { rpc } : {});
        return { ok: true as const, value: r.value, ms: performance.now() - t0, trace: r.trace };
      } catch (e) {
        const err = e as { code?: string; message: string };
        return {
          ok: false as const,
          code: err.code,
          message: err.message,
          ms: performance.now() - t0,
        };
      }
    },
    { app, service, input, rpc },
  );
}

const stroke = { width: 28, height: 28, pixels: new Uint8Array(784).fill(255, 300, 420) };

test('a Logic that loops forever is stopped within twice its budget and the tab keeps serving', async ({
  page,
  relay,
}) => {
  await openNode(page, relay.url);
  await call(page, 'hostile', 'echo', 'warm'); // worker start-up is not the looping Logic's budget
  const r = await call(page, 'hostile', 'loop', {});
  expect(r).toMatchObject({ ok: false, code: 'E_LOGIC_TIMEOUT' });
  expect(r.message).toMatch(/500 ms budget; its worker was terminated and replaced/);
  expect(r.ms).toBeLessThan(2 * 500 + 500); // budget 500 ms; the rest is the replacement's start
  expect(await call(page, 'hostile', 'echo', { still: 'serving' })).toMatchObject({
    value: { still: 'serving' },
  });
  expect(await call(page, 'digits', 'classify', stroke)).toMatchObject({ ok: true });
  // The page's own thread never blocked: a timer fires on time.
  const lag = await page.evaluate(
    () =>
      new Promise<number>((r) => {
        const t = performance.now();
        setTimeout(() => r(performance.now() - t - 50), 50);
      }),
  );
  expect(lag).toBeLessThan(200);
});

test('a Logic that exhausts its memory gets a clear error', async ({ page, relay }) => {
  await openNode(page, relay.url);
  const r = await call(page, 'hostile', 'hog', {});
  expect(r).toMatchObject({ ok: false, code: 'E_LOGIC_MEMORY' });
  expect(r.message).toMatch(/memory limit of 4 MiB/);
  expect(await call(page, 'hostile', 'echo', 7)).toMatchObject({ value: 7 });
});

test('corrupt wasm, corrupt onnx and non-conforming modules fail clearly; other apps keep working', async ({
  page,
  relay,
}) => {
  await openNode(page, relay.url);
  expect(await call(page, 'broken', 'logic', {})).toMatchObject({
    ok: false,
    code: 'E_LOGIC_LOAD',
    message: expect.stringMatching(/not valid WebAssembly/),
  });
  expect(await call(page, 'broken', 'imports', {})).toMatchObject({
    ok: false,
    code: 'E_LOGIC_LOAD',
    message: expect.stringMatching(/env\.fetch/),
  });
  expect(await call(page, 'broken', 'ownmem', {})).toMatchObject({
    ok: false,
    code: 'E_LOGIC_LOAD',
    message: expect.stringMatching(/its own memory/),
  });
  const tensor = { type: 'float32', dims: [1, 784], data: new Uint8Array(784 * 4) };
  const onnx = await call(page, 'broken', 'model', { inputs: { pixels: tensor } });
  expect(onnx).toMatchObject({ ok: false, code: 'E_MODEL_LOAD' });
  expect(onnx.ok || onnx.message).toMatch(/could not be loaded on any backend \(wasm: /);
  expect(await call(page, 'digits', 'classify', stroke)).toMatchObject({ ok: true });
  expect(await call(page, 'hostile', 'echo', 'fine')).toMatchObject({ value: 'fine' });
});

test('a request crosses Logic → Logic → Model with continuations', async ({ page, relay }) => {
  await openNode(page, relay.url);
  const r = await call(page, 'hops', 'front', stroke);
  expect(r.ok).toBe(true);
  expect(r.value).toMatchObject({ via: 'front', hops: 2, result: { variant: 'large' } });
  expect(
    r.ok && r.trace.map((t: { kind: string; service: string }) => `${t.kind}:${t.service}`),
  ).toEqual(['model:model', 'logic:classify', 'logic:front']);
});

test('a tampered bundle is refused by the relay, and a tampered file by the tab', async ({
  page,
  relay,
}) => {
  const hops = await hopsApp();
  const bundle = packBundle(hops.manifest, hops.files);
  const wasm = hops.files['front.wasm']!;
  // Flip one byte inside front.wasm's bytes in the packed bundle.
  const at = Buffer.from(bundle).indexOf(Buffer.from(wasm.subarray(0, 64))) + 40;
  bundle[at]! ^= 0xff;
  const res = await deploy(relay, bundle);
  expect(res.status).toBe(400);
  const body = (await res.json()) as { error: { code: string; message: string } };
  expect(body.error.code).toBe('E_INTEGRITY');
  expect(body.error.message).toMatch(/front\.wasm/);

  // A file altered at rest in the relay's store: the tab verifies what it fetched and refuses it.
  const sha = hops.manifest.files['front.wasm']!.sha256;
  const path = join(relay.dataDir, 'blobs', sha);
  const original = readFileSync(path);
  const altered = Buffer.from(original);
  altered[40]! ^= 0xff;
  writeFileSync(path, altered);
  try {
    await openNode(page, relay.url);
    const r = await call(page, 'hops', 'front', stroke);
    expect(r).toMatchObject({
      ok: false,
      code: 'E_INTEGRITY',
      message: expect.stringMatching(/front\.wasm/),
    });
  } finally {
    writeFileSync(path, original);
  }
});
