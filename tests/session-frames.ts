// Sessions driven by raw nodes against an in-process relay (tests/unit/sessions*.test.ts): join,
// report a front Logic's figure, open or place again a session and read its answer, its moves.
import type { Capabilities, SessionView, ToNode, ToRelay } from '../core/protocol';
import { caps, joinRaw, type RawNode } from './raw-node';
import type { inProcessRelay } from './relay-process';
import { until } from './until';

export type Server = Awaited<ReturnType<typeof inProcessRelay>>;

export async function raw(
  s: Server,
  role: 'dew' | 'fog' = 'dew',
): Promise<RawNode & { id: string }> {
  const { node, welcome } = await joinRaw(s.ws, role);
  return Object.assign(node, { id: welcome.nodeId });
}

/** A heartbeat of a node holding hops whose front Logic takes `ms`, on `battery` or mains. */
export function beat(ms: number, battery?: Capabilities['battery']): ToRelay {
  return {
    t: 'heartbeat',
    load: { queue: 0, maxConcurrency: 2 },
    apps: ['hops'],
    models: {},
    stats: { 'hops/front/entry@logic': { count: 20, p50: ms } },
    paused: false,
    caps: { ...caps, ...(battery && { battery }) },
  };
}

/** Sends a heartbeat and waits until the relay has it. */
export async function report(
  s: Server,
  n: RawNode & { id: string },
  frame: ToRelay,
): Promise<void> {
  n.send(frame);
  const want = frame.t === 'heartbeat' ? frame.stats['hops/front/entry@logic']?.p50 : undefined;
  await until(
    () =>
      s.relay.hub.nodes().find((x) => x.id === n.id)?.stats['hops/front/entry@logic']?.p50 === want,
    `node ${n.id.slice(0, 8)} reported`,
  );
}

let ids = 100;
/** Opens a session from raw node `caller`; answers the placement or the error frame's error. */
export async function open(
  caller: RawNode,
  over: Partial<Extract<ToRelay, { t: 'session-open' }>> = {},
): Promise<SessionView | { code: string; message: string }> {
  const id = ids++;
  caller.send({ t: 'session-open', id, app: 'hops', service: 'front', fps: 10, ...over });
  const answer = await until(
    () =>
      caller.frames.find(
        (f): f is Extract<ToNode, { t: 'session' | 'error' }> =>
          (f.t === 'session' || f.t === 'error') && f.id === id,
      ),
    `an answer to session-open ${id}`,
  );
  return answer.t === 'session' ? answer.session : answer.error;
}

export const moves = (caller: RawNode, session: string) =>
  caller.frames.filter(
    (f): f is Extract<ToNode, { t: 'session-moved' }> =>
      f.t === 'session-moved' && f.session.id === session,
  );
