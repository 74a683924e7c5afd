// Revocation takes effect on connected nodes: a revoked cloud node is disconnected, a revoked
// fog's dews are told and given another trusted fog (or none), and a fog trusted later adopts
// the dews that have no parent.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Identity, loadOrCreateIdentity, memoryKeyStore } from '../../core/identity';
import { memoryAppSource } from '../../core/sources';
import { nodePlatform } from '../../relay/platform';
import type { Relay } from '../../relay/server';
import { joinRaw } from '../raw-node';
import { inProcessRelay } from '../relay-process';
import { testNode } from '../test-node';
import { until } from '../until';

const HEARTBEAT_MS = 1000;
let server: Awaited<ReturnType<typeof inProcessRelay>>;
let relay: Relay;
let ws: string;
beforeAll(async () => {
  server = await inProcessRelay({ heartbeatMs: HEARTBEAT_MS });
  relay = server.relay;
  ws = `${relay.url.replace('http', 'ws')}/ws`;
});
afterAll(() => server.close());

const key = (name: string) => loadOrCreateIdentity(memoryKeyStore(), name);

/** Trust or revoke a key through the admin API, as `brume trust` does. */
async function trust(identity: Identity, revoke = false) {
  const auth = { authorization: `Bearer ${relay.admin.token}` };
  const res = revoke
    ? await fetch(`${relay.url}/api/trust/${encodeURIComponent(identity.publicKey)}`, {
        method: 'DELETE',
        headers: auth,
      })
    : await fetch(`${relay.url}/api/trust`, {
        method: 'POST',
        headers: { ...auth, 'content-type': 'application/json' },
        body: JSON.stringify({ publicKey: identity.publicKey, label: 'test' }),
      });
  expect(res.ok).toBe(true);
}

const parentOf = (id: string) => relay.hub.nodes().find((n) => n.id === id)?.parent;

describe('revocation', () => {
  it('disconnects a cloud node whose key is revoked', async () => {
    const cloudKey = await key('cloud');
    await trust(cloudKey);
    const { node: cloud, welcome } = await joinRaw(ws, 'cloud', { identity: cloudKey });
    expect(welcome.trusted).toBe(true);
    await trust(cloudKey, true);
    expect(await cloud.closed).toEqual({
      code: 1008,
      reason: 'trust revoked: the cloud role is for keys on the trust list',
    });
    expect(relay.hub.nodes().map((n) => n.id)).not.toContain(welcome.nodeId);
  });

  it("moves a revoked fog's dews to another trusted fog, then to none, then back", async () => {
    const [aKey, bKey] = await Promise.all([key('fog-a'), key('fog-b')]);
    await trust(aKey);
    const { node: a, welcome: wa } = await joinRaw(ws, 'fog', { identity: aKey });
    const { node: dew, welcome: wd } = await joinRaw(ws, 'dew');
    expect(wd.parent).toBe(wa.nodeId);
    await trust(bKey);
    const { node: b, welcome: wb } = await joinRaw(ws, 'fog', { identity: bKey });

    // Within one heartbeat: the frame comes at once, the timeout is the bound.
    await trust(aKey, true);
    expect(await dew.next('parent', HEARTBEAT_MS)).toEqual({ t: 'parent', node: wb.nodeId });
    expect(parentOf(wd.nodeId)).toBe(wb.nodeId);
    // The revoked fog is still a node, just not trusted: the dew is not told it is gone.
    expect(dew.frames.filter((f) => f.t === 'gone')).toEqual([]);

    await trust(bKey, true);
    expect(await dew.next('parent', HEARTBEAT_MS)).toEqual({ t: 'parent' });
    expect(parentOf(wd.nodeId)).toBeUndefined();

    await trust(aKey);
    expect(await dew.next('parent', HEARTBEAT_MS)).toEqual({ t: 'parent', node: wa.nodeId });
    expect(parentOf(wd.nodeId)).toBe(wa.nodeId);

    // A parent fog that leaves: its dews hear it is gone, then get their next parent (none here).
    a.ws.close();
    expect(await dew.next('gone', HEARTBEAT_MS)).toEqual({ t: 'gone', node: wa.nodeId });
    expect(await dew.next('parent', HEARTBEAT_MS)).toEqual({ t: 'parent' });
    for (const n of [b, dew]) n.ws.close();
    await trust(aKey, true);
  });

  it('gives a real dew node the fog trusted after it joined, and takes it away on revocation', async () => {
    const fogKey = await key('fog-late');
    const { node: fog, welcome: wf } = await joinRaw(ws, 'fog', { identity: fogKey });
    const identity = await key('dew-node');
    const dew = await testNode(ws, identity, { platform: nodePlatform(memoryAppSource([])) });
    const runtime = dew.runtime;
    try {
      await dew.whenJoined(10_000);
      expect(dew.parent).toBeUndefined();
      await trust(fogKey);
      await until(() => dew.parent === wf.nodeId, 'the dew to take the newly trusted fog');
      await trust(fogKey, true);
      await until(() => dew.parent === undefined, 'the dew to drop the revoked fog');
    } finally {
      dew.close();
      runtime.close();
      fog.ws.close();
    }
  });
});
