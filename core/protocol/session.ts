/**
 * Sessions (PROTOCOL.md §5.9): a stream of calls to one service (a camera, a microphone, calls
 * that share context) placed once, not per call. A node opens a session with its frame rate and
 * energy budget; the relay places it with the Nimbus rule (core/session/nimbus.ts) and answers the
 * node chosen with its estimate; the session's calls go to that node until the relay moves it
 * (`session-moved`: the node was lost or left gracefully, its figures moved, the caller asked).
 * @example link.request({ t: 'session-open', id: 0, app: 'vad', service: 'detect', fps: 8 });
 *          // → { t: 'session', id, session: { id: 'a3…', node: 'f0…', latencyMs: 12, … } }
 */
import { z } from 'zod';
import { InputError } from '../errors';
import { contextKey, id, name, nodeId, rpcName } from './fields';

/** A session's id: 24 lowercase hex digits, made by the relay. */
export const sessionId = z.string().regex(/^[0-9a-f]{24}$/);

/** Frames per second a session may ask at most. */
export const MAX_SESSION_FPS = 240;
/** Bytes of a frame a session may declare at most (the largest frame, 16 MiB). */
export const MAX_FRAME_BYTES = 16 * 1024 * 1024;

/** Node → relay: place a new session, or place again (`session`) one this node opened. */
export const sessionOpenFrame = z.object({
  t: z.literal('session-open'),
  id,
  app: name,
  service: name,
  /** A Logic's rpc ('' or absent: its first). */
  rpc: rpcName.optional(),
  /** Frames per second; the latency budget per frame is 1000 / fps ms. */
  fps: z.number().positive().max(MAX_SESSION_FPS),
  /** Energy the caller may spend per frame, in millijoules; absent: no budget. */
  energyBudgetMj: z.number().nonnegative().max(1_000_000).optional(),
  /** Bytes one frame uploads (for the radio energy and the transfer time); default 0. */
  frameBytes: z.number().int().nonnegative().max(MAX_FRAME_BYTES).optional(),
  /** The caller's own time for one frame, measured; absent: the relay's figure for it, if any. */
  localMs: z.number().nonnegative().max(600_000).optional(),
  /**
   * The context key (of the app) that holds the session's state, `{session}` standing for its
   * id, e.g. `vad/{session}`: its size is the state a migration moves.
   */
  stateKey: z.string().min(1).max(256).optional(),
  /** An open session of this node to place again (its requirements changed, or a call failed). */
  session: sessionId.optional(),
  /** Nodes not to place it on (one that just failed a call). */
  exclude: z.array(nodeId).max(16).optional(),
});

/**
 * A session's `stateKey` names its own state: it holds `{session}`, and with the id in its place
 * is a context key. Else E_INPUT: a caller could learn the size of any key of the app.
 */
export function checkStateKey(key: string): void {
  if (!key.includes('{session}'))
    throw new InputError('session stateKey must contain "{session}" (the session\'s own state)');
  if (!contextKey.safeParse(key.replaceAll('{session}', '0'.repeat(24))).success)
    throw new InputError(
      'session stateKey with the session id in it must be a context key (1 to 256 characters)',
    );
}

/** Node → relay: the session is over. */
export const sessionCloseFrame = z.object({ t: z.literal('session-close'), session: sessionId });

/**
 * Node → relay: this node is leaving (`on`: hidden, paused, unloading, battery low) — hand the
 * sessions it serves to other nodes and place none on it — or is back (`on: false`).
 */
export const sessionLeaveFrame = z.object({
  t: z.literal('session-leave'),
  on: z.boolean(),
  reason: z.string().max(64),
});

/** A placed session as the relay tells its caller. */
export const sessionView = z.object({
  id: sessionId,
  app: name,
  service: name,
  /** The node serving it: the caller's own id when running it locally is best. */
  node: nodeId,
  /** Estimated time per frame (network, queue, execution), ms. */
  latencyMs: z.number().nonnegative(),
  /** Estimated energy per frame at the caller, mJ. */
  energyMj: z.number().nonnegative(),
  reason: z.string().max(1024),
});

/** Relay → node: the answer to `session-open`. */
export const sessionFrame = z.object({ t: z.literal('session'), id, session: sessionView });

/** Relay → node: one of its sessions is served by another node from now on. */
export const sessionMovedFrame = z.object({
  t: z.literal('session-moved'),
  session: sessionView,
  /** The node that served it until now. */
  from: nodeId,
  why: z.enum(['lost', 'left', 'figures', 'asked']),
  /** Bytes of the session's state in the context store at the move (its `stateKey`). */
  stateBytes: z.number().int().nonnegative().optional(),
});

/**
 * Relay → node: a session may move to this node next (it is the rule's choice after the node
 * serving it): load the app now, so that its first frame there does not wait for it.
 */
export const sessionWarmFrame = z.object({ t: z.literal('session-warm'), app: name });

export type SessionView = z.infer<typeof sessionView>;
export type SessionOpen = z.infer<typeof sessionOpenFrame>;
export type SessionMoved = z.infer<typeof sessionMovedFrame>;
