// The balancer in front of a cluster (tests/haproxy-process.ts, README "Run a cluster") against a
// real HAProxy: a relay slow to answer its health check — its event loop busy, as the survivor's
// is while a killed relay's 1,500 nodes rejoin it — stays in, or with every relay out HAProxy
// answers each request with its own 503; a relay that is gone (connection refused) is still
// taken out within a few checks.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import { type HaproxyProcess, startHaproxy } from '../haproxy-process';
import { until } from '../until';

/** How long the slow backend takes to answer `/api/health`: over 2 check intervals (200 ms). */
const SLOW_HEALTH_MS = 600;

let haproxy: HaproxyProcess | undefined;
const servers: Server[] = [];

/** A backend answering every request with 200, `/api/health` after SLOW_HEALTH_MS; counts checks. */
async function slowBackend() {
  const seen = { checks: 0 };
  const server = createServer((req, res) => {
    if (req.url === '/api/health') {
      setTimeout(() => {
        seen.checks++;
        res.end('{"ok":true}');
      }, SLOW_HEALTH_MS);
      return;
    }
    res.end('served');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  servers.push(server);
  return { server, seen, port: (server.address() as AddressInfo).port };
}

afterAll(async () => {
  await haproxy?.stop();
  for (const s of servers) s.closeAllConnections();
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
});

describe('HAProxy in front of the relays', () => {
  it('keeps a relay slow to answer its checks, and takes out one that is gone', async () => {
    const b = await slowBackend();
    haproxy = await startHaproxy({ backends: [{ name: 'r0', host: '127.0.0.1', port: b.port }] });
    const h = haproxy;
    // Every state HAProxy shows while 6 slow checks are answered: never out.
    const states = new Set<string>();
    await until(
      async () => {
        states.add((await h.servers())[0]!.status);
        return b.seen.checks >= 6;
      },
      '6 slow health checks answered',
      30_000,
      50,
    );
    expect([...states].filter((s) => s.startsWith('DOWN'))).toEqual([]);
    const res = await fetch(`${h.url}/api/call/x/y`, { method: 'POST' });
    expect(res.status).toBe(200);
    expect(await res.text()).toBe('served');
    // Gone: connections refused, taken out by the 200 ms checks (not after the read timeout).
    b.server.closeAllConnections();
    await new Promise((r) => b.server.close(r));
    await h.untilDown('r0', 10_000);
    const after = await fetch(`${h.url}/api/call/x/y`, { method: 'POST' });
    expect(after.status).toBe(503);
    expect(await after.text()).toMatch(/No server is available/);
  }, 60_000);
});
