// The join page: boots this tab as a node, shows its status, and runs the digits demo.
import type { Qos } from '../core/scheduler';
import { configFromUrl, startBrume } from './brume';

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;

const brume = startBrume({
  ...configFromUrl(location.search),
  onProgress: ({ sha256, received, total }) => {
    const of = total ? ` of ${(total / 2 ** 20).toFixed(1)} MiB` : '';
    $('node-download').textContent =
      received >= total && total
        ? 'done'
        : `${sha256.slice(0, 8)}: ${(received / 2 ** 20).toFixed(1)} MiB${of}`;
  },
});
window.brume = brume;

// Keeps this page for an offline start (worker/sw.ts); apps themselves are in the Cache API.
navigator.serviceWorker
  ?.register('/sw.js', { type: 'module' })
  .catch((e: Error) => console.warn(`[brume] no offline start: ${e.message}`));

void brume.fabric.then((fabric) => {
  const show = () => {
    $('node-fabric').textContent = fabric.status;
    $('node-id').textContent = fabric.nodeId.slice(0, 8);
    $('node-role').textContent = `${fabric.role}${fabric.trusted ? ' (trusted)' : ''}`;
    $('node-served').textContent = `${fabric.served} requests for others`;
  };
  fabric.onStatus(show);
  show();
  setInterval(show, 1000);
});

brume.ready
  .then(async () => {
    const d = await brume.describe();
    $('node-state').textContent = 'ready';
    $('node-backends').textContent = d.backends.map((b) => `${b.name} (${b.detail})`).join(', ');
    $('node-apps').textContent =
      d.apps.map((a) => `${a.name}@${a.version}`).join(', ') || 'none deployed';
    // Fetch, verify and compile the demo now, so the first drawing is answered at full speed.
    if (d.apps.some((a) => a.name === 'digits')) {
      brume.node
        .warm('digits')
        .catch((e: Error) => console.warn(`[brume] warming digits: ${e.message}`));
    }
  })
  .catch((e: Error) => {
    $('node-state').textContent = `failed: ${e.message}`;
    $('node-state').classList.add('error');
  });

const pad = $<HTMLCanvasElement>('pad');
const ctx = pad.getContext('2d', { willReadFrequently: true })!;
let drawing = false;
let last: [number, number] | undefined;

function point(e: PointerEvent): [number, number] {
  const r = pad.getBoundingClientRect();
  return [
    ((e.clientX - r.left) * pad.width) / r.width,
    ((e.clientY - r.top) * pad.height) / r.height,
  ];
}
pad.addEventListener('pointerdown', (e) => {
  drawing = true;
  last = point(e);
  pad.setPointerCapture(e.pointerId);
});
pad.addEventListener('pointermove', (e) => {
  if (!drawing || !last) return;
  const p = point(e);
  ctx.strokeStyle = '#fff';
  ctx.lineWidth = 18;
  ctx.lineCap = 'round';
  ctx.beginPath();
  ctx.moveTo(...last);
  ctx.lineTo(...p);
  ctx.stroke();
  last = p;
});
pad.addEventListener('pointerup', () => {
  drawing = false;
  void classify();
});
$('clear').addEventListener('click', () => {
  ctx.clearRect(0, 0, pad.width, pad.height);
  $('digit').textContent = '?';
  $('detail').textContent = 'Draw a digit from 0 to 9.';
});

async function classify(): Promise<void> {
  const img = ctx.getImageData(0, 0, pad.width, pad.height);
  const pixels = new Uint8Array(pad.width * pad.height);
  for (let i = 0; i < pixels.length; i++) pixels[i] = img.data[i * 4 + 3]!;
  const qos: Qos = {};
  const acc = $<HTMLSelectElement>('accuracy').value;
  const lat = $<HTMLSelectElement>('latency').value;
  if (acc) qos.accuracy = Number(acc);
  if (lat) qos.latencyMs = Number(lat);
  const detail = $('detail');
  detail.classList.remove('error');
  try {
    const r = await brume.invoke(
      'digits',
      'classify',
      { width: pad.width, height: pad.height, pixels },
      qos,
    );
    const v = r.value as { digit: number; confidence: number; variant: string };
    const model = r.trace.find((t) => t.kind === 'model');
    $('digit').textContent = String(v.digit);
    const where = r.via === 'local' ? 'this tab' : `${r.node.slice(0, 8)} via ${r.via}`;
    detail.textContent = `confidence ${(v.confidence * 100).toFixed(1)}% · variant ${v.variant} on ${model?.backend ?? '?'} · ${where} · ${r.ms.toFixed(1)} ms`;
  } catch (e) {
    detail.textContent = (e as Error).message;
    detail.classList.add('error');
  }
}
