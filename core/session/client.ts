/**
 * A caller's side of a session (PROTOCOL.md §5.9): the handle `window.brume.session()` answers.
 * Its calls go, one after the other in the order made, to the node the relay placed the session
 * on (pinned there by `qos.privacy`), until the relay moves it (`session-moved`, handled by
 * `moved`). A call that fails because its node vanished or refused it (lost, paused, leaving) is
 * sent again once, on the node the session is on then — after the relay's move, or after asking
 * the relay to place it without that node — so each call gets exactly one answer. A call in
 * flight to a node the relay reports lost is given up at once and sent on the same way.
 * @example const s = await openSession(deps, 'vad', 'detect', { fps: 8, stateKey: 'vad/{session}' });
 *          const r = await s.call({ stream: s.id, samples });   s.onMove((m) => …);   s.close();
 */
import { BrumeError, ClosedError, DisconnectedError, InputError } from '../errors';
import {
  MAX_SESSION_FPS,
  type SessionMoved,
  type SessionOpen,
  type SessionView,
  type ToRelay,
} from '../protocol';

/** What a session needs: frames per second, and optionally the rest of the energy model. */
export interface SessionOptions {
  /** Frames per second: each frame's latency budget is 1000 / fps ms. */
  fps: number;
  /** Energy the caller may spend per frame, in millijoules. */
  energyBudget?: number;
  /** Bytes one frame uploads; default 0. */
  frameBytes?: number;
  /** This device's own measured time per frame, ms (absent: the relay's figure for it). */
  localMs?: number;
  /** Context key of the session's state, `{session}` standing for its id: `vad/{session}`. */
  stateKey?: string;
  /** A Logic's rpc (default its first). */
  rpc?: string;
}

/** How a session moved, as `onMove` listeners hear it. */
export interface SessionMove {
  from: string;
  to: string;
  why: SessionMoved['why'];
  stateBytes?: number;
  session: SessionView;
}

/** `A`: a call's answer with where it ran (the page API's InvokeAnswer). */
export interface SessionHandle<A extends { value: unknown } = { value: unknown; node: string }> {
  readonly id: string;
  /** The node serving it now. */
  readonly node: string;
  /** The relay's placement: node, estimates, reason. */
  readonly placement: SessionView;
  /** Runs one frame on the session's node; calls run in the order made. */
  call(input: unknown, rpc?: string): Promise<unknown>;
  /** Like call, with where it ran, the latency and the trace. */
  invoke(input: unknown, rpc?: string): Promise<A>;
  /** Ends the session; later calls reject with E_CLOSED. */
  close(): void;
  /** Calls `cb` whenever the session moves to another node; answers an unsubscribe. */
  onMove(cb: (move: SessionMove) => void): () => void;
}

/** What a handle needs of its node. */
export interface SessionDeps<A extends { value: unknown }> {
  /** Asks the relay (a `session-open` request); answers the placement. */
  open(frame: Omit<SessionOpen, 'id'>): Promise<SessionView>;
  send(frame: ToRelay): void;
  /** Runs the call on `node` (this node's own id: here). */
  call(app: string, service: string, input: unknown, node: string, rpc?: string): Promise<A>;
}

/** Errors after which a call is sent again on the session's next node: its node was not there. */
const retried = new Set(['E_UNAVAILABLE', 'E_DISCONNECTED', 'E_NO_LINK', 'E_QOS', 'E_CLOSED']);

