/**
 * A caller's side of a session (PROTOCOL.md §5.9): the handle `window.brume.session()` answers.
 * Its calls go, one after the other in the order made, to the node the relay placed the session
 * on (pinned there by `qos.privacy`), until the relay moves it (`session-moved`, handled by
 * `moved`). A call that fails because its node vanished or refused it (lost, paused, leaving) is
 * sent again once, on the node the session is on then — after the relay's move, or after asking
 * the relay to place it without that node — so each call gets exactly one answer. A call in
 * flight to a node the relay reports lost is given up at once and sent on the same way. The relay
 * closes a caller's sessions when the caller's own socket drops: when the node joins again, each
 * open handle is placed again with its requirements (a new id, `why: 'rejoined'`), and calls made
 * meanwhile wait for that.
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
  /** The relay's reason, or 'rejoined': placed again, under a new id, after this node rejoined. */
  why: SessionMoved['why'] | 'rejoined';
  stateBytes?: number;
  session: SessionView;
}

/** What a handle did with its calls so far. */
export interface SessionStats {
  /** Calls made (each answered once). */
  calls: number;
  /** Calls sent again on the session's next node after theirs failed or was lost. */
  retried: number;
  /** Of those, calls given up while still waiting, because the relay reported their node lost. */
  gaveUp: number;
  /** Times the session was placed again after this node rejoined the relay. */
  rejoined: number;
}

/** `A`: a call's answer with where it ran (the page API's InvokeAnswer). */
export interface SessionHandle<A extends { value: unknown } = { value: unknown; node: string }> {
  /** The relay's id for it: a new one after this node rejoined (`onMove`, why 'rejoined'). */
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
  stats(): SessionStats;
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

/** How long a call waits for its session to be placed again after this node lost the relay. */
export const REJOIN_WAIT_MS = 30_000;

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

/** What the node's table holds of one open handle. */
interface Entry {
  moved(m: SessionMoved): void;
  /** This node lost the relay: the relay closed the session; calls wait for `rejoined`. */
  offline(): void;
  /** This node joined again: the session is placed again with its requirements. */
  rejoined(): Promise<void>;
  /** The node closed: the handle is closed. */
  close(): void;
}

/** A promise with its settling functions; its rejection is handled by whoever awaits it. */
function gate() {
  let resolve = () => {};
  let reject = (_: unknown) => {};
  const promise = new Promise<void>((y, n) => {
    resolve = y;
    reject = n;
  });
  promise.catch(() => {});
  return { promise, resolve, reject };
}

/** The node's open sessions: `moved` frames reach their handles, and rejoins place them again. */
export class Sessions<A extends { value: unknown }> {
  /** By the session's id now (it changes when a rejoin places it again). */
  private readonly open = new Map<string, Entry>();

  constructor(private readonly deps: SessionDeps<A>) {}

