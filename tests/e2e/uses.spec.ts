import { loadDigits } from '../../models/digits/data';
import { expect, openNode, test } from './fixtures';

// The sample app `top3` ships no model: its Logic calls `digits/model` (manifest `uses`). In a
// real tab its ranking is the one the digits model itself gives the same image.
test('a tab answers top3 with the digits model of another app', async ({ page, relay }) => {
  await openNode(page, relay.url);
  const { heldout } = loadDigits();
  const n = 20;
  const images = Array.from({ length: n }, (_, i) =>
    Array.from(heldout.x.subarray(i * 784, (i + 1) * 784), (v) => Math.round(v * 255)),
  );
  const results = await page.evaluate(async (images) => {
    const out = [];
    for (const image of images) {
      const pixels = Uint8Array.from(image);
      const r = await window.brume.invoke('top3', 'rank', { pixels });
      const v = r.value as { top: { digit: number; p: number }[]; variant: string };
      // The same tensor straight to the digits model, same variant, on this tab.
      const data = Float32Array.from(pixels, (b) => b / 255);
      const direct = await window.brume.invoke(
        'digits',
        'model',
        { inputs: { pixels: { type: 'float32', dims: [1, 784], data } } },
        {},
        { rpc: v.variant },
      );
      // Tensor data comes as its bytes (PROTOCOL.md §4), copied so the floats are aligned.
      const bytes = (direct.value as { outputs: { probs: { data: Uint8Array } } }).outputs.probs
        .data;
      const probs = new Float32Array(bytes.slice().buffer);
      out.push({ top: v.top, probs: Array.from(probs), node: r.node, trace: r.trace });
    }
    return out;
  }, images);
  let right = 0;
  results.forEach((r, i) => {
    const ranked = [...r.probs.keys()].sort((a, b) => r.probs[b]! - r.probs[a]!).slice(0, 3);
    expect(r.top.map((t) => t.digit)).toEqual(ranked);
    for (const t of r.top) expect(t.p).toBeCloseTo(r.probs[t.digit]!, 5);
    expect(r.trace.map((t) => t.kind)).toEqual(['model', 'logic']);
    if (r.top[0]!.digit === heldout.y[i]) right++;
  });
  expect(right / n).toBeGreaterThan(0.85);
});
