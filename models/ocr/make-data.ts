/**
 * Makes the ocr app's labelled images (models/ocr/images/, see data.ts): for each image a seed
 * decides its size, background, and lines (1–4 words of data.ts's WORDS or numbers), each in one
 * of six fonts (DejaVu and Liberation Sans, Serif, Mono) at 16–34 px, a colour that contrasts with the background, rotated by at
 * most ±3°. Headless Chromium (playwright-core, the project's Chromium, no network) draws them on a
 * canvas; the ground truth box of a line is its rotated glyph extent (measureText's actual
 * bounding box), rounded outwards. Re-running it on another machine may shift glyphs by a pixel
 * (fonts, rasteriser), which is why the output is committed and the tests never re-render.
 *
 *   npx tsx models/ocr/make-data.ts
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { chromium } from 'playwright-core';
import { chromiumArgs, chromiumPath } from '../../playwright.config';
import {
  DATA_DIR,
  type ImageLabel,
  type LabelFile,
  labelPath,
  pixelPath,
  SPLITS,
  type Split,
  WORDS,
} from './data';

const FONTS = [
  'DejaVu Sans',
  'DejaVu Serif',
  'DejaVu Sans Mono',
  'Liberation Sans',
  'Liberation Serif',
  'Liberation Mono',
];
const RULE =
  'per image: 400–720 × 240–480 px, a light or dark background (sometimes a gradient), lines top ' +
  'to bottom of 1–4 words or numbers, DejaVu or Liberation Sans/Serif/Mono (1 in 4 bold) ' +
  'at 16–34 px, rotated within ±3°, a contrasting colour; noise uniform ±0–24 per channel';

// The little of the page's DOM the renderer uses (this folder is type-checked without DOM types).
interface Canvas2D {
  fillStyle: string | Gradient;
  font: string;
  createLinearGradient(x0: number, y0: number, x1: number, y1: number): Gradient;
  fillRect(x: number, y: number, w: number, h: number): void;
  measureText(text: string): {
    width: number;
    actualBoundingBoxAscent: number;
    actualBoundingBoxDescent: number;
    actualBoundingBoxLeft: number;
    actualBoundingBoxRight: number;
  };
  save(): void;
  restore(): void;
  translate(x: number, y: number): void;
  rotate(rad: number): void;
  fillText(text: string, x: number, y: number): void;
  getImageData(x: number, y: number, w: number, h: number): { data: Uint8ClampedArray };
}
interface Gradient {
  addColorStop(at: number, colour: string): void;
}
declare const document: {
  createElement(tag: 'canvas'): {
    width: number;
    height: number;
    getContext(kind: '2d', options: { willReadFrequently: boolean }): Canvas2D | null;
  };
  fonts: { load(font: string): Promise<unknown> };
};

interface Rendered {
  label: ImageLabel;
  rgba: number[];
}

/** Runs in the page: draws one image from its seed and returns its labels and pixels. */
function render(args: { seed: number; words: string[]; fonts: string[] }): Rendered {
  let a = args.seed >>> 0;
  const rand = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (lo: number, hi: number) => lo + Math.floor(rand() * (hi - lo + 1));
  const pick = <T>(xs: T[]) => xs[Math.floor(rand() * xs.length)]!;
  const width = int(400, 720);
  const height = int(240, 480);
  const canvas = document.createElement('canvas');
  canvas.width = width;
  canvas.height = height;
  const ctx = canvas.getContext('2d', { willReadFrequently: true })!;
  const dark = rand() < 0.25;
  const hue = int(0, 359);
  const bg = (l: number) => `hsl(${hue} ${int(0, 40)}% ${l}%)`;
  if (rand() < 0.3) {
    const g = ctx.createLinearGradient(0, 0, width, height);
    g.addColorStop(0, bg(dark ? int(5, 20) : int(85, 98)));
    g.addColorStop(1, bg(dark ? int(5, 20) : int(85, 98)));
    ctx.fillStyle = g;
  } else {
    ctx.fillStyle = bg(dark ? int(5, 20) : int(85, 98));
  }
  ctx.fillRect(0, 0, width, height);
  const token = () => {
    const r = rand();
    if (r < 0.12) return String(int(0, 99999));
    if (r < 0.18) return `${int(1, 999)}.${String(int(0, 99)).padStart(2, '0')}`;
    if (r < 0.21)
      return `2026-${String(int(1, 12)).padStart(2, '0')}-${String(int(1, 28)).padStart(2, '0')}`;
    return pick(args.words);
  };
  const lines: ImageLabel['lines'] = [];
  let y = int(12, 40);
  for (;;) {
    const size = int(16, 34);
    const font = pick(args.fonts);
    const bold = rand() < 0.25;
    ctx.font = `${bold ? 'bold ' : ''}${size}px "${font}"`;
    const margin = 14;
    const words = Array.from({ length: int(1, 4) }, token);
    let text = words.join(' ');
    while (words.length > 1 && ctx.measureText(text).width > width - 2 * margin) {
      words.pop();
      text = words.join(' ');
    }
    const m = ctx.measureText(text);
    const ascent = m.actualBoundingBoxAscent;
    const descent = m.actualBoundingBoxDescent;
    const left = -m.actualBoundingBoxLeft;
    const right = m.actualBoundingBoxRight;
    if (right - left > width - 2 * margin) break;
    const top = y;
    const baseline = top + ascent;
    if (baseline + descent + margin > height) break;
    const x = int(margin, Math.max(margin, Math.floor(width - margin - right)));
    const angle = (rand() * 2 - 1) * 3;
    const light = dark ? int(70, 95) : int(5, 35);
    ctx.fillStyle = `hsl(${int(0, 359)} ${int(0, 80)}% ${light}%)`;
    // Rotate about the line's centre; its box is the rotated glyph rectangle's extent.
    const cx = x + (left + right) / 2;
    const cy = baseline + (descent - ascent) / 2;
    const rad = (angle * Math.PI) / 180;
    ctx.save();
    ctx.translate(cx, cy);
    ctx.rotate(rad);
    ctx.fillText(text, x - cx, baseline - cy);
    ctx.restore();
    const corners = [
      [x + left, baseline - ascent],
      [x + right, baseline - ascent],
      [x + left, baseline + descent],
      [x + right, baseline + descent],
    ].map(([px, py]) => {
      const dx = px! - cx;
      const dy = py! - cy;
      return [
        cx + dx * Math.cos(rad) - dy * Math.sin(rad),
        cy + dx * Math.sin(rad) + dy * Math.cos(rad),
      ];
    });
    const xs = corners.map((c) => c[0]!);
    const ys = corners.map((c) => c[1]!);
    lines.push({
      text,
      box: [
        Math.max(0, Math.floor(Math.min(...xs))),
        Math.max(0, Math.floor(Math.min(...ys))),
        Math.min(width, Math.ceil(Math.max(...xs))),
        Math.min(height, Math.ceil(Math.max(...ys))),
      ],
      font: `${bold ? 'bold ' : ''}${font}`,
      size,
      angle: Math.round(angle * 100) / 100,
    });
    y = Math.ceil(baseline + descent + size * (0.5 + rand()));
  }
  const rgba: number[] = Array.from(ctx.getImageData(0, 0, width, height).data);
  return { label: { seed: args.seed, width, height, noise: int(0, 24), lines }, rgba };
}

