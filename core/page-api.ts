/**
 * The API page code gets as `window.brume`: the same on the join page (web/api.ts) and on any site
 * through the embed script (web/embed-tag.ts, which carries each call to the node in its iframe
 * by message). Internals for tests and benchmarks are not part of it: the join page keeps them
 * on a separate `window.brumeDebug`.
 * @example await brume.ready;
 *          const { digit } = await brume.call('digits', 'classify', { width, height, pixels });
 *          const where = await brume.schedule('digits', 'classify', { accuracy: 0.95 });
 *          await brume.context('vad').put('state', { h: [0.1] }, { ttlMs: 2000 });
 *          const s = await brume.session('vad', 'detect', { fps: 8, stateKey: 'vad/{session}' });
 *          const { probs } = await s.call({ stream: s.id, samples });
 */
import type { ContextRead, PutOptions } from './context/client';
import type { Scope } from './context/replica';
import type { JobsApi } from './jobs-client';
import type { CallOptions, CallResult, NodeDescription } from './runtime';
import type { Qos } from './scheduler';
import type { SessionHandle, SessionOptions } from './session/client';

export interface BrumeApi {
  /** Resolves once the node knows the deployed apps (from the relay, or its cache when cut off). */
  ready: Promise<void>;
  /** Runs `service` of `app` wherever the fabric best meets `qos`, and answers its result. */
  call(
    app: string,
    service: string,
    input: unknown,
    qos?: Qos,
    opts?: CallOptions,
  ): Promise<unknown>;
  /** Like call, with where it ran and why, the variant, the latency and the trace. */
  invoke(
    app: string,
    service: string,
    input: unknown,
    qos?: Qos,
    opts?: CallOptions,
  ): Promise<InvokeAnswer>;
  /** The Edgeless API: where a request would run and why, without running it. */
  schedule(
    app: string,
    service: string,
    qos?: Qos,
    opts?: { rpc?: string },
  ): Promise<ScheduleAnswer>;
  /**
   * Opens a session (PROTOCOL.md §5.9): a stream of calls to `service` of `app` placed once by
   * the relay for `fps` frames a second within `energyBudget` mJ a frame; the handle's calls go
   * to that node until the relay moves the session, and a call its node vanished under is sent
   * again, once, to the next. After this node's own link to the relay drops, the session is
   * placed again, under a new id, when it rejoins (`onMove`, why 'rejoined').
   */
  session(
    app: string,
    service: string,
    options: SessionOptions,
  ): Promise<SessionHandle<InvokeAnswer>>;
  /** The context store of `app`, shared with the app's instances everywhere; this node keeps it. */
  context(app: string): AppContext;
  /** The node's backends, apps and measured latencies. */
  describe(): Promise<NodeDescription>;
  /** Whether the node is ready, joined to the fabric and serving others, and its id. */
  status(): NodeStatus;
  /** Calls `listener` with the status whenever it changes; answers an unsubscribe. */
  onStatus(listener: (s: NodeStatus) => void): () => void;
  /** Stops (true) or resumes (false) serving requests for others: a person's choice. */
  pause(paused: boolean): Promise<NodeStatus>;
  /**
   * Asynchronous jobs on the relay (PROTOCOL.md §6.2): submit now, read the result later, even
   * from another page; sent without a credential (the relay must take anonymous calls).
   */
  jobs: JobsApi;
}

/** An answer with where it ran: `via` says how the request got to `node`. */
export interface InvokeAnswer extends CallResult {
  node: string;
  via: 'local' | 'peer' | 'relay';
  reason: string;
}

/**
 * Where a request would run: the node, the rpc called there (a Logic's rpc, or a Model's variant),
 * the model variant that decides its accuracy ('' when no model is involved), the estimate and
 * why. `POST /api/schedule` answers the same shape.
 */
export interface ScheduleAnswer {
  node: string;
  rpc: string;
  variant: string;
  estimateMs: number;
  reason: string;
}

export interface NodeStatus {
  /** The node knows the deployed apps and has its fabric link (joined or not). */
  ready: boolean;
  joined: boolean;
  contributing: boolean;
  node: string;
}

export interface AppContext {
  /** `{ value, expiresAt? }`, `{ expired: true }`, or undefined for a key never set or deleted. */
  get(key: string, scope?: Scope): Promise<ContextRead>;
  /**
   * Resolves once the relay has the write durably (online; at most 5 s, after that it waits in the
   * outbox) or once it is queued (offline). A refusal rejects with the relay's error (E_CLOCK for
   * a clock far ahead, E_LIMIT...), and the node takes the write back.
   */
  put(key: string, value: unknown, options?: PutOptions): Promise<void>;
  delete(key: string, scope?: Scope): Promise<void>;
  /** Calls `cb` once per change under `prefix`, in order per key; answers an unsubscribe. */
  watch(prefix: string, cb: (key: string, read: ContextRead) => void): () => void;
}
