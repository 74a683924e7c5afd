// Versions across the fabric (issue 19) with a real tab and the relay's cloud node, a relay
// process: a deploy of 1.0.1 while both serve 1.0.0 with calls in flight, then a rollback. No
// reload, no restart; every answer says which version ran.
import { packBundle } from '../../core/manifest';
import { greetApp } from '../apps';
import { until } from '../until';
import { deploy, expect, openNode, test } from './fixtures';

test.setTimeout(180_000);

interface Answer {
  status: number;
  version?: string;
  value?: unknown;
  error?: { code: string; message: string };
}

test('a deploy and a rollback reach a tab and the cloud node while calls are in flight', async ({
  page,
  relay,
}) => {
  const headers = { 'content-type': 'application/json', authorization: `Bearer ${relay.token}` };
  const ship = async (version: string) => {
    const b = await greetApp(version);
    const res = await deploy(relay, packBundle(b.manifest, b.files));
    expect(res.ok, await res.clone().text()).toBe(true);
  };
  /** An HTTP call kept on one node by privacy (a node id). */
  const callOn = async (node: string, rpc: string, input: unknown): Promise<Answer> => {
    const res = await fetch(`${relay.url}/api/call/greet/greet`, {
      method: 'POST',
      headers,
      body: JSON.stringify({ input, rpc, qos: { privacy: node } }),
    });
    const body = (await res.json()) as Omit<Answer, 'status'>;
    return { status: res.status, ...body };
  };
  const nodes = async () =>
    (await (await fetch(`${relay.url}/api/nodes`, { headers })).json()) as {
      id: string;
      role: string;
      queue: number;
    }[];

  await ship('1.0.0');
  await openNode(page, relay.url);
  const tab = await page.evaluate(async () => {
    const f = await window.brumeDebug.fabric;
    await f.whenJoined(20_000);
    (window as unknown as { marker: number }).marker = 19; // gone if the page reloads
    return f.nodeId;
  });
  const cloud = (
    await until(async () => (await nodes()).find((n) => n.role === 'cloud'), 'the cloud node')
  ).id;
  /** The version the tab's runtime runs now (its first held). */
  const tabVersion = () =>
    page.evaluate(() => window.brumeDebug.runtime.versions().greet?.[0] ?? '');
  /** A call the tab makes itself and serves itself. */
  const local = (qos: Record<string, unknown> = {}) =>
    page.evaluate(async (qos) => {
      const r = await window.brume.invoke('greet', 'greet', 'hi', { privacy: 'device', ...qos });
      return { version: r.version, trace: r.trace.map((t) => t.version) };
    }, qos);

  expect((await local()).version).toBe('1.0.0');
  expect((await callOn(cloud, 'echo', 'x')).version).toBe('1.0.0');

  // Long calls in flight on both nodes, each placed there by privacy.
  const spin = { n: 600_000_000 };
  const inFlight = [tab, tab, cloud, cloud].map((n) => callOn(n, 'spin', spin));
  await until(
    () => page.evaluate(() => window.brumeDebug.fabric.then((f) => f.busy + f.waiting)),
    'the tab to be running the long calls',
  );
  await until(
    async () => ((await nodes()).find((n) => n.id === cloud)?.queue ?? 0) > 0,
    'the cloud node to be running the long calls',
  );

  await ship('1.0.1');
  // The announcement reached the tab: every call that starts now runs 1.0.1.
  await until(async () => (await tabVersion()) === '1.0.1', 'the tab to take 1.0.1');
  const after = await local();
  expect(after).toEqual({ version: '1.0.1', trace: ['1.0.1'] });
  expect((await callOn(tab, 'echo', 'y')).version).toBe('1.0.1');
  expect((await callOn(cloud, 'echo', 'y')).version).toBe('1.0.1');

  // Each call that was in flight answered once, on the version it started on.
  for (const r of await Promise.all(inFlight)) {
    expect(r.status, JSON.stringify(r)).toBe(200);
    expect(r.version).toBe('1.0.0');
  }

  // A call pinned to 1.0.0 still runs on a node that has it (or fetches it).
  expect(await local({ version: '1.0.0' })).toEqual({ version: '1.0.0', trace: ['1.0.0'] });
  const pinned = await fetch(`${relay.url}/api/call/greet/greet`, {
    method: 'POST',
    headers,
    body: JSON.stringify({ input: 'p', rpc: 'echo', qos: { version: '1.0.0' } }),
  });
  expect(((await pinned.json()) as Answer).version).toBe('1.0.0');

  // The rollback takes effect the same way.
  const back = await fetch(`${relay.url}/api/apps/greet/current`, {
    method: 'POST',
    headers,
    body: JSON.stringify({ version: '1.0.0' }),
  });
  expect(back.status).toBe(200);
  await until(async () => (await tabVersion()) === '1.0.0', 'the tab to take the rollback');
  expect((await local()).version).toBe('1.0.0');
  expect((await callOn(cloud, 'echo', 'z')).version).toBe('1.0.0');
  expect((await callOn(tab, 'echo', 'z')).version).toBe('1.0.0');

  // No reload happened.
  expect(await page.evaluate(() => (window as unknown as { marker?: number }).marker)).toBe(19);
});
