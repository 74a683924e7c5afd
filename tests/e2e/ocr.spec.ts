// The ocr app's stages in a real tab: the Logics (wasm in the tab's Logic worker) and PP-OCRv4
// (onnxruntime-web) run one after the other as logics/ocr/pipeline.json chains them, driven from
// page code with window.brume.invoke per stage, on a held-out rendered image. (The `read`
// pipeline as one call comes with the pipeline engine; this checks the app's parts in a browser.)

import type { BrowserContext } from '@playwright/test';
import { loadSplit } from '../../models/ocr/data';
import { DEFAULT_SIDE } from '../../models/ocr/levels';
import { openOcr, readPipeline } from '../../models/ocr/pipeline';
import { accuracyOf, scorePage } from '../../models/ocr/score';
import { expect, joinTab, test } from './fixtures';

const contexts: BrowserContext[] = [];
test.afterEach(async () => {
  for (const c of contexts.splice(0)) await c.close();
});

test('a tab runs the ocr stages and reads a held-out rendered image', async ({
  browser,
  relay,
}) => {
  test.setTimeout(240_000);
  const image = loadSplit('heldout')[1]!;
  const { page, id } = await joinTab(browser, relay.url, contexts);
  const result = await page.evaluate(
    async ({ stages, output, image, side }) => {
      const pixels = Uint8Array.from(atob(image.pixels), (c) => c.charCodeAt(0));
      const values = new Map<string, unknown>([
        ['$input', { width: image.width, height: image.height, pixels, side }],
      ]);
      const nodes: Record<string, string[]> = {};
      const run = async (name: string, s: (typeof stages)[string], input: unknown) => {
        const r = await window.brume.invoke(
          'ocr',
          s.service,
          input,
          {},
          s.rpc ? { rpc: s.rpc } : {},
        );
        nodes[name] ??= [];
        nodes[name].push(r.node);
        return r.value;
      };
      for (const [name, s] of Object.entries(stages)) {
        const arg =
          s.from.length === 1
            ? values.get(s.from[0]!)
            : Object.fromEntries(s.from.map((f) => [f === '$input' ? 'input' : f, values.get(f)]));
        if (s.each) {
          const list = (arg as Record<string, unknown[]>)[s.each]!;
          values.set(name, await Promise.all(list.map((item) => run(name, s, item))));
        } else {
          values.set(name, await run(name, s, arg));
        }
      }
      return { answer: values.get(output) as { lines: { text: string; box: number[] }[] }, nodes };
    },
    {
      stages: readPipeline().stages,
      output: readPipeline().output,
      image: {
        width: image.width,
        height: image.height,
        pixels: Buffer.from(image.pixels).toString('base64'),
      },
      side: DEFAULT_SIDE,
    },
  );
  const read = result.answer.lines as { text: string; box: [number, number, number, number] }[];
  const score = scorePage(image.lines, read);
  expect(score.found, JSON.stringify(read)).toBe(image.lines.length);
  expect(accuracyOf(score)).toBeGreaterThan(0.9);
  // onnxruntime-web in the tab reads what onnxruntime-node reads through the same Logics (this
  // image has one line the models misread in both: a long line turned by 2.95°, see
  // models/ocr/README.md, so the comparison is with Node, not only with the truth).
  const ocr = await openOcr();
  try {
    const inNode = await ocr.read(image, DEFAULT_SIDE);
    expect(read.map((l) => l.text)).toEqual(inNode.lines.map((l) => l.text));
    // The probability maps may differ in the last bits between the two runtimes: a pixel at most.
    for (const [i, l] of read.entries()) {
      const other = inNode.lines[i]!.box;
      for (const [k, v] of l.box.entries()) expect(Math.abs(v - other[k]!)).toBeLessThanOrEqual(1);
    }
  } finally {
    await ocr.close();
  }
  // Every stage ran in this tab (nothing else can run them: no other node holds a slot here).
  for (const nodes of Object.values(result.nodes)) expect(new Set(nodes)).toEqual(new Set([id]));
});
