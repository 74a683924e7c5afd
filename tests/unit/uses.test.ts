// Apps that use other apps, against a real relay process seeded with the sample apps: `top3`
// ships no model and calls `digits/model` through its manifest's `uses`; its answers are the
// digits model's own. A callee keeps its own app's context. A call to an app not in `uses` is
// refused with E_FORBIDDEN, and a deploy whose `uses` no deployed version satisfies with
// E_CONFLICT naming the field.
import { readFile } from 'node:fs/promises';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decode, encode } from '../../core/codec';
import { buildManifest, type Manifest, packBundle, unpackBundle } from '../../core/manifest';
import { loadDigits } from '../../models/digits/data';
import { contextApp, wasm } from '../apps';
import { deploy, type RelayProcess, startRelay } from '../relay-process';
import { until } from '../until';

let relay: RelayProcess;
let top3: { manifest: Manifest; files: Record<string, Uint8Array> };
beforeAll(async () => {
  relay = await startRelay();
  top3 = await unpackBundle(new Uint8Array(await readFile('dist/apps/top3.brume')));
}, 60_000);
afterAll(() => relay?.stop());

async function call(app: string, service: string, body: unknown) {
  const res = await fetch(`${relay.url}/api/call/${app}/${service}`, {
    method: 'POST',
    headers: { 'content-type': 'application/msgpack', accept: 'application/msgpack' },
    body: Buffer.from(encode(body)),
  });
  const bytes = new Uint8Array(await res.arrayBuffer());
  const json = res.headers.get('content-type')?.startsWith('application/json');
  const answer = (json ? JSON.parse(new TextDecoder().decode(bytes)) : decode(bytes)) as Answer;
  return { status: res.status, body: answer };
}

interface Answer {
  value?: unknown;
  rpc?: string;
  trace?: { service: string; rpc: string; kind: string }[];
  error?: { code: string; message: string };
}

/** The first answer once the relay's cloud node has joined (503 until then). */
const answered = (app: string, service: string, body: unknown) =>
  until(async () => {
    const r = await call(app, service, body);
    return r.status !== 503 && r;
  }, `an answer from ${app}/${service}`);

/** Held-out digit `i` as the 784 grayscale bytes top3 takes. */
function framed(i: number): { pixels: Uint8Array; label: number } {
  const { heldout } = loadDigits();
  const pixels = new Uint8Array(784);
  for (let k = 0; k < 784; k++) pixels[k] = Math.round(heldout.x[i * 784 + k]! * 255);
  return { pixels, label: heldout.y[i]! };
}

const sessions = new Map<string, Promise<ort.InferenceSession>>();
/** What the digits model's `variant` gives for `pixels`, run by onnxruntime-node in this process. */
async function oracle(variant: string, pixels: Float32Array): Promise<Float32Array> {
  let s = sessions.get(variant);
  if (!s) {
    s = ort.InferenceSession.create(`models/digits/${variant}.onnx`);
    sessions.set(variant, s);
  }
  const out = await (await s).run({ pixels: new ort.Tensor('float32', pixels, [1, 784]) });
  return out.probs!.data as Float32Array;
}

type Top = { top: { digit: number; p: number }[]; variant: string };

