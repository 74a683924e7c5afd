// Hostile connections against a relay while a real tab keeps working.
import { rmSync } from 'node:fs';
import { loadOrCreateIdentity, memoryKeyStore, signJoin } from '../../core/identity';
import { PROTOCOL_VERSION } from '../../core/protocol';
import { testBundles } from '../apps';
import { caps, joinRaw, openRaw } from '../raw-node';
import { deploy, type RelayProcess, startRelay } from '../relay-process';
import { expect, test } from './fixtures';

let relay: RelayProcess;
let ws: string;

test.beforeAll(async () => {
  relay = await startRelay({ args: ['--no-cloud'] });
  ws = `${relay.url.replace('http', 'ws')}/ws`;
  for (const b of await testBundles()) expect((await deploy(relay, b)).ok).toBe(true);
});
test.afterAll(async () => {
  await relay.stop();
  rmSync(relay.dataDir, { recursive: true, force: true });
});

test('forged joins, replayed nonces, oversized frames and garbage are refused; tabs carry on', async ({
  page,
}) => {
  await page.goto(relay.url);
  const tabId = await page.evaluate(async () => {
    await window.brume.ready;
    const f = await window.brumeDebug.fabric;
    await f.whenJoined(20_000);
    return f.nodeId;
  });
  // Pinned to the tab: the raw nodes below join but serve nothing.
  const echo = async () => {
    const res = await fetch(`${relay.url}/api/call/hostile/echo`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ input: 'still here', qos: { privacy: tabId } }),
    });
    return { status: res.status, body: (await res.json()) as { value: unknown; node: string } };
  };
  expect(await echo()).toMatchObject({ status: 200, body: { value: 'still here', node: tabId } });

  // Forged: a hello with one key, a join signed by another.
  const victim = await loadOrCreateIdentity(memoryKeyStore(), 'victim');
  const forger = await openRaw(ws);
  const c1 = await forger.next('challenge');
  forger.send({ t: 'hello', v: PROTOCOL_VERSION, role: 'fog', publicKey: victim.publicKey, caps });
  forger.send({
    t: 'join',
    nonce: c1.nonce,
    signature: await signJoin(forger.identity, c1.nonce, c1.relayId, 'fog'),
  });
  expect(await forger.closed).toMatchObject({ code: 1008, reason: /join refused/ });

  // Replayed: a valid join of one connection, sent again on another.
  const { node: honest, challenge } = await joinRaw(ws);
  const replay = await openRaw(ws, { identity: honest.identity });
  await replay.next('challenge');
  replay.send({
    t: 'hello',
    v: PROTOCOL_VERSION,
    role: 'dew',
    publicKey: honest.identity.publicKey,
    caps,
  });
  replay.send({
    t: 'join',
    nonce: challenge.nonce,
    signature: await signJoin(honest.identity, challenge.nonce, challenge.relayId, 'dew'),
  });
  expect(await replay.closed).toMatchObject({ code: 1008, reason: /join refused/ });

  // A signature for another relay (or role) proves nothing here.
  const elsewhere = await openRaw(ws);
  const c2 = await elsewhere.next('challenge');
  elsewhere.send({
    t: 'hello',
    v: PROTOCOL_VERSION,
    role: 'dew',
    publicKey: elsewhere.identity.publicKey,
    caps,
  });
  elsewhere.send({
    t: 'join',
    nonce: c2.nonce,
    signature: await signJoin(elsewhere.identity, c2.nonce, 'another-relay', 'dew'),
  });
  expect(await elsewhere.closed).toMatchObject({ code: 1008 });

  // Oversized: one frame past the 16 MiB limit.
  const big = await openRaw(ws);
  big.ws.send(Buffer.alloc(16 * 1024 * 1024 + 1));
  expect((await big.closed).code).toBe(1009);

  // Garbage bytes, a text frame, and a valid frame of the wrong shape.
  for (const junk of [
    Buffer.from([0xc1, 0xff, 0x00, 0x13]),
    'hello?',
    Buffer.from([0x81, 0xa1, 0x74, 0xa3, 0x78, 0x79, 0x7a]),
  ]) {
    const g = await openRaw(ws);
    g.ws.send(junk);
    const { code, reason } = await g.closed;
    expect(code).toBe(1008);
    expect(reason.length).toBeGreaterThan(0);
  }

  // A joined node that floods past its rate limit is cut off too.
  const { node: flooder } = await joinRaw(ws);
  for (let i = 0; i < 2000; i++) flooder.send({ t: 'pong', ts: i });
  expect(await flooder.closed).toMatchObject({ code: 1008, reason: /frames per second/ });

  // Sockets from a page origin not on the allow-list are refused at the upgrade.
  await expect(openRaw(ws, { origin: 'http://evil.example' })).rejects.toThrow(/403/);

  // Through all of it: the honest raw node is still joined and the tab still serves.
  expect(honest.ws.readyState).toBe(honest.ws.OPEN);
  expect(await echo()).toMatchObject({ status: 200, body: { value: 'still here' } });
  const events = (await (
    await fetch(`${relay.url}/api/events`, { headers: { authorization: `Bearer ${relay.token}` } })
  ).json()) as { kind: string }[];
  expect(events.filter((e) => e.kind === 'refused').length).toBeGreaterThanOrEqual(3);
  honest.ws.close();
});
