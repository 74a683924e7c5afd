// The join page: boots this tab as a node, shows its status, and runs the digits and OCR demos.
import type { Qos } from '../core/scheduler';
import { configFromUrl, startBrume } from './brume';
import { cachedFiles } from './cache';
import { startOcrDemo } from './ocr-demo';

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;

const { api: brume, debug } = startBrume({
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
// The node's parts, for tests and benchmarks (and this page's status panel below).
window.brumeDebug = debug;

// Keeps this page for an offline start (worker/sw.ts); apps themselves are in the Cache API.
navigator.serviceWorker
  ?.register('/sw.js', { type: 'module' })
  .catch((e: Error) => console.warn(`[brume] no offline start: ${e.message}`));

void debug.fabric.then((fabric) => {
  const pause = $<HTMLButtonElement>('pause');
  pause.addEventListener('click', () => {
    void brume.pause(!fabric.pauseReasons().includes('user')).then(show);
  });
  const show = () => {
    const reasons = fabric.pauseReasons();
    $('node-fabric').textContent = fabric.status;
    $('node-id').textContent = fabric.nodeId.slice(0, 8);
    $('node-id').title = fabric.nodeId;
    $('node-role').textContent = `${fabric.role}${fabric.trusted ? ' (trusted)' : ''}`;
    $('node-parent').textContent = fabric.parent ? `fog ${fabric.parent.slice(0, 8)}` : 'none';
    const peers = fabric.peers();
    $('node-peers').textContent = peers.length
      ? `${peers.length} open: ${peers.map((p) => p.slice(0, 8)).join(', ')}`
      : 'no open channels';
    $('node-served').textContent = `${fabric.served} requests for others`;
    $('node-contributed').textContent = `${fabric.contributedMs.toFixed(0)} ms of compute`;
    $('node-contributing').textContent = reasons.length
      ? `Paused (${reasons.join(', ')}): this tab serves only itself.`
      : `Contributing: up to ${fabric.concurrency} request${fabric.concurrency > 1 ? 's' : ''} at a time for others.`;
    pause.textContent = reasons.includes('user') ? 'Resume contributing' : 'Pause contributing';
    pause.setAttribute('aria-pressed', String(reasons.includes('user')));
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
    const apps = d.apps.map((a) => `${a.name}@${a.version}`).join(', ') || 'none deployed';
    const showApps = async () => {
      $('node-apps').textContent = `${apps} · ${await cachedFiles()} files cached`;
    };
    await showApps();
    showDemos();
    if (d.apps.some((a) => a.name === 'ocr')) startOcrDemo(brume);
    else $('ocr').hidden = true;
    // Fetch, verify and compile the demo now, so the first drawing is answered at full speed.
    if (d.apps.some((a) => a.name === 'digits')) {
      debug.runtime
        .warm('digits')
        .then(showApps)
        .then(() => $('node-state').setAttribute('data-warm', 'digits'))
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

/** A button per demo input of each deployed app; the answer shows where it ran. */
function showDemos(): void {
  const list = $('demo-list');
  const demos = debug.runtime
    .apps()
    .flatMap((m) => (m.demos ?? []).map((d) => ({ app: m.name, ...d })));
  if (demos.length === 0) return;
  list.replaceChildren(
    ...demos.map((d) => {
      const row = document.createElement('p');
      const button = document.createElement('button');
      button.type = 'button';
      button.textContent = `${d.app}: ${d.title}`;
      const out = document.createElement('output');
      out.className = 'demo-output';
      button.addEventListener('click', async () => {
        out.textContent = 'running…';
        out.classList.remove('error');
        try {
          const r = await brume.invoke(d.app, d.service, d.input, {}, d.rpc ? { rpc: d.rpc } : {});
          const where = r.via === 'local' ? 'this tab' : `${r.node.slice(0, 8)} via ${r.via}`;
          out.textContent = ` ${JSON.stringify(r.value).slice(0, 200)} · ${where} · ${r.ms.toFixed(1)} ms`;
        } catch (e) {
          out.textContent = ` ${(e as Error).message}`;
          out.classList.add('error');
        }
      });
      row.append(button, out);
      return row;
    }),
  );
}