async function main(): Promise<void> {
  const browser = await chromium.launch({ executablePath: chromiumPath, args: chromiumArgs });
  try {
    const page = await browser.newPage();
    await page.setContent('<!doctype html><body></body>');
    // tsx keeps function names through a helper `render` calls; the page needs it too.
    await page.evaluate('globalThis.__name = (f) => f');
    // Fonts load on first use; draw each once so every image sees them loaded.
    await page.evaluate(async (fonts) => {
      await Promise.all(fonts.map((f) => document.fonts.load(`20px "${f}"`)));
    }, FONTS);
    mkdirSync(DATA_DIR, { recursive: true });
    for (const split of Object.keys(SPLITS) as Split[]) {
      const { count, seed } = SPLITS[split];
      const images: ImageLabel[] = [];
      const chunks: Uint8Array[] = [];
      for (let i = 0; i < count; i++) {
        const r = await page.evaluate(render, { seed: seed + i, words: WORDS, fonts: FONTS });
        if (r.label.lines.length === 0) throw new Error(`image ${seed + i} has no line`);
        images.push(r.label);
        chunks.push(Uint8Array.from(r.rgba));
      }
      const labels: LabelFile = {
        made: `${new Date().toISOString()} by models/ocr/make-data.ts, ${await browser.version()}`,
        rule: RULE,
        images,
      };
      writeFileSync(labelPath(split), `${JSON.stringify(labels, null, 1)}\n`);
      const all = Buffer.concat(chunks);
      writeFileSync(pixelPath(split), gzipSync(all, { level: 9 }));
      const lineCount = images.reduce((n, im) => n + im.lines.length, 0);
      console.log(`${split}: ${count} images, ${lineCount} lines, ${all.length} bytes of RGBA`);
    }
  } finally {
    await browser.close();
  }
}

main().catch((e: unknown) => {
  console.error(e);
  process.exitCode = 1;
});
