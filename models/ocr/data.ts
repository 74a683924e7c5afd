/**
 * The ocr app's labelled images (made by make-data.ts, committed under models/ocr/images/): text
 * lines rendered by Chromium in several fonts, sizes, colours and slight rotations, with their
 * ground truth. Two splits: `tune` (40 images, the only ones looked at while choosing anything)
 * and `heldout` (60 images, used only for the figures in metrics.json and the manifest).
 *
 * Images are stored clean (deflated RGBA, which compresses well) and the noise is added when they
 * are loaded, from each image's own seed: the same bytes every time, without committing
 * incompressible noise.
 *
 * @example const images = loadSplit('heldout');  // [{ width, height, pixels, lines, ... }]
 */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gunzipSync } from 'node:zlib';
import { mulberry32 } from '../digits/mlp';

export const DATA_DIR = join(dirname(fileURLToPath(import.meta.url)), 'images');
export const SPLITS = { tune: { count: 40, seed: 1 }, heldout: { count: 60, seed: 1001 } } as const;
export type Split = keyof typeof SPLITS;

/** A rendered line: its text and its box [x0, y0, x1, y1] (the glyphs' extent, x1/y1 exclusive). */
export interface TruthLine {
  text: string;
  box: [number, number, number, number];
  font: string;
  size: number;
  /** Rotation, degrees. */
  angle: number;
}

/** One image as the labels file lists it. */
export interface ImageLabel {
  seed: number;
  width: number;
  height: number;
  /** Amplitude of the uniform noise added per channel at load time (0…255 scale). */
  noise: number;
  lines: TruthLine[];
}

export interface LabelFile {
  made: string;
  rule: string;
  images: ImageLabel[];
}

export interface Sample extends ImageLabel {
  /** RGBA, width × height × 4 bytes, noise added. */
  pixels: Uint8Array;
}

/** Words the lines are made of (with numbers the generator makes). */
export const WORDS = [
  'edge',
  'runtime',
  'browser',
  'model',
  'tensor',
  'relay',
  'node',
  'cloud',
  'fog',
  'stage',
  'pipeline',
  'quality',
  'latency',
  'accuracy',
  'river',
  'mountain',
  'window',
  'garden',
  'paper',
  'letter',
  'market',
  'station',
  'coffee',
  'orange',
  'yellow',
  'purple',
  'silver',
  'winter',
  'summer',
  'autumn',
  'spring',
  'morning',
  'evening',
  'number',
  'street',
  'avenue',
  'bridge',
  'harbor',
  'island',
  'forest',
  'planet',
  'signal',
  'kernel',
  'vector',
  'matrix',
  'memory',
  'socket',
  'packet',
  'server',
  'client',
  'ticket',
  'invoice',
  'total',
  'amount',
  'price',
  'order',
  'receipt',
  'Monday',
  'Friday',
  'London',
  'Paris',
  'Berlin',
  'Tokyo',
  'Lisbon',
  'Open',
  'Closed',
  'Exit',
  'North',
  'South',
  'Hello',
  'World',
  'Brume',
  'Fast',
  'Quiet',
  'table',
  'chair',
  'lamp',
  'clock',
  'green',
  'blue',
  'red',
  'black',
  'white',
  'light',
];

export function labelPath(split: Split): string {
  return join(DATA_DIR, `${split}.labels.json`);
}

export function pixelPath(split: Split): string {
  return join(DATA_DIR, `${split}.rgba.gz`);
}

/** Adds the image's noise in place: uniform in [−noise, noise] per colour channel, clamped. */
export function addNoise(pixels: Uint8Array, seed: number, noise: number): void {
  const rand = mulberry32(seed ^ 0x5eed);
  for (let i = 0; i < pixels.length; i++) {
    if ((i & 3) === 3) continue;
    const v = pixels[i]! + Math.round((rand() * 2 - 1) * noise);
    pixels[i] = v < 0 ? 0 : v > 255 ? 255 : v;
  }
}

/** The split's labels and images (noise added), in order. */
export function loadSplit(split: Split): Sample[] {
  const labels = JSON.parse(readFileSync(labelPath(split), 'utf8')) as LabelFile;
  const all = gunzipSync(readFileSync(pixelPath(split)));
  let offset = 0;
  return labels.images.map((img) => {
    const size = img.width * img.height * 4;
    if (offset + size > all.length)
      throw new Error(`${pixelPath(split)}: too short for its labels`);
    const pixels = new Uint8Array(all.subarray(offset, offset + size));
    offset += size;
    addNoise(pixels, img.seed, img.noise);
    return { ...img, pixels };
  });
}
