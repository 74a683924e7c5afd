// A fog's part of context sync is a pure function of the relay's `ctx-fan` and a `send`.
import { describe, expect, it } from 'vitest';
import { type FanFrame, passOn } from '../../core/node/fog';
import type { PeerContext } from '../../core/node/links';

const op = { opId: 'o1', app: 'demo', key: 'k' } as unknown as FanFrame['op'];
const fan = (to: FanFrame['to']): FanFrame => ({ t: 'ctx-fan', seq: 7, op, to });

describe('passOn', () => {
  it('sends each child the change with its own prev, and reports those it could not reach', () => {
    const sent: [string, PeerContext][] = [];
    const unsent = passOn(
      fan([
        { node: 'a'.repeat(32), prev: 3 },
        { node: 'b'.repeat(32), prev: 5 },
      ]),
      (node, frame) => {
        sent.push([node, frame]);
        return node.startsWith('a');
      },
    );
    expect(sent).toEqual([
      ['a'.repeat(32), { t: 'ctx-op', id: 0, prev: 3, seq: 7, op }],
      ['b'.repeat(32), { t: 'ctx-op', id: 0, prev: 5, seq: 7, op }],
    ]);
    expect(unsent).toEqual({ t: 'ctx-unsent', seq: 7, to: [{ node: 'b'.repeat(32), prev: 5 }] });
  });

  it('answers nothing when every child was reached', () => {
    expect(passOn(fan([{ node: 'a'.repeat(32), prev: 0 }]), () => true)).toBeUndefined();
  });
});
