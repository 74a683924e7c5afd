// A vad session across real tabs (PROTOCOL.md §5.9): one tab streams audio through
// window.brume.session, placed by the relay on another tab; that tab crashes (abrupt: the state
// comes from the last checkpoint in the context store), the next one pauses and the last one
// closes (graceful: the relay hands the session over before the next frame). Every chunk is
// answered once, and the speech probabilities equal those of the same audio run on one tab
// without a move; the admin console lists the session and its migrations.

import type { Browser, BrowserContext, Page } from '@playwright/test';
import { FRAME, loadFixture } from '../../models/vad/vad';
import { expect, type JoinedTab, joinTab, test } from './fixtures';

const contexts: BrowserContext[] = [];
test.afterEach(async () => {
  for (const c of contexts.splice(0)) await c.close();
});

const tab = (browser: Browser, url: string) => joinTab(browser, url, contexts);

interface Chunk {
  node: string;
  probs: number[];
  speech: boolean[];
  frame: number;
}
interface Move {
  from: string;
  to: string;
  why: string;
  stateBytes?: number;
}

/** One chunk from `page`: on its open session, or pinned to `pin` (the run without a move). */
function chunkFrom(page: Page, chunk: string, pin?: { stream: string; node: string }) {
  return page.evaluate(
    async ({ chunk, pin }) => {
      const samples = Uint8Array.from(atob(chunk), (c) => c.charCodeAt(0));
      const w = window as unknown as { session: Awaited<ReturnType<typeof window.brume.session>> };
      const r = pin
        ? await window.brume.invoke(
            'vad',
            'detect',
            { stream: pin.stream, samples },
            { privacy: pin.node },
          )
        : await w.session.invoke({ stream: w.session.id, samples });
      return { node: r.node, ...(r.value as Omit<Chunk, 'node'>) };
    },
    { chunk, pin },
  );
}

const moves = (page: Page) => page.evaluate(() => (window as unknown as { moves: Move[] }).moves);

