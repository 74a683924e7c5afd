// The squeezenet sample app (SqueezeNet 1.1, RANDOM weights) answers in a real tab: the Logic's
// 224×224 tensor through onnxruntime-web's WASM backend, top 5 of a probability vector.
import { rgbaImage } from '../apps';
import { expect, openNode, test } from './fixtures';

test('the squeezenet app classifies an RGBA image in a tab, and says its weights are random', async ({
  page,
  relay,
}) => {
  const manifest = (await (await fetch(`${relay.url}/api/apps/squeezenet`)).json()) as {
    services: { model: { variants: Record<string, { weights: string }> } };
  };
  expect(manifest.services.model.variants.v11!.weights).toBe('random');
  await openNode(page, relay.url);
  const pixels = Buffer.from(rgbaImage(320, 240)).toString('base64');
  const answer = await page.evaluate(async (pixels) => {
    const input = {
      width: 320,
      height: 240,
      pixels: Uint8Array.from(atob(pixels), (c) => c.charCodeAt(0)),
    };
    const fabric = await window.brumeDebug.fabric;
    await fabric.whenJoined(20_000);
    const me = fabric.nodeId;
    const r = await window.brume.invoke(
      'squeezenet',
      'classify',
      input,
      { privacy: me },
      { backend: 'wasm' },
    );
    return { me, node: r.node, via: r.via, value: r.value };
  }, pixels);
  expect(answer.node).toBe(answer.me);
  expect(answer.via).toBe('local');
  const v = answer.value as { top: { class: number; p: number }[]; weights: string };
  expect(v.weights).toBe('random');
  expect(v.top).toHaveLength(5);
  for (const [i, t] of v.top.entries()) {
    expect(t.class).toBeGreaterThanOrEqual(0);
    expect(t.class).toBeLessThan(1000);
    expect(t.p).toBeGreaterThan(0);
    expect(t.p).toBeLessThanOrEqual(1);
    if (i > 0) expect(t.p).toBeLessThanOrEqual(v.top[i - 1]!.p);
  }
  expect(new Set(v.top.map((t) => t.class)).size).toBe(5);
});
