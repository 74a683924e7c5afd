// The ocr app's Logics through the real wasm in the real runtime (worker threads), and the whole
// read pipeline with the real PP-OCRv4 models (onnxruntime-node) on a held-out rendered image.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BrumeError, InputError } from '../../core/errors';
import { loadSplit } from '../../models/ocr/data';
import { DEFAULT_SIDE, QUALITY_LEVELS } from '../../models/ocr/levels';
import { DRAFT, type Line, type Ocr, openOcr, readPipeline } from '../../models/ocr/pipeline';
import { accuracyOf, scorePage } from '../../models/ocr/score';
import { OCR_KEY_COUNT, readOcrKeys } from '../../scripts/ocr-keys';

const root = fileURLToPath(new URL('../../', import.meta.url));
let ocr: Ocr;

beforeAll(async () => {
  ocr = await openOcr();
}, 180_000);

afterAll(async () => {
  await ocr?.close();
});

type Rpc = 'prepare' | 'boxes' | 'recognize' | 'join';
const serviceOf: Record<Rpc, string> = {
  prepare: 'pre',
  boxes: 'post',
  recognize: 'post',
  join: 'post',
};

async function rpc(name: Rpc, input: unknown): Promise<Record<string, unknown>> {
  const r = await ocr.runtime.call('ocr', serviceOf[name], input, {}, { rpc: name });
  return r.value as Record<string, unknown>;
}

async function refusal(name: Rpc, input: unknown): Promise<BrumeError> {
  try {
    await rpc(name, input);
  } catch (e) {
    expect(e).toBeInstanceOf(BrumeError);
    return e as BrumeError;
  }
  throw new Error(`expected ${name} to refuse`);
}

interface WireTensor {
  type: string;
  dims: number[];
  data: Uint8Array;
}

const f32 = (t: WireTensor) => new Float32Array(t.data.slice().buffer, 0, t.data.byteLength / 4);
const tensor = (dims: number[], data: Float32Array): WireTensor => ({
  type: 'float32',
  dims,
  data: new Uint8Array(data.buffer),
});

function solid(width: number, height: number, rgb: [number, number, number]): Uint8Array {
  const px = new Uint8Array(width * height * 4);
  for (let i = 0; i < width * height; i++) px.set([...rgb, 255], i * 4);
  return px;
}

describe('ocr app files', () => {
  it('generates the character list the recognizer has: 6623 keys, blank before, space after', () => {
    const keys = readOcrKeys(root);
    expect(keys).toHaveLength(OCR_KEY_COUNT);
    const generated = readFileSync(`${root}logics/ocr/common/keys.ts`, 'utf8');
    expect(generated).toContain(`KEY_COUNT: i32 = ${OCR_KEY_COUNT}`);
    expect(generated).toContain(JSON.stringify(keys.slice(0, 50).join('\n')).slice(1, -1));
  });

  it('runs stages the manifest has, levels the Logic accepts', () => {
    const draft = JSON.parse(readFileSync(DRAFT, 'utf8')) as {
      services: Record<string, { kind: string; rpcs?: string[] }>;
    };
    const p = readPipeline();
    for (const [name, s] of Object.entries(p.stages)) {
      const svc = draft.services[s.service];
      expect(svc, name).toBeDefined();
      if (s.rpc && svc!.kind === 'logic') expect(svc!.rpcs, name).toContain(s.rpc);
    }
    expect(p.output in p.stages).toBe(true);
    const levels = p.quality.levels as { value: number; accuracy: number; latencyMs: number }[];
    expect(levels.map((l) => l.value)).toEqual([...QUALITY_LEVELS]);
  });
});