test('a vad session keeps answering, state and all, when its tab crashes, the next pauses and the last closes', async ({
  browser,
  relay,
}) => {
  test.setTimeout(300_000);
  const { samples } = loadFixture();
  const caller = await tab(browser, relay.url);
  const servers: JoinedTab[] = [];
  for (let i = 0; i < 3; i++) servers.push(await tab(browser, relay.url));
  const contextOf = new Map(servers.map((s, i) => [s.id, contexts[i + 1]!]));
  const pageOf = new Map(servers.map((s) => [s.id, s.page]));

  const perChunk = 16;
  const bytes = new Uint8Array(samples.buffer, samples.byteOffset, samples.byteLength);
  const step = perChunk * FRAME * 4;
  const chunks = Array.from({ length: Math.floor(bytes.length / step) }, (_, i) =>
    Buffer.from(bytes.subarray(i * step, (i + 1) * step)).toString('base64'),
  );

  // The same audio as one stream on one tab, never moved: what the session must reproduce.
  const run = Date.now().toString(36);
  const still: Chunk[] = [];
  for (const c of chunks)
    still.push(await chunkFrom(caller.page, c, { stream: `still-${run}`, node: servers[0]!.id }));

  // Every serving tab warm and measured alike (the reference run did the first; the others run a
  // few chunks too): the relay moves a session for figures too, and a tab's cold first calls
  // would look slow next to a warm one.
  for (const s of servers.slice(1))
    for (const c of chunks.slice(0, 8))
      await chunkFrom(caller.page, c, { stream: `warm-${s.id}-${run}`, node: s.id });
  const hub = async () =>
    (await (
      await fetch(`${relay.url}/api/sessions`, {
        headers: { authorization: `Bearer ${relay.token}` },
      })
    ).json()) as { sessions: { id: string; node: string }[]; migrations: { session: string }[] };
  /** The node serving the session now, as the relay (which moves it) has it. */
  const serving = async (id: string) => (await hub()).sessions.find((s) => s.id === id)!.node;

  const opened = await caller.page.evaluate(async () => {
    const s = await window.brume.session('vad', 'detect', {
      fps: 2,
      stateKey: 'vad/{session}',
      frameBytes: 16 * 512 * 4,
    });
    const w = window as unknown as { session: typeof s; moves: Move[] };
    w.session = s;
    w.moves = [];
    s.onMove((m) =>
      w.moves.push({
        from: m.from,
        to: m.to,
        why: m.why,
        ...(m.stateBytes !== undefined && { stateBytes: m.stateBytes }),
      }),
    );
    return { id: s.id, node: s.node, reason: s.placement.reason };
  });
  expect(
    servers.map((s) => s.id),
    opened.reason,
  ).toContain(opened.node);

  const got: Chunk[] = [];
  const third = Math.floor(chunks.length / 3);
  for (const c of chunks.slice(0, third)) got.push(await chunkFrom(caller.page, c));

  // Abrupt: the serving tab's renderer crashes between two chunks (no pagehide, nothing said:
  // closing it would hand over gracefully); the next chunk is answered elsewhere.
  const first = await serving(opened.id);
  const cdp = await contextOf.get(first)!.newCDPSession(pageOf.get(first)!);
  void cdp.send('Page.crash').catch(() => {});
  for (const c of chunks.slice(third, 2 * third)) got.push(await chunkFrom(caller.page, c));
  expect(got.slice(third).map((c) => c.node)).not.toContain(first);
  const second = await serving(opened.id);

  // Graceful: the tab serving it now pauses; the relay moves the session before the next chunk.
  await pageOf.get(second)!.evaluate(() => window.brume.pause(true));
  await expect.poll(async () => (await moves(caller.page)).map((m) => m.why)).toContain('left');
  for (const c of chunks.slice(2 * third)) got.push(await chunkFrom(caller.page, c));

  // Where each chunk ran: after the crash never on the crashed tab, after the pause never on the
  // paused one. (The relay may also move the session for figures: a tab's first calls are slow.)
  const last = got.slice(2 * third).map((c) => c.node);
  expect(last).not.toContain(second);
  expect(last).not.toContain(first);
  const m = await moves(caller.page);
  const lost = m.filter((x) => x.from === first).at(-1)!;
  expect(['lost', 'asked']).toContain(lost.why);
  const left = m.filter((x) => x.from === second).at(-1)!;
  expect(left.why).toBe('left');
  // The state moved is the stream's checkpoint in the context store: Silero's 2×128 floats and more.
  expect(left.stateBytes).toBeGreaterThan(1024);

  // Every chunk answered once, the stream's state carried across both moves.
  expect(got.map((c) => c.frame)).toEqual(still.map((c) => c.frame));
  expect(got.flatMap((c) => c.speech)).toEqual(still.flatMap((c) => c.speech));
  const a = still.flatMap((c) => c.probs);
  const b = got.flatMap((c) => c.probs);
  const diff = Math.max(...a.map((p, i) => Math.abs(p - b[i]!)));
  expect(diff).toBeLessThan(1e-4);

  // The relay lists the session and its two migrations.
  const listed = await hub();
  expect(listed.sessions.find((s) => s.id === opened.id)?.node).toBe(last.at(-1));
  expect(listed.migrations.filter((x) => x.session === opened.id)).toHaveLength(m.length);

  // A tab closed says it goes (pagehide) before its socket closes: handed over as gracefully.
  const third3 = await caller.page.evaluate(
    () => (window as unknown as { session: { node: string } }).session.node,
  );
  expect(
    contextOf.has(third3),
    JSON.stringify([third3, servers.map((x) => x.id), first, second, await hub()]),
  ).toBe(true);
  await contextOf.get(third3)!.close();
  await expect
    .poll(async () => (await moves(caller.page)).filter((x) => x.from === third3).map((x) => x.why))
    .toContain('left');
  const after = await chunkFrom(caller.page, chunks[0]!);
  expect([first, second, third3]).not.toContain(after.node);
  expect(after.frame).toBe(still.at(-1)!.frame + perChunk);

  // The admin console shows it with its node and estimate, and its migrations.
  const admin = await (await browser.newContext()).newPage();
  contexts.push(admin.context());
  await admin.goto(`${relay.url}/admin`);
  await admin.locator('#token').fill(relay.token);
  await admin.locator('button[type=submit]').click();
  const row = admin.locator(`#sessions tr[data-session="${opened.id}"]`);
  await expect(row).toContainText('vad/detect');
  await expect(row).toContainText(after.node === caller.id ? 'local' : after.node.slice(0, 8));
  const moved = admin.locator(`#sessions tr[data-migration="${opened.id}"]`);
  await expect(moved.filter({ hasText: `${second.slice(0, 8)} →` })).toContainText('left');
  await expect(moved.filter({ hasText: `${first.slice(0, 8)} →` })).toContainText(lost.why);
  console.log(
    `sessions: ${chunks.length} chunks of ${perChunk} frames, moved ${m.map((x) => `${x.why}${x.stateBytes !== undefined ? ` (${x.stateBytes} B)` : ''}`).join(', ')}; max |Δp| ${diff.toExponential(2)}`,
  );
});
