/**
 * The shapes of a call's options and answer, shared by the runtime, the router and the pipeline
 * executor (core/runtime.ts re-exports them).
 */
import type { BackendName } from './exec/model-runner';

export interface CallOptions {
  /** A Logic's rpc, or a Model's variant; default: the first rpc / the scheduler's choice. */
  rpc?: string;
  /** Force a model backend (tests, benchmarks). */
  backend?: BackendName;
  /** Variants to use per model service, also for calls a Logic makes (tests, benchmarks). */
  pin?: Record<string, string>;
  /** The request's trace id (core/trace.ts); default: a new one, this call being its entry. */
  traceId?: string;
}

/**
 * A call's options as a node serving another passes them to its runtime: not part of the page's
 * `CallOptions` (a signal does not cross postMessage).
 */
export interface ServeOptions extends CallOptions {
  /**
   * Aborted when the caller can no longer hear the answer (the relay socket the call came over
   * closed): a Logic call still waiting for a worker then leaves the pool's queue and never runs.
   */
  gone?: AbortSignal;
}

export interface TraceEntry {
  service: string;
  rpc: string;
  kind: 'logic' | 'model';
  ms: number;
  /** Models: the time inside onnxruntime's run() alone; `ms - engineMs` is what Brume added. */
  engineMs?: number;
  backend?: BackendName;
  reason?: string;
  /** A model with an exit head: whether this run took the exit (PROTOCOL.md §2.1 `exit`). */
  exit?: boolean;
  /** The request it ran for: the same id on every node the request reached. */
  traceId?: string;
  /** The version of the app that ran it. */
  version?: string;
  /** A pipeline's stage it ran for. */
  stage?: string;
  /** The node that ran it (a node's runtime puts its id on every entry it runs). */
  node?: string;
  /** A pipeline stage's fan-out branch. */
  branch?: number;
}

export interface CallResult {
  value: unknown;
  /** The rpc or variant that answered the top-level call. */
  rpc: string;
  ms: number;
  /** The version of the app that answered ('' from a node that did not say: older than versions). */
  version: string;
  /** Every service that ran for this request, innermost first. */
  trace: TraceEntry[];
  /** The request's trace id: given with the call, or made by it. */
  traceId: string;
  /** A pipeline's chosen quality level (PROTOCOL.md §5.8). */
  quality?: number;
}
