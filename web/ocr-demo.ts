// The join page's OCR demo: pick or drop an image (or draw the built-in sample), read it with
// `brume.invoke('ocr', 'read', { width, height, pixels }, qos)`, draw the boxes over it, list the
// text, and say which node ran each stage (from the answer's trace).
import type { BrumeApi } from '../core/page-api';
import type { Qos } from '../core/scheduler';

/** Images larger than this (pixels, or pixels a side) are scaled down before reading: the Logic's bounds. */
const MAX_PIXELS = 2_097_152;
const MAX_SIDE = 4096;

interface OcrLine {
  text: string;
  confidence: number;
  box: [number, number, number, number];
}

interface OcrAnswer {
  lines: OcrLine[];
  quality?: number;
  ms?: number;
}

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;

/** Wires the demo's controls; `brume` answers the calls. */
export function startOcrDemo(brume: BrumeApi): void {
  const canvas = $<HTMLCanvasElement>('ocr-canvas');
  const ctx = canvas.getContext('2d', { willReadFrequently: true })!;
  let image: ImageData | undefined;

  const load = async (blob: Blob) => {
    const bitmap = await createImageBitmap(blob);
    const scale = Math.min(
      1,
      Math.sqrt(MAX_PIXELS / (bitmap.width * bitmap.height)),
      MAX_SIDE / Math.max(bitmap.width, bitmap.height),
    );
    canvas.width = Math.max(1, Math.floor(bitmap.width * scale));
    canvas.height = Math.max(1, Math.floor(bitmap.height * scale));
    ctx.drawImage(bitmap, 0, 0, canvas.width, canvas.height);
    bitmap.close();
    image = ctx.getImageData(0, 0, canvas.width, canvas.height);
    await read();
  };

  const read = async () => {
    if (!image) return;
    ctx.putImageData(image, 0, 0);
    const out = $('ocr-result');
    const stages = $('ocr-stages');
    out.classList.remove('error');
    out.textContent = 'reading…';
    stages.replaceChildren();
    const qos: Qos = {};
    const acc = $<HTMLSelectElement>('ocr-accuracy').value;
    if (acc) qos.accuracy = Number(acc);
    try {
      const input = {
        width: image.width,
        height: image.height,
        pixels: new Uint8Array(image.data.buffer.slice(0)),
      };
      const r = await brume.invoke('ocr', 'read', input, qos);
      const v = r.value as OcrAnswer;
      drawBoxes(ctx, v.lines);
      out.replaceChildren(
        ...v.lines.map((l) => {
          const li = document.createElement('li');
          li.textContent = `${l.text}  (${(l.confidence * 100).toFixed(0)}%)`;
          return li;
        }),
      );
      if (v.lines.length === 0) out.textContent = 'no text found';
      const where = r.via === 'local' ? 'this tab' : `${r.node.slice(0, 8)} via ${r.via}`;
      $('ocr-summary').textContent =
        `${v.lines.length} lines · detector side ${v.quality ?? '?'} · answered by ${where} · ${r.ms.toFixed(0)} ms`;
      stages.replaceChildren(
        ...r.trace.map((t) => {
          const e = t as typeof t & { node?: string; stage?: string };
          const li = document.createElement('li');
          li.textContent = `${e.stage ?? e.service}: ${e.service}/${e.rpc} (${t.kind}) on ${
            e.node ? e.node.slice(0, 8) : 'the answering node'
          } · ${t.ms.toFixed(1)} ms`;
          return li;
        }),
      );
    } catch (e) {
      out.textContent = (e as Error).message;
      out.classList.add('error');
    }
  };

  $<HTMLInputElement>('ocr-file').addEventListener('change', (e) => {
    const file = (e.target as HTMLInputElement).files?.[0];
    if (file) void load(file);
  });
  canvas.addEventListener('dragover', (e) => e.preventDefault());
  canvas.addEventListener('drop', (e) => {
    e.preventDefault();
    const file = e.dataTransfer?.files[0];
    if (file) void load(file);
  });
  $('ocr-sample').addEventListener('click', () => {
    drawSample(canvas, ctx);
    image = ctx.getImageData(0, 0, canvas.width, canvas.height);
    void read();
  });
  $('ocr-accuracy').addEventListener('change', () => void read());
}

/** The built-in sample: a few lines in different fonts, sizes and colours, one slightly turned. */
export function drawSample(canvas: HTMLCanvasElement, ctx: CanvasRenderingContext2D): void {
  canvas.width = 560;
  canvas.height = 300;
  ctx.fillStyle = '#f6f1e7';
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  const lines: [string, string, string, number][] = [
    ['Brume reads text', 'bold 34px sans-serif', '#1d2330', 0],
    ['Receipt 2026-12-02', '26px serif', '#7a1f1f', 0],
    ['coffee 3.50 orange 12.75', '24px monospace', '#0b4f6c', -0.03],
    ['edge fog cloud', '28px sans-serif', '#2d6a4f', 0.02],
  ];
  lines.forEach(([text, font, colour, angle], i) => {
    ctx.save();
    ctx.font = font;
    ctx.fillStyle = colour;
    ctx.translate(40, 60 + i * 62);
    ctx.rotate(angle);
    ctx.fillText(text, 0, 0);
    ctx.restore();
  });
}

function drawBoxes(ctx: CanvasRenderingContext2D, lines: OcrLine[]): void {
  ctx.save();
  ctx.lineWidth = 2;
  ctx.strokeStyle = '#e63946';
  for (const { box } of lines) ctx.strokeRect(box[0], box[1], box[2] - box[0], box[3] - box[1]);
  ctx.restore();
}