describe('prepare', () => {
  it('scales the longer side to `side`, pads to 32, normalises in BGR planes', async () => {
    const width = 445;
    const height = 304;
    const out = await rpc('prepare', {
      width,
      height,
      pixels: solid(width, height, [255, 0, 0]),
      side: 320,
    });
    const x = (out.inputs as { x: WireTensor }).x;
    expect(out).toMatchObject({ width: 320, height: 219, padW: 320, padH: 224 });
    expect(x.dims).toEqual([1, 3, 224, 320]);
    const v = f32(x);
    const plane = 224 * 320;
    // Pure red: plane 0 is blue (ImageNet's first mean/std), plane 2 red (the third).
    expect(v[0]).toBeCloseTo((0 - 0.485) / 0.229, 4);
    expect(v[plane]).toBeCloseTo((0 - 0.456) / 0.224, 4);
    expect(v[2 * plane]).toBeCloseTo((1 - 0.406) / 0.225, 4);
    // Row 219 and below are padding.
    expect(v[219 * 320]).toBe(0);
    expect(v[218 * 320 + 5]).not.toBe(0);
  });

  it('refuses bad images, naming the field', async () => {
    const ok = { width: 8, height: 4, pixels: new Uint8Array(128), side: 320 };
    const cases: [unknown, RegExp][] = [
      [{ ...ok, width: undefined }, /^input\.width: missing/],
      [{ ...ok, width: '8' }, /^input\.width: expected int, got string/],
      [{ ...ok, height: 0 }, /^input\.height: must be between 1 and 4096, got 0/],
      [{ ...ok, width: 5000 }, /^input\.width: must be between 1 and 4096/],
      [
        { ...ok, width: 4096, height: 4096 },
        /^input\.width: width × height must be at most 2097152/,
      ],
      [
        { ...ok, pixels: new Uint8Array(127) },
        /^input\.pixels: expected width × height × 4 = 128 bytes/,
      ],
      [{ ...ok, pixels: 'abc' }, /^input\.pixels: expected bin, got string/],
      [{ ...ok, side: 500 }, /^input\.side: must be one of 160, 320, 480, 640, 960, got 500/],
      [[1, 2], /^input: expected map, got array/],
    ];
    for (const [input, message] of cases) {
      const e = await refusal('prepare', input);
      expect(e, String(message)).toBeInstanceOf(InputError);
      expect(e.message).toMatch(message);
    }
  });
});

describe('boxes', () => {
  // A 320 × 160 image at side 320: the map is the image, pixel for pixel.
  const width = 320;
  const height = 160;
  const image = { width, height, pixels: solid(width, height, [200, 200, 200]), side: 320 };
  const map = (rects: [number, number, number, number, number][]) => {
    const m = new Float32Array(width * height);
    for (const [x0, y0, x1, y1, p] of rects) {
      for (let y = y0; y < y1; y++) for (let x = x0; x < x1; x++) m[y * width + x] = p;
    }
    return { outputs: { 'sigmoid_0.tmp_0': tensor([1, 1, height, width], m) } };
  };

  it('keeps confident regions, unclipped by area × 1.5 / perimeter, and crops lines of height 48', async () => {
    const out = await rpc('boxes', {
      input: image,
      detect: map([
        [40, 20, 140, 30, 0.9], // 100 × 10: d = 1000 · 1.5 / 220 = 6.82
        [10, 100, 60, 110, 0.5], // mean 0.5 < 0.6: dropped
        [200, 100, 202, 150, 0.9], // 2 px wide < min size 3: dropped
        [250, 120, 290, 140, 0.8], // 40 × 20: d = 800 · 1.5 / 120 = 10
      ]),
    });
    expect(out.boxes).toEqual([
      [33, 13, 147, 37],
      [240, 110, 300, 150],
    ]);
    expect(out.dropped).toBe(0);
    const lines = out.lines as { inputs: { x: WireTensor }; box: number[] }[];
    expect(lines.map((l) => l.box)).toEqual(out.boxes);
    // 114 × 24 → 48 high, 228 wide, padded to 320; 60 × 40 → 72 wide, padded to 320.
    expect(lines.map((l) => l.inputs.x.dims)).toEqual([
      [1, 3, 48, 320],
      [1, 3, 48, 320],
    ]);
    const v = f32(lines[0]!.inputs.x);
    expect(v[0]).toBeCloseTo((200 / 255 - 0.5) / 0.5, 4);
    expect(v[227]).toBeCloseTo((200 / 255 - 0.5) / 0.5, 4);
    expect(v[228]).toBe(0);
  });

  it('reads at most 24 lines, counting those it leaves out', async () => {
    const rects: [number, number, number, number, number][] = [];
    for (let row = 0; row < 5; row++) {
      for (let col = 0; col < 5; col++) {
        rects.push([10 + col * 60, 10 + row * 30, 40 + col * 60, 18 + row * 30, 0.9]);
      }
    }
    const out = await rpc('boxes', { input: image, detect: map(rects) });
    expect(out.lines).toHaveLength(24);
    expect(out.dropped).toBe(1);
    // Raster order of their tops: the last of the bottom row is the one left out.
    expect((out.boxes as number[][]).at(-1)).toEqual([185, 125, 225, 143]);
  });

  it('refuses a map that does not fit the image, naming the field', async () => {
    const wrong = {
      outputs: { 'sigmoid_0.tmp_0': tensor([1, 1, 32, 32], new Float32Array(1024)) },
    };
    const e = await refusal('boxes', { input: image, detect: wrong });
    expect(e.message).toMatch(
      /^input\.detect\.outputs\.sigmoid_0\.tmp_0: expected float32 \[1, 1, 160, 320\] for this image at side 320, got float32 \[1, 1, 32, 32\]/,
    );
    expect((await refusal('boxes', { input: image })).message).toMatch(/^input\.detect: missing/);
    expect(
      (await refusal('boxes', { input: { ...image, side: 7 }, detect: wrong })).message,
    ).toMatch(/^input\.input\.side: must be one of/);
  });
});

