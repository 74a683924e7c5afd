// A Logic sees only its own app's context (PROTOCOL.md §7): the host, not the guest, names the
// app of every context operation (core/runtime.ts passes the manifest's name; the ABI's ctx
// request has no app field). Two apps run the same Logic code on one real fabric node, joined
// to a real relay; the key of one is never read or written by the other.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { memoryKV } from '../../core/context/outbox';
import { loadOrCreateIdentity, memoryKeyStore } from '../../core/identity';
import { packBundle } from '../../core/manifest';
import type { BrumeNode } from '../../core/node/node';
import { contextApp } from '../apps';
import { inProcessRelay } from '../relay-process';
import { testNode } from '../test-node';

let server: Awaited<ReturnType<typeof inProcessRelay>>;
let fabric: BrumeNode;

beforeAll(async () => {
  server = await inProcessRelay();
  const { relay } = server;
  for (const name of ['alpha', 'beta']) {
    const b = await contextApp(name);
    await relay.deploy(packBundle(b.manifest, b.files));
  }
  const identity = await loadOrCreateIdentity(memoryKeyStore(), 'isolation');
  fabric = await testNode(server.ws, identity, { kv: memoryKV(), runtime: { logicWorkers: 1 } });
  await fabric.whenJoined(10_000);
}, 30_000);

afterAll(async () => {
  fabric?.close();
  await server?.close();
});

async function call(app: string, rpc: string, input: unknown) {
  const res = await fetch(`${server.relay.url}/api/call/${app}/main`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      authorization: `Bearer ${server.relay.admin.token}`,
    },
    body: JSON.stringify({ input, rpc }),
  });
  const body = await res.json();
  expect(res.status, JSON.stringify(body)).toBe(200);
  return body.value as { found: boolean; value?: unknown };
}
// `recall` reads the key named in its state, as the continuation of a put would.
const read = (app: string, key: string) =>
  call(app, 'recall', { ok: true, service: 'context', rpc: 'put', state: key });
const http = async (app: string, key: string) =>
  (await (await fetch(`${server.relay.url}/api/context/${app}/${key}`)).json()).value;

it("a Logic of one app neither reads nor writes another app's context", async () => {
  const put = await fetch(`${server.relay.url}/api/context/beta/secret`, {
    method: 'PUT',
    headers: {
      'content-type': 'application/json',
      authorization: `Bearer ${server.relay.admin.token}`,
    },
    body: JSON.stringify({ value: 'beta only' }),
  });
  expect(put.status).toBe(200);

  // The same code in beta sees beta's key: the read works, so alpha's miss means something.
  expect(await read('beta', 'secret')).toMatchObject({ found: true, value: 'beta only' });
  expect(await read('alpha', 'secret')).toMatchObject({ found: false });

  // alpha writing the same key name writes alpha's key, and beta's stays as it was.
  expect(await call('alpha', 'remember', { key: 'secret', value: 'alpha wrote' })).toMatchObject({
    found: true,
    value: 'alpha wrote',
  });
  expect(await http('alpha', 'secret')).toBe('alpha wrote');
  expect(await http('beta', 'secret')).toBe('beta only');
  expect(await read('beta', 'secret')).toMatchObject({ found: true, value: 'beta only' });
}, 30_000);
