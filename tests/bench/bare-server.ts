// The baseline for the relay's HTTP path: what a user would write instead of Brume — a bare
// `node:http` server with one onnxruntime-node session on models/digits/large.onnx, framing the
// digit as the digits Logic does (logics/digits/classify.ts) and answering in MessagePack.
// Run as its own process so it has its own event loop, like the relay:
//   node --import tsx tests/bench/bare-server.ts   → prints "listening on http://127.0.0.1:PORT"
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import { decode, encode } from '@msgpack/msgpack';
import * as ort from 'onnxruntime-node';

const SIDE = 28;
const BOX = 20;
const CENTRE = 14;

/** MNIST's framing, as the digits Logic does it; null when there is no ink. */
function frameDigit(pixels: Uint8Array, width: number, height: number): Float32Array | null {
  let x0 = width;
  let x1 = -1;
  let y0 = height;
  let y1 = -1;
  for (let y = 0; y < height; y++) {
    const row = y * width;
    let first = -1;
    let last = -1;
    for (let x = 0; x < width; x++) {
      if (pixels[row + x]! > 0) {
        if (first < 0) first = x;
        last = x;
      }
    }
    if (first >= 0) {
      if (first < x0) x0 = first;
      if (last > x1) x1 = last;
      if (y0 === height) y0 = y;
      y1 = y;
    }
  }
  if (x1 < 0) return null;
  const bw = x1 - x0 + 1;
  const bh = y1 - y0 + 1;
  const scale = BOX / Math.max(bw, bh);
  const clamp = (v: number, lo: number, hi: number) => (v < lo ? lo : v > hi ? hi : v);
  const tw = clamp(Math.round(bw * scale), 1, BOX);
  const th = clamp(Math.round(bh * scale), 1, BOX);
  const sx = bw / tw;
  const sy = bh / th;
  const rows = new Float64Array(bh * tw);
  for (let y = 0; y < bh; y++) {
    const src = (y0 + y) * width + x0;
    for (let tx = 0; tx < tw; tx++) {
      const a = tx * sx;
      const b = a + sx;
      let sum = 0;
      const last = Math.min(Math.ceil(b), bw);
      for (let i = Math.floor(a); i < last; i++)
        sum += (Math.min(b, i + 1) - Math.max(a, i)) * pixels[src + i]!;
      rows[y * tw + tx] = sum;
    }
  }
  const box = new Float64Array(th * tw);
  let peak = 0;
  for (let ty = 0; ty < th; ty++) {
    const a = ty * sy;
    const b = a + sy;
    const last = Math.min(Math.ceil(b), bh);
    for (let tx = 0; tx < tw; tx++) {
      let sum = 0;
      for (let j = Math.floor(a); j < last; j++)
        sum += (Math.min(b, j + 1) - Math.max(a, j)) * rows[j * tw + tx]!;
      const v = sum / (sx * sy * 255);
      box[ty * tw + tx] = v;
      if (v > peak) peak = v;
    }
  }
  let mass = 0;
  let mx = 0;
  let my = 0;
  for (let ty = 0; ty < th; ty++) {
    for (let tx = 0; tx < tw; tx++) {
      const v = box[ty * tw + tx]!;
      mass += v;
      mx += v * tx;
      my += v * ty;
    }
  }
  const ox = clamp(Math.round(CENTRE - mx / mass), 0, SIDE - tw);
  const oy = clamp(Math.round(CENTRE - my / mass), 0, SIDE - th);
  const out = new Float32Array(SIDE * SIDE);
  for (let ty = 0; ty < th; ty++)
    for (let tx = 0; tx < tw; tx++)
      out[(oy + ty) * SIDE + ox + tx] = Math.min(1, box[ty * tw + tx]! / peak);
  return out;
}

// The relay's cloud node gives each session this many threads; the baseline gets the same.
const threads = Math.max(1, Math.min(4, os.availableParallelism() - 1));
const session = await ort.InferenceSession.create(
  new URL('../../models/digits/large.onnx', import.meta.url).pathname,
  { intraOpNumThreads: threads, interOpNumThreads: 1 },
);

const server = createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', async () => {
    try {
      const { input } = decode(Buffer.concat(chunks)) as {
        input: { width: number; height: number; pixels: Uint8Array };
      };
      const image = frameDigit(input.pixels, input.width, input.height);
      if (!image) throw new Error('no ink');
      const out = await session.run({ pixels: new ort.Tensor('float32', image, [1, 784]) });
      const probs = out.probs!.data as Float32Array;
      let best = 0;
      for (let i = 1; i < probs.length; i++) if (probs[i]! > probs[best]!) best = i;
      const body = encode({ value: { digit: best, confidence: probs[best], variant: 'large' } });
      res.writeHead(200, { 'content-type': 'application/msgpack' }).end(body);
    } catch (e) {
      res.writeHead(400, { 'content-type': 'text/plain' }).end((e as Error).message);
    }
  });
});
server.listen(0, '127.0.0.1', () => {
  const { port } = server.address() as AddressInfo;
  console.log(`listening on http://127.0.0.1:${port}`);
});