describe('recognize and join', () => {
  it('refuses a line that is not [1, 3, 48, W] or a bad box', async () => {
    const x = tensor([1, 3, 48, 2000], new Float32Array(3 * 48 * 2000));
    expect((await refusal('recognize', { inputs: { x }, box: [0, 0, 4, 4] })).message).toMatch(
      /^input\.inputs\.x: expected float32 \[1, 3, 48, W\] with 16 ≤ W ≤ 960, got float32 \[1, 3, 48, 2000\]/,
    );
    const ok = tensor([1, 3, 48, 320], new Float32Array(3 * 48 * 320));
    expect((await refusal('recognize', { inputs: { x: ok }, box: [5, 0, 4, 4] })).message).toMatch(
      /^input\.box: expected x0 < x1 and y0 < y1/,
    );
  });

  it('orders lines top to bottom then left to right, leaving out empty and unsure ones', async () => {
    const boxes = [
      [300, 52, 400, 80], // right of the second row
      [10, 10, 200, 40], // first row
      [10, 50, 120, 78], // second row, left (top 2 px lower than its neighbour)
      [10, 100, 100, 120], // empty
      [10, 130, 100, 150], // unsure
    ];
    const out = await rpc('join', {
      boxes: { boxes },
      recognize: [
        { text: 'right', confidence: 0.9 },
        { text: 'first', confidence: 0.99 },
        { text: ' left ', confidence: 0.8 },
        { text: '  ', confidence: 0.9 },
        { text: 'maybe', confidence: 0.3 },
      ],
    });
    expect(out.lines).toEqual([
      { text: 'first', confidence: 0.99, box: [10, 10, 200, 40] },
      { text: 'left', confidence: 0.8, box: [10, 50, 120, 78] },
      { text: 'right', confidence: 0.9, box: [300, 52, 400, 80] },
    ]);
    // The form the read pipeline passes: recognize's list alone, each result with its box.
    const alone = await rpc(
      'join',
      boxes.map((box, i) => ({
        text: ['right', 'first', ' left ', '  ', 'maybe'][i],
        confidence: [0.9, 0.99, 0.8, 0.9, 0.3][i],
        box,
      })),
    );
    expect(alone).toEqual(out);
    expect(await rpc('join', [])).toEqual({ lines: [] });
    expect((await refusal('join', [{ text: 'x', confidence: 0.9 }])).message).toMatch(
      /^input\[0\]\.box: missing/,
    );
    const e = await refusal('join', { boxes: { boxes }, recognize: [] });
    expect(e.message).toMatch(/^input\.recognize: expected one result per box \(5\), got 0/);
    const bad = await refusal('join', {
      boxes: { boxes: [[0, 0, 5, 5]] },
      recognize: [{ text: 'x', confidence: 3 }],
    });
    expect(bad.message).toMatch(/^input\.recognize\[0\]\.confidence: must be between 0 and 1/);
  });
});

