/**
 * A trusted fog's part of context sync, as a pure function: the relay hands it a change with the
 * dews to pass it on to (`ctx-fan`); it sends the change to each over its channel and reports
 * those it could not reach (`ctx-unsent`), which the relay then serves itself (PROTOCOL.md §5.5).
 * Knows no socket: the node calls it with its peer links, a simulation with its own `send`.
 * @example const unsent = passOn(frame, (node, f) => links.send(node, f)); if (unsent) relay.send(unsent);
 */
import type { ToNode, ToRelay } from '../protocol';
import type { PeerContext } from './links';

export type FanFrame = Extract<ToNode, { t: 'ctx-fan' }>;
export type UnsentFrame = Extract<ToRelay, { t: 'ctx-unsent' }>;

/** Sends `frame`'s change to each child; answers the `ctx-unsent` for those it did not reach. */
export function passOn(
  frame: FanFrame,
  send: (node: string, frame: PeerContext) => boolean,
): UnsentFrame | undefined {
  const unsent = frame.to.filter(
    (t) => !send(t.node, { t: 'ctx-op', id: 0, prev: t.prev, seq: frame.seq, op: frame.op }),
  );
  return unsent.length ? { t: 'ctx-unsent', seq: frame.seq, to: unsent } : undefined;
}
