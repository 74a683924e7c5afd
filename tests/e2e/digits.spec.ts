import { chromium } from '@playwright/test';
import { loadDigits } from '../../models/digits/data';
import { chromiumArgs, chromiumPath } from '../../playwright.config';
import { drawDigit } from '../apps';
import { expect, openNode, test } from './fixtures';

// All 2,000 held-out digits (never seen in training; the manifest's figure is measured on them
// at 28×28), drawn 2.5× larger and off-centre on a 100×90 canvas, in the page.
const frame = { width: 100, height: 90, scale: 2.5, dx: 24, dy: 12 };
function heldout() {
  const { heldout } = loadDigits();
  return {
    x: Buffer.from(
      new Uint8Array(heldout.x.buffer, heldout.x.byteOffset, heldout.x.byteLength),
    ).toString('base64'),
    labels: Array.from(heldout.y),
    draw: drawDigit.toString(),
  };
}

async function manifestAccuracy(relayUrl: string, variant: string): Promise<number> {
  const m = (await (await fetch(`${relayUrl}/api/apps/digits`)).json()) as {
    services: { model: { variants: Record<string, { accuracy: number }> } };
  };
  return m.services.model.variants[variant]!.accuracy;
}

test('window.brume classifies held-out digits at the manifest accuracy', async ({
  page,
  relay,
}) => {
  await openNode(page, relay.url);
  const data = heldout();
  for (const variant of ['small', 'large']) {
    const result = await page.evaluate(
      async ({ data, variant, frame }) => {
        const bytes = Uint8Array.from(atob(data.x), (c) => c.charCodeAt(0));
        const x = new Float32Array(bytes.buffer);
        const draw = new Function(`return ${data.draw}`)() as (
          x: Float32Array,
          i: number,
          f: typeof frame,
        ) => Uint8Array;
        let right = 0;
        const seen = new Set<string>();
        for (let i = 0; i < data.labels.length; i++) {
          const input = { width: frame.width, height: frame.height, pixels: draw(x, i, frame) };
          const qos = variant === 'large' ? { accuracy: 0.96 } : {};
          const r = await window.brume.invoke('digits', 'classify', input, qos, {
            pin: variant === 'small' ? { model: 'small' } : {},
          });
          const v = r.value as { digit: number; variant: string };
          seen.add(v.variant);
          if (v.digit === data.labels[i]) right++;
        }
        return { accuracy: right / data.labels.length, variants: [...seen] };
      },
      { data, variant, frame },
    );
    const manifest = await manifestAccuracy(relay.url, variant);
    console.log(
      `digits/${variant}: ${result.accuracy} on 2,000 held-out digits drawn at 100×90 (manifest ${manifest})`,
    );
    expect(result.variants).toEqual([variant]);
    // 1 point of tolerance: reframing a scaled drawing is not exactly MNIST's own framing.
    expect(result.accuracy).toBeGreaterThanOrEqual(
      (await manifestAccuracy(relay.url, variant)) - 0.01,
    );
  }
});

test('a person draws a digit on the pad and sees the answer', async ({ page, relay }) => {
  await openNode(page, relay.url);
  const pad = page.locator('#pad');
  const box = (await pad.boundingBox())!;
  // A "1": one vertical stroke.
  await page.mouse.move(box.x + 140, box.y + 50);
  await page.mouse.down();
  for (let y = 50; y <= 230; y += 10) await page.mouse.move(box.x + 142, box.y + y);
  await page.mouse.up();
  await expect(page.locator('#digit')).toHaveText('1');
  await expect(page.locator('#detail')).toContainText(
    /variant (small|large) on wasm · this tab · [\d.]+ ms/,
  );
  await expect(page.locator('#node-backends')).toContainText('wasm');
});

test('WebGPU (SwiftShader) runs the models and agrees with WASM', async ({ relay }) => {
  const browser = await chromium.launch({
    executablePath: chromiumPath,
    args: [...chromiumArgs, '--enable-unsafe-webgpu'],
  });
  try {
    const page = await browser.newPage();
    await openNode(page, relay.url);
    await expect(page.locator('#node-backends')).toContainText('webgpu');
    const data = heldout();
    const out = await page.evaluate(
      async ({ data, frame }) => {
        const bytes = Uint8Array.from(atob(data.x), (c) => c.charCodeAt(0));
        const x = new Float32Array(bytes.buffer);
        const rows = [];
        const draw = new Function(`return ${data.draw}`)();
        for (let i = 0; i < 20; i++) {
          const input = { width: frame.width, height: frame.height, pixels: draw(x, i, frame) };
          const probs = [];
          const backends = [];
          for (const backend of ['webgpu', 'wasm'] as const) {
            const pre = (
              await window.brume.invoke('digits', 'classify', input, {}, { rpc: 'preprocess' })
            ).value as { pixels: Uint8Array };
            const r = await window.brume.invoke(
              'digits',
              'model',
              { inputs: { pixels: { type: 'float32', dims: [1, 784], data: pre.pixels } } },
              {},
              { rpc: 'large', backend },
            );
            const t = (r.value as { outputs: { probs: { data: Uint8Array } } }).outputs.probs;
            probs.push(Array.from(new Float32Array(t.data.slice().buffer)));
            backends.push(r.trace[0]!.backend);
          }
          // And the whole app path, Logic → Model, on each backend.
          const answers = [];
          for (const backend of ['webgpu', 'wasm'] as const) {
            const r = await window.brume.invoke('digits', 'classify', input, {}, { backend });
            answers.push((r.value as { digit: number }).digit);
          }
          rows.push({ probs, backends, answers });
        }
        return rows;
      },
      { data, frame },
    );
    for (const row of out) {
      expect(row.backends).toEqual(['webgpu', 'wasm']);
      expect(row.answers[0]).toBe(row.answers[1]);
      const [gpu, cpu] = row.probs as [number[], number[]];
      for (let k = 0; k < 10; k++) expect(Math.abs(gpu[k]! - cpu[k]!)).toBeLessThan(1e-3);
    }
  } finally {
    await browser.close();
  }
});