  /** Opens a session for `service` of `app` and answers its handle. */
  async session(app: string, service: string, options: SessionOptions): Promise<SessionHandle<A>> {
    const request = sessionRequest(app, service, options);
    const { deps } = this;
    const sessions = this.open;
    let view = await deps.open(request);
    /** Why later calls are refused: E_CLOSED, or the refusal of a rejoin's placement. */
    let ended: BrumeError | undefined;
    /** Set while this node is away from the relay, settled once the session is placed again. */
    let away: ReturnType<typeof gate> | undefined;
    /** Placements after a rejoin so far: a call placed before one is not judged by its node. */
    let epoch = 0;
    const stats: SessionStats = { calls: 0, retried: 0, gaveUp: 0, rejoined: 0 };
    const listeners = new Set<(m: SessionMove) => void>();
    /** The last call made: the next one starts after it settles. */
    let tail: Promise<unknown> = Promise.resolve();
    const tell = (move: SessionMove) => {
      for (const l of [...listeners]) l(move);
    };
    const moveTo = (next: SessionView, from: string, why: SessionMove['why'], bytes?: number) => {
      view = next;
      if (next.node === from) return;
      tell({
        from,
        to: next.node,
        why,
        session: next,
        ...(bytes !== undefined && { stateBytes: bytes }),
      });
    };
    const end = (why: BrumeError) => {
      if (ended) return;
      ended = why;
      sessions.delete(view.id);
      away?.reject(why);
      away = undefined;
    };
    /** Waits, while this node is away, until the session is placed again (bounded). */
    const placed = async () => {
      const waiting = away;
      if (!waiting) return;
      let timer: ReturnType<typeof setTimeout> | undefined;
      const late = new Promise<never>((_, reject) => {
        timer = setTimeout(
          () =>
            reject(
              new DisconnectedError(
                `session ${view.id}: not placed again within ${REJOIN_WAIT_MS} ms of losing the relay`,
              ),
            ),
          REJOIN_WAIT_MS,
        );
      });
      try {
        await Promise.race([waiting.promise, late]);
      } finally {
        clearTimeout(timer);
      }
    };
    const entry: Entry = {
      moved: (m) => moveTo(m.session, m.from, m.why, m.stateBytes),
      offline() {
        away ??= gate();
      },
      async rejoined() {
        if (ended) return;
        away ??= gate();
        const waiting = away;
        const from = view.node;
        let next: SessionView;
        try {
          next = await deps.open(request);
        } catch (e) {
          // Lost again before the answer: the next join tries again. Refused: the handle ends.
          if (e instanceof BrumeError && e.code === 'E_DISCONNECTED') return;
          return end(e instanceof BrumeError ? e : new DisconnectedError(String(e)));
        }
        if (ended) return deps.send({ t: 'session-close', session: next.id });
        sessions.delete(view.id);
        sessions.set(next.id, entry);
        view = next;
        epoch++;
        stats.rejoined++;
        if (away === waiting) away = undefined;
        waiting.resolve();
        // Told even when the node is the same: the id (and a `{session}` state key) changed.
        tell({ from, to: next.node, why: 'rejoined', session: next });
      },
      close: () => end(new ClosedError(`session ${view.id} was closed: its node closed`)),
    };
    sessions.set(view.id, entry);

    const refused = () => ended ?? new ClosedError(`session ${view.id} was closed`);
    const once = async (input: unknown, rpc?: string): Promise<A> => {
      if (ended) throw refused();
      await placed();
      if (ended) throw refused();
      stats.calls++;
      const node = view.node;
      const at = epoch;
      const rpcAsked = rpc ?? options.rpc;
      // The relay lost the node (its socket closed): a call waiting on it over a data channel
      // may wait long for the channel to notice; it is given up at once and sent on.
      let off = () => {};
      let gaveUp = false;
      const lost = new Promise<never>((_, reject) => {
        const l = (m: SessionMove) => {
          if (m.why !== 'lost' || m.from !== node) return;
          gaveUp = true;
          reject(new DisconnectedError(`node ${node.slice(0, 8)} was lost`));
        };
        listeners.add(l);
        off = () => listeners.delete(l);
      });
      lost.catch(() => {});
      try {
        return await Promise.race([deps.call(app, service, input, node, rpcAsked), lost]);
      } catch (e) {
        if (ended || !(e instanceof BrumeError) || !retried.has(e.code)) throw e;
        off();
        stats.retried++;
        if (gaveUp) stats.gaveUp++;
        await placed();
        // Not moved yet: the relay places it without that node (or answers where it moved).
        // Placed again after a rejoin meanwhile: that placement is fresh, the node not judged.
        if (epoch === at && view.node === node) {
          try {
            moveTo(
              await deps.open({ ...request, session: view.id, exclude: [node] }),
              node,
              'asked',
            );
          } catch (again) {
            // This node lost the relay while asking: the rejoin places it.
            if (!away) throw again;
            await placed();
          }
        }
        if (ended) throw refused();
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
    return {
      get id() {
        return view.id;
      },
      get node() {
        return view.node;
      },
      get placement() {
        return view;
      },
      invoke,
      call: async (input, rpc) => (await invoke(input, rpc)).value,
      close() {
        if (ended) return;
        const id = view.id;
        end(new ClosedError(`session ${id} was closed`));
        deps.send({ t: 'session-close', session: id });
      },
      onMove(cb) {
        listeners.add(cb);
        return () => listeners.delete(cb);
      },
      stats: () => ({ ...stats }),
    };
  }

  /** The relay moved one of this node's sessions. */
  moved(msg: SessionMoved): void {
    this.open.get(msg.session.id)?.moved(msg);
  }

  /** This node lost the relay, which closed its sessions: their calls wait for the rejoin. */
  offline(): void {
    for (const e of this.open.values()) e.offline();
  }

  /** This node joined (again): each open session is placed again with its requirements. */
  rejoined(): Promise<void> {
    return Promise.all([...this.open.values()].map((e) => e.rejoined())).then(() => {});
  }

  /** The node closed: every handle is closed; their calls reject with E_CLOSED. */
  close(): void {
    for (const e of [...this.open.values()]) e.close();
  }
}