describe('top3, which uses digits/model', () => {
  it('ships no model of its own', () => {
    expect(top3.manifest.uses).toEqual({ digits: '^1.0.0' });
    expect(Object.keys(top3.files)).toEqual(['logic/rank.wasm']);
  });

  it("answers over HTTP with the digits model's own ranking", async () => {
    let right = 0;
    const n = 40;
    for (let i = 0; i < n; i++) {
      const { pixels, label } = framed(i);
      const r = await answered('top3', 'rank', { input: { pixels } });
      expect(r.status, JSON.stringify(r.body.error)).toBe(200);
      const v = r.body.value as Top;
      expect(r.body.trace?.map((t) => t.kind)).toEqual(['model', 'logic']);
      // The oracle: the digits model file itself, run here on the same tensor.
      const data = new Float32Array(784);
      for (let k = 0; k < 784; k++) data[k] = pixels[k]! / 255;
      const probs = await oracle(v.variant, data);
      const ranked = [...probs.keys()].sort((a, b) => probs[b]! - probs[a]!).slice(0, 3);
      expect(v.top.map((t) => t.digit)).toEqual(ranked);
      for (const t of v.top) expect(t.p).toBeCloseTo(probs[t.digit]!, 5);
      if (v.top[0]!.digit === label) right++;
    }
    // The digits model's held-out accuracy is over 0.9: so is top3's first choice.
    expect(right / n).toBeGreaterThan(0.85);
  }, 60_000);

  it("refuses its caller's bad input with its own E_APP (422)", async () => {
    const r = await answered('top3', 'rank', { input: { pixels: new Uint8Array(3) } });
    expect(r.status).toBe(422);
    expect(r.body.error?.message).toMatch(/input\.pixels: expected 784 bytes/);
  });
});

describe('each app keeps its own context', () => {
  it("a callee in another app writes and reads its own app's context, never the caller's", async () => {
    const beta = await contextApp('beta');
    expect((await deploy(relay, packBundle(beta.manifest, beta.files))).status).toBe(201);
    const files = { 'echo.wasm': wasm('echo') };
    const alpha = await buildManifest(
      {
        brume: 1,
        name: 'alpha',
        version: '1.0.0',
        uses: { beta: '^1.0.0' },
        services: { main: { kind: 'logic', file: 'echo.wasm', rpcs: ['echo', 'relay'] } },
      },
      files,
    );
    expect((await deploy(relay, packBundle(alpha, files))).status).toBe(201);
    const payload = { key: 'shared-name', value: 'written by beta for alpha' };
    const input = { service: 'beta/main', rpc: 'remember', payload };
    const r = await answered('alpha', 'main', { input, rpc: 'relay' });
    expect(r.status, JSON.stringify(r.body.error)).toBe(200);
    // The continuation's request, as alpha's Logic got it: beta's read of its own write.
    expect(r.body.value).toMatchObject({
      ok: true,
      service: 'beta/main',
      value: { found: true, value: 'written by beta for alpha' },
    });
    const read = (app: string) => fetch(`${relay.url}/api/context/${app}/shared-name`);
    expect((await read('alpha')).status).toBe(404);
    // Written with a one-second TTL: there (200), or there and expired (410), never absent.
    expect([200, 410]).toContain((await read('beta')).status);
  });
});

describe('uses, enforced', () => {
  async function variantOfTop3(name: string, uses: Record<string, string> | undefined) {
    const { files: _, ...draft } = top3.manifest;
    const m = await buildManifest({ ...draft, name, uses }, top3.files);
    return deploy(relay, packBundle(m, top3.files));
  }

  it('a Logic calling an app its manifest does not use gets E_FORBIDDEN', async () => {
    const res = await variantOfTop3('rogue', undefined);
    expect(res.status, await res.clone().text()).toBe(201);
    const r = await answered('rogue', 'rank', { input: framed(0) });
    expect(r.status).toBe(403);
    expect(r.body.error?.code).toBe('E_FORBIDDEN');
    expect(r.body.error?.message).toMatch(
      /app "rogue" called "digits\/model", but does not use app "digits"/,
    );
  });

  it('a deploy whose uses no deployed version satisfies is refused, naming it', async () => {
    const newer = await variantOfTop3('ahead', { digits: '^2.0.0' });
    expect(newer.status).toBe(409);
    expect(((await newer.json()) as Answer).error?.message).toMatch(
      /^uses\.digits: digits@1\.0\.0 is current here, outside "\^2\.0\.0"/,
    );
    const absent = await variantOfTop3('lonely', { letters: '^1.0.0' });
    expect(absent.status).toBe(409);
    expect(((await absent.json()) as Answer).error).toMatchObject({
      code: 'E_CONFLICT',
      message: expect.stringMatching(/^uses\.letters: no app "letters" is deployed here/),
    });
  });
});
