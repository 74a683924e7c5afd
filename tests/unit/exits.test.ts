// Exits per tier (PROTOCOL.md §5.2 `exits`): the heartbeat field as the relay reads it off the
// wire, and the relay's tally of what each node's counts grew by, per role (relay/hub/exits.ts).
import { describe, expect, it } from 'vitest';
import type { NodeRecord } from '../../core/api';
import { ProtocolError } from '../../core/errors';
import type { Manifest } from '../../core/manifest';
import { decodeFrame, encodeFrame, MAX_EXIT_SERVICES, type ToRelay } from '../../core/protocol';
import { createExitTally, maxExitRows } from '../../relay/hub/exits';
import { node } from '../node-view';

const heartbeat = (exits: unknown) =>
  ({
    t: 'heartbeat',
    load: { queue: 0, maxConcurrency: 1 },
    apps: ['digits-ee'],
    models: {},
    stats: {},
    paused: false,
    exits,
  }) as ToRelay;

describe('the heartbeat’s exits', () => {
  it('crosses the wire as counts per app/model service', () => {
    const f = heartbeat({ 'digits-ee/dew': { calls: 5, taken: 4 } });
    expect(decodeFrame(encodeFrame(f), 'toRelay')).toEqual(f);
  });

  it.each([
    ['more taken than calls', { 'digits-ee/dew': { calls: 1, taken: 2 } }],
    ['a negative count', { 'digits-ee/dew': { calls: -1, taken: 0 } }],
    ['a fractional count', { 'digits-ee/dew': { calls: 1.5, taken: 0 } }],
    ['a key past 130 characters', { ['x'.repeat(131)]: { calls: 1, taken: 0 } }],
    ['no counts', { 'digits-ee/dew': 3 }],
    [
      `over ${MAX_EXIT_SERVICES} services`,
      Object.fromEntries(
        Array.from({ length: MAX_EXIT_SERVICES + 1 }, (_, i) => [
          `a/s${i}`,
          { calls: 1, taken: 0 },
        ]),
      ),
    ],
  ])('refuses %s', (_what, exits) => {
    expect(() => decodeFrame(encodeFrame(heartbeat(exits)), 'toRelay')).toThrow(ProtocolError);
  });
});

describe('the relay’s exit tally', () => {
  /** A node of `role` whose heartbeats the tally reads, as the hub does: report, then replace. */
  const reporter = (n: number, role: NodeRecord['role']) => {
    const record: NodeRecord = {
      ...node(n, { role }),
      caps: { backends: [] },
      joinedAt: 0,
      lastSeen: 0,
    };
    return (tally: ReturnType<typeof createExitTally>, exits: NodeRecord['exits']) =>
      tally.report(record, exits);
  };
  /** Every app declares model services `dew` and `fog` with exit heads, and `s`; `plain` has none. */
  const manifest = async (app: string) =>
    ({
      name: app,
      services: {
        dew: { kind: 'model', exit: { output: 'probs', rule: 'top', threshold: 0.9 } },
        fog: { kind: 'model', exit: { output: 'probs', rule: 'top', threshold: 0.9 } },
        s: { kind: 'model', exit: { output: 'probs', rule: 'top', threshold: 0.9 } },
        plain: { kind: 'model' },
        step: { kind: 'logic' },
      },
    }) as unknown as Manifest;
  const newTally = () => createExitTally({ manifest });

  it('adds what each node’s counts grew by, per app, service and role', async () => {
    const tally = newTally();
    const dew = reporter(1, 'dew');
    const other = reporter(2, 'dew');
    const fog = reporter(3, 'fog');
    await dew(tally, { 'ee/dew': { calls: 3, taken: 2 } });
    await dew(tally, { 'ee/dew': { calls: 5, taken: 3 } }); // +2 calls, +1 taken
    await dew(tally, { 'ee/dew': { calls: 5, taken: 3 } }); // nothing new
    await other(tally, { 'ee/dew': { calls: 1, taken: 1 } });
    await fog(tally, { 'ee/fog': { calls: 2, taken: 0 }, 'ee/dew': { calls: 1, taken: 0 } });
    await dew(tally, undefined); // a heartbeat without exits changes nothing
    expect(tally.list()).toEqual([
      { app: 'ee', service: 'dew', role: 'dew', calls: 6, taken: 4 },
      { app: 'ee', service: 'dew', role: 'fog', calls: 1, taken: 0 },
      { app: 'ee', service: 'fog', role: 'fog', calls: 2, taken: 0 },
    ]);
  });

  it('counts a node that started again from zero, and keeps counts of nodes that left', async () => {
    const tally = newTally();
    const dew = reporter(1, 'dew');
    await dew(tally, { 'ee/dew': { calls: 10, taken: 7 } });
    await dew(tally, { 'ee/dew': { calls: 2, taken: 2 } }); // restarted: its 2 are new
    const again = reporter(1, 'dew'); // the same node joined again: a new record
    await again(tally, { 'ee/dew': { calls: 1, taken: 0 } });
    expect(tally.list()).toEqual([{ app: 'ee', service: 'dew', role: 'dew', calls: 13, taken: 9 }]);
  });

  it('goes on from a node’s last report when it joins again, not counting it twice', async () => {
    const tally = newTally();
    await reporter(1, 'dew')(tally, { 'ee/dew': { calls: 10, taken: 7 } });
    await reporter(1, 'dew')(tally, { 'ee/dew': { calls: 11, taken: 7 } }); // a new record, same node
    expect(tally.list()).toEqual([{ app: 'ee', service: 'dew', role: 'dew', calls: 11, taken: 7 }]);
  });

  it('counts only model services a deployed manifest gives an exit head', async () => {
    const tally = createExitTally({
      manifest: async (app) => (app === 'nope' ? undefined : manifest(app)),
    });
    await reporter(1, 'dew')(tally, {
      'ee/dew': { calls: 2, taken: 1 },
      'ee/plain': { calls: 5, taken: 5 }, // a model without an exit head
      'ee/step': { calls: 5, taken: 5 }, // a Logic
      'ee/made-up': { calls: 5, taken: 5 },
      'nope/dew': { calls: 5, taken: 5 }, // no such app deployed
    });
    expect(tally.list()).toEqual([{ app: 'ee', service: 'dew', role: 'dew', calls: 2, taken: 1 }]);
  });

  it('ignores keys that are not app/service, and keeps at most maxExitRows rows', async () => {
    const tally = newTally();
    const dew = reporter(1, 'dew');
    await dew(tally, { nokey: { calls: 1, taken: 1 }, '/x': { calls: 1, taken: 0 } });
    expect(tally.list()).toEqual([]);
    for (let i = 0; i <= maxExitRows; i += 1000) {
      const batch: Record<string, { calls: number; taken: number }> = {};
      for (let j = i; j < Math.min(i + 1000, maxExitRows + 10); j++)
        batch[`a${j}/s`] = { calls: 1, taken: 0 };
      await reporter(10 + i, 'dew')(tally, batch);
    }
    expect(tally.list()).toHaveLength(maxExitRows);
  });
});
