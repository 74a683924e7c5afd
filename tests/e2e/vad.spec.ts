// The vad app across real tabs: one audio stream served by one node, and the same audio as a
// stream whose chunks rotate over every node, must give the same decisions. The Silero state
// travels between nodes only through the context store (vad/<stream>, 5 s TTL).

import { decode, encode } from '@msgpack/msgpack';
import type { Browser, BrowserContext, Page } from '@playwright/test';
import { FRAME, loadFixture } from '../../models/vad/vad';
import { expect, joinTab, test } from './fixtures';

const contexts: BrowserContext[] = [];
test.afterEach(async () => {
  for (const c of contexts.splice(0)) await c.close();
});

const tab = (browser: Browser, url: string) => joinTab(browser, url, contexts);

interface Chunk {
  node: string;
  probs: number[];
  speech: boolean[];
  speaking: boolean;
  frame: number;
}

/** Calls vad/detect from `page` with one chunk (base64 of its float32 bytes), pinned to `node`. */
function fromTab(page: Page, stream: string, chunk: string, node: string): Promise<Chunk> {
  return page.evaluate(
    async ({ stream, chunk, node }) => {
      const samples = Uint8Array.from(atob(chunk), (c) => c.charCodeAt(0));
      const r = await window.brume.invoke('vad', 'detect', { stream, samples }, { privacy: node });
      return { node: r.node, ...(r.value as Omit<Chunk, 'node'>) };
    },
    { stream, chunk, node },
  );
}

/** Calls vad/detect over the relay's HTTP API (MessagePack: the samples are binary). */
async function fromHttp(relayUrl: string, stream: string, chunk: Uint8Array, node: string) {
  const res = await fetch(`${relayUrl}/api/call/vad/detect`, {
    method: 'POST',
    headers: { 'content-type': 'application/msgpack', accept: 'application/msgpack' },
    body: Buffer.from(encode({ input: { stream, samples: chunk }, qos: { privacy: node } })),
  });
  const body = decode(new Uint8Array(await res.arrayBuffer())) as { value: Chunk; node: string };
  expect(res.status, JSON.stringify(body)).toBe(200);
  return { ...body.value, node: body.node };
}

test('the vad app decides the same on one node and with its chunks spread over several', async ({
  browser,
  relay,
}) => {
  test.setTimeout(240_000);
  const { samples, labels } = loadFixture();
  const tabs = [
    await tab(browser, relay.url),
    await tab(browser, relay.url),
    await tab(browser, relay.url),
  ];
  // The relay's own cloud node (onnxruntime-node) takes a turn too, when it runs one.
  const nodes = (await (
    await fetch(`${relay.url}/api/nodes`, { headers: { authorization: `Bearer ${relay.token}` } })
  ).json()) as { id: string; role: string }[];
  const cloud = nodes.filter((n) => n.role === 'cloud').map((n) => n.id);
  const perChunk = 4;
  const bytes = new Uint8Array(samples.buffer, samples.byteOffset, samples.byteLength);
  const step = perChunk * FRAME * 4;
  const chunks = Math.ceil(bytes.length / step);
  const run = Date.now().toString(36);
  // The fixture as one stream, chunk i pinned to pins[i % pins.length]: the first tab calls for
  // the tabs (a data channel or the relay takes it there), the test calls the cloud over HTTP.
  const send = async (stream: string, pins: string[]) => {
    const out: Chunk[] = [];
    for (let i = 0; i < chunks; i++) {
      const chunk = bytes.subarray(i * step, (i + 1) * step);
      const node = pins[i % pins.length]!;
      out.push(
        cloud.includes(node)
          ? await fromHttp(relay.url, stream, chunk, node)
          : await fromTab(tabs[0]!.page, stream, Buffer.from(chunk).toString('base64'), node),
      );
    }
    return out;
  };

  const one = await send(`one-${run}`, [tabs[1]!.id]);
  const pins = [...tabs.map((t) => t.id), ...cloud];
  const spread = await send(`spread-${run}`, pins);

  expect(one).toHaveLength(chunks);
  expect(spread).toHaveLength(chunks);
  // Where each chunk ran: one node for the first stream, every node in turn for the second.
  expect(new Set(one.map((c) => c.node))).toEqual(new Set([tabs[1]!.id]));
  expect(spread.map((c) => c.node)).toEqual(spread.map((_, i) => pins[i % pins.length]));
  expect(new Set(spread.map((c) => c.node)).size).toBeGreaterThanOrEqual(3);

  // The same answers, chunk by chunk: one stream, whichever node ran each part of it.
  expect(spread.map((c) => c.frame)).toEqual(one.map((c) => c.frame));
  expect(one.map((c) => c.frame)).toEqual(
    one.map((_, i) => Math.min(labels.length, (i + 1) * perChunk)),
  );
  expect(spread.map((c) => c.speaking)).toEqual(one.map((c) => c.speaking));
  const speechOne = one.flatMap((c) => c.speech);
  expect(spread.flatMap((c) => c.speech)).toEqual(speechOne);
  const probsOne = one.flatMap((c) => c.probs);
  const probsSpread = spread.flatMap((c) => c.probs);
  const diff = Math.max(...probsOne.map((p, i) => Math.abs(p - probsSpread[i]!)));
  expect(diff).toBeLessThan(1e-4);

  // And they are real decisions: speech and silence where the fixture has them.
  let agree = 0;
  speechOne.forEach((s, i) => {
    if (s === (labels[i] === 1)) agree++;
  });
  expect(agree / labels.length).toBeGreaterThan(0.9);
  console.log(
    `vad: ${chunks} chunks of ${perChunk} frames on 1 node, then over ${pins.length} ` +
      `(${cloud.length} cloud); max |Δp| ${diff.toExponential(2)}; ` +
      `agreement with the labels ${(agree / labels.length).toFixed(4)}`,
  );
});