describe('hostile input', () => {
  it('every rpc answers or refuses with InputError, never faults, whatever it is sent', async () => {
    const num = fc.oneof(fc.integer({ min: -10, max: 5000 }), fc.double(), fc.constant(320));
    const bytes = fc.uint8Array({ maxLength: 256 });
    const tensorish = fc.record({
      type: fc.constantFrom('float32', 'int64', 'uint8', 'x'),
      dims: fc.array(fc.integer({ min: -2, max: 64 }), { maxLength: 5 }),
      data: bytes,
    });
    const image = fc.record(
      { width: num, height: num, pixels: fc.oneof(bytes, fc.string()), side: num },
      { requiredKeys: [] },
    );
    const value = fc.oneof(
      image,
      fc.anything({ maxDepth: 2 }),
      fc.record({
        input: image,
        detect: fc.record({ outputs: fc.dictionary(fc.string(), tensorish) }),
      }),
      fc.record({ inputs: fc.record({ x: tensorish }), box: fc.array(num, { maxLength: 5 }) }),
      fc.array(
        fc.record({ text: fc.string(), confidence: num, box: fc.array(num, { maxLength: 5 }) }),
        {
          maxLength: 4,
        },
      ),
    );
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom<Rpc>('prepare', 'boxes', 'recognize', 'join'),
        value,
        async (name, input) => {
          try {
            await rpc(name, input);
          } catch (e) {
            expect(e, `${name}: ${(e as Error).message}`).toBeInstanceOf(InputError);
          }
        },
      ),
      { numRuns: 300, seed: 13 },
    );
  }, 120_000);
});

describe('read pipeline, end to end', () => {
  it(`reads a held-out rendered image at side ${DEFAULT_SIDE}`, async () => {
    const image = loadSplit('heldout')[0]!;
    const r = await ocr.read(image, DEFAULT_SIDE);
    const score = scorePage(image.lines, r.lines);
    expect(score.found).toBe(image.lines.length);
    expect(score.extra).toBe(0);
    expect(accuracyOf(score)).toBeGreaterThan(0.95);
    expect(r.lines.map((l: Line) => l.text)).toEqual(image.lines.map((l) => l.text));
    for (const l of r.lines) expect(l.confidence).toBeGreaterThan(0.5);
  }, 60_000);

  it('join decodes the rec model answers as recognize does (the other pipeline shape)', async () => {
    const image = loadSplit('heldout')[2]!;
    const input = { width: image.width, height: image.height, pixels: image.pixels, side: 480 };
    const call = async (service: string, value: unknown) =>
      (await ocr.runtime.call('ocr', service, value, {})).value;
    const detect = await call('det', await rpc('prepare', input));
    const boxes = (await rpc('boxes', { input, detect })) as {
      lines: { inputs: unknown; box: number[] }[];
    };
    expect(boxes.lines.length).toBeGreaterThan(2);
    const raw = await Promise.all(boxes.lines.map((l) => call('rec', { inputs: l.inputs })));
    const viaModel = await rpc('join', { boxes, recognize: raw });
    const viaLogic = await rpc(
      'join',
      await Promise.all(boxes.lines.map((l) => rpc('recognize', l))),
    );
    expect(viaModel).toEqual(viaLogic);
    expect((viaModel.lines as Line[]).length).toBeGreaterThan(2);
  }, 60_000);
});
