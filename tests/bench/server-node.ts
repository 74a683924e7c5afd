/**
 * Where a model runs for an HTTP caller (issue 18): on a server node (`brume node`, its own
 * process, over a WebSocket), on the relay's own cloud node (in the relay's process), or in a tab
 * (Chromium, over its WebSocket), side by side on one relay in one run. Every call takes the same
 * path — HTTP → relay → node → relay → HTTP — pinned to its node by `qos.privacy`; the three are
 * called in turn, so a slow spell of the machine hits them alike.
 * @example const rows = await serverNodeBench(relay, 100); sections.push(serverNodeSection(rows));
 */
import { rmSync } from 'node:fs';
import { chromium } from 'playwright-core';
import type { NodeRecord } from '../../core/api';
import { encode } from '../../core/codec';
import { chromiumArgs, chromiumPath } from '../../playwright.config';
import { startNodeProcess } from '../node-process';
import type { RelayProcess } from '../relay-process';
import { until } from '../until';
import type { Section } from './report';

export interface ServerNodeRow {
  where: string;
  app: string;
  /** Medians and 90th percentiles of the caller's wall time, ms. */
  p50: number;
  p90: number;
  samples: number[];
}

/** Image inputs per app, as an HTTP caller sends them. */
function input(app: string) {
  if (app === 'digits') {
    const pixels = new Uint8Array(28 * 28);
    for (let j = 300; j < 500; j += 3) pixels[j] = 255;
    return { width: 28, height: 28, pixels };
  }
  const pixels = new Uint8Array(320 * 240 * 4);
  for (let i = 0; i < pixels.length; i++) pixels[i] = (i * 37) & 255;
  return { width: 320, height: 240, pixels };
}

/** One timed call, with the admin token: anonymous calls are rate limited per address. */
async function call(
  url: string,
  token: string,
  app: string,
  node: string,
  body: unknown,
): Promise<number> {
  const t0 = performance.now();
  const res = await fetch(`${url}/api/call/${app}/classify`, {
    method: 'POST',
    headers: { 'content-type': 'application/msgpack', authorization: `Bearer ${token}` },
    body: Buffer.from(encode({ input: body, qos: { privacy: node } })),
  });
  await res.arrayBuffer();
  if (res.status !== 200) throw new Error(`${app} on ${node.slice(0, 8)}: HTTP ${res.status}`);
  return performance.now() - t0;
}

const pct = (xs: number[], p: number) =>
  [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * p))]!;

/**
 * `relay` must run its cloud node and serve `apps`. Starts a trusted server node (cloud, one
 * thread like the relay's on 2 cores) and a tab, and calls each app `runs` times on each.
 */
export async function serverNodeBench(
  relay: RelayProcess,
  runs: number,
  apps = ['digits', 'squeezenet'],
): Promise<ServerNodeRow[]> {
  const auth = { authorization: `Bearer ${relay.token}` };
  const server = await startNodeProcess(relay.url, {
    args: ['--role', 'cloud', '--threads', '1', '--apps', apps.join(',')],
  });
  const browser = await chromium.launch({ executablePath: chromiumPath, args: chromiumArgs });
  try {
    await fetch(`${relay.url}/api/trust`, {
      method: 'POST',
      headers: { ...auth, 'content-type': 'application/json' },
      body: JSON.stringify({ publicKey: server.publicKey, label: 'bench server node' }),
    });
    const page = await browser.newPage();
    await page.goto(relay.url);
    const tabId = await page.evaluate(async () => {
      await window.brume.ready;
      const f = await window.brumeDebug.fabric;
      await f.whenJoined(20_000);
      return f.nodeId;
    });
    const nodes = await until(
      async () => {
        const all = (await (
          await fetch(`${relay.url}/api/nodes`, { headers: auth })
        ).json()) as NodeRecord[];
        const has = (id: string) =>
          all.find((n) => n.id === id && apps.every((a) => n.apps.includes(a)));
        const cloud = all.find((n) => n.role === 'cloud' && n.id !== server.id);
        return has(server.id) && has(tabId) && cloud && { cloud: cloud.id };
      },
      'the server node, the cloud node and the tab to report the apps',
      60_000,
    );
    await until(() => server.output().includes(`app ${apps.at(-1)} loaded`), 'apps loaded', 60_000);
    const targets = [
      { where: 'server node (brume node, onnxruntime-node)', id: server.id },
      { where: "relay's own cloud node (in process)", id: nodes.cloud },
      { where: 'tab (Chromium, onnxruntime-web)', id: tabId },
    ];
    const rows: ServerNodeRow[] = [];
    for (const app of apps) {
      const body = input(app);
      const samples = targets.map(() => [] as number[]);
      // Warm-up: sessions, workers, the JIT, each node's figures.
      for (let i = 0; i < 5; i++)
        for (const t of targets) await call(relay.url, relay.token, app, t.id, body);
      for (let i = 0; i < runs; i++) {
        for (const [k, t] of targets.entries())
          samples[k]!.push(await call(relay.url, relay.token, app, t.id, body));
      }
      for (const [k, t] of targets.entries()) {
        const s = samples[k]!;
        rows.push({ where: t.where, app, p50: pct(s, 0.5), p90: pct(s, 0.9), samples: s });
      }
    }
    return rows;
  } finally {
    await browser.close();
    await server.kill();
    rmSync(server.dataDir, { recursive: true, force: true });
  }
}

export function serverNodeSection(rows: ServerNodeRow[]): Section {
  return {
    id: 'server-node',
    title: 'An HTTP call to classify: server node vs the relay’s cloud node vs a tab',
    baseline: "the relay's own cloud node, in the same run",
    note: 'Each call: POST /api/call/<app>/classify with msgpack input, pinned to one node by qos.privacy, timed at the caller (the whole app: Logic + Model). The three nodes are called in turn. The server node is `brume node --threads 1` on the same machine as the relay (its socket is loopback); the tab runs onnxruntime-web WASM in Chromium.',
    rows: rows.map((r) => {
      const base = rows.find((x) => x.app === r.app && x.where.startsWith("relay's"));
      return {
        label: `${r.app}: ${r.where}`,
        'p50 (ms)': r.p50,
        'p90 (ms)': r.p90,
        'p50 vs cloud node': base ? r.p50 / base.p50 : undefined,
      };
    }),
    series: [
      {
        id: 'latency',
        title: 'HTTP call latency by where it ran',
        x: 'latency (ms)',
        y: 'share of calls ≤ x',
        kind: 'cdf',
        logX: true,
        lines: rows.map((r) => ({ label: `${r.app}: ${r.where}`, samples: r.samples })),
      },
    ],
  };
}