/** Checks what page code gave (E_INPUT naming the field) and turns it into the frame's fields. */
export function sessionRequest(app: string, service: string, o: SessionOptions) {
  const field = (name: string, ok: boolean) => {
    if (!ok) throw new InputError(`options.${name}: out of range or not a number`);
  };
  if (typeof app !== 'string' || typeof service !== 'string')
    throw new InputError('app and service: expected strings');
  field('fps', typeof o?.fps === 'number' && o.fps > 0 && o.fps <= MAX_SESSION_FPS);
  const optional = (name: keyof SessionOptions, max: number, int = false) => {
    const v = o[name];
    if (v === undefined) return;
    field(name, typeof v === 'number' && v >= 0 && v <= max && (!int || Number.isInteger(v)));
  };
  optional('energyBudget', 1_000_000);
  optional('frameBytes', 16 * 1024 * 1024, true);
  optional('localMs', 600_000);
  if (o.stateKey !== undefined)
    field(
      'stateKey',
      typeof o.stateKey === 'string' && o.stateKey.length > 0 && o.stateKey.length <= 256,
    );
  if (o.rpc !== undefined) field('rpc', typeof o.rpc === 'string' && o.rpc.length <= 64);
  return {
    t: 'session-open' as const,
    app,
    service,
    fps: o.fps,
    ...(o.energyBudget !== undefined && { energyBudgetMj: o.energyBudget }),
    ...(o.frameBytes !== undefined && { frameBytes: o.frameBytes }),
    ...(o.localMs !== undefined && { localMs: o.localMs }),
    ...(o.stateKey !== undefined && { stateKey: o.stateKey }),
    ...(o.rpc !== undefined && { rpc: o.rpc }),
  };
}

/** The node's open sessions: `moved` frames reach their handles. */
export class Sessions<A extends { value: unknown }> {
  private readonly open = new Map<string, (m: SessionMoved) => void>();

  constructor(private readonly deps: SessionDeps<A>) {}

  /** Opens a session for `service` of `app` and answers its handle. */
  async session(app: string, service: string, options: SessionOptions): Promise<SessionHandle<A>> {
    const request = sessionRequest(app, service, options);
    const { deps } = this;
    let view = await deps.open(request);
    let closed = false;
    const listeners = new Set<(m: SessionMove) => void>();
    /** The last call made: the next one starts after it settles. */
    let tail: Promise<unknown> = Promise.resolve();
    const moveTo = (next: SessionView, from: string, why: SessionMoved['why'], bytes?: number) => {
      view = next;
      if (next.node === from) return;
      const move = {
        from,
        to: next.node,
        why,
        session: next,
        ...(bytes !== undefined && { stateBytes: bytes }),
      };
      for (const l of [...listeners]) l(move);
    };
    this.open.set(view.id, (m) => moveTo(m.session, m.from, m.why, m.stateBytes));
    const id = view.id;

    const once = async (input: unknown, rpc?: string): Promise<A> => {
      if (closed) throw new ClosedError(`session ${id} was closed`);
      const node = view.node;
      const rpcAsked = rpc ?? options.rpc;
      // The relay lost the node (its socket closed): a call waiting on it over a data channel
      // may wait long for the channel to notice; it is given up at once and sent on.
      let off = () => {};
      const lost = new Promise<never>((_, reject) => {
        const l = (m: SessionMove) => {
          if (m.why === 'lost' && m.from === node)
            reject(new DisconnectedError(`node ${node.slice(0, 8)} was lost`));
        };
        listeners.add(l);
        off = () => listeners.delete(l);
      });
      lost.catch(() => {});
      try {
        return await Promise.race([deps.call(app, service, input, node, rpcAsked), lost]);
      } catch (e) {
        if (closed || !(e instanceof BrumeError) || !retried.has(e.code)) throw e;
        // Not moved yet: the relay places it without that node (or answers where it moved).
        if (view.node === node) {
          moveTo(await deps.open({ ...request, session: id, exclude: [node] }), node, 'asked');
        }
        return deps.call(app, service, input, view.node, rpcAsked);
      } finally {
        off();
      }
    };
    const invoke = (input: unknown, rpc?: string) => {
      const run = tail.then(() => once(input, rpc));
      tail = run.catch(() => {});
      return run;
    };
    const sessions = this.open;
    return {
      id,
      get node() {
        return view.node;
      },
      get placement() {
        return view;
      },
      invoke,
      call: async (input, rpc) => (await invoke(input, rpc)).value,
      close() {
        if (closed) return;
        closed = true;
        sessions.delete(id);
        deps.send({ t: 'session-close', session: id });
      },
      onMove(cb) {
        listeners.add(cb);
        return () => listeners.delete(cb);
      },
    };
  }

  /** The relay moved one of this node's sessions. */
  moved(msg: SessionMoved): void {
    this.open.get(msg.session.id)?.(msg);
  }
}
