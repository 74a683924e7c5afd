import type { CallOptions, CallResult, NodeDescription, Runtime } from '../core/runtime';
import { createRuntime } from '../core/runtime';
import type { Qos } from '../core/scheduler';
import { browserPlatform } from './platform';

declare global {
  interface Window {
    brume: BrumeApi;
  }
}

/** The page-facing API, as `window.brume`. */
export interface BrumeApi {
  /** Resolves once the node knows the deployed apps. */
  ready: Promise<void>;
  /** Runs `service` of `app` and answers its result. */
  call(app: string, service: string, input: unknown, qos?: Qos): Promise<unknown>;
  /** Like call, with the variant, latency and trace of every service that ran. */
  invoke(
    app: string,
    service: string,
    input: unknown,
    qos?: Qos,
    opts?: CallOptions,
  ): Promise<CallResult>;
  describe(): Promise<NodeDescription>;
  /** The node's runtime, for tests and benchmarks. */
  node: Runtime;
}

/**
 * Boots this tab as a Brume node against `relay` (default: this page's origin).
 * @example const brume = startBrume(); await brume.ready;
 *          await brume.call('digits', 'classify', { width, height, pixels });
 */
export function startBrume(relay: string = location.origin): BrumeApi {
  const node = createRuntime(browserPlatform(relay), {
    logicWorkers: Math.max(1, Math.min(4, (navigator.hardwareConcurrency || 2) - 1)),
  });
  const ready = node.refresh().then(({ failed }) => {
    for (const f of failed) console.warn(`[brume] app ${f.app} not loaded: ${f.error.message}`);
  });
  return {
    ready,
    node,
    async call(app, service, input, qos) {
      await ready;
      return (await node.call(app, service, input, qos)).value;
    },
    async invoke(app, service, input, qos, opts) {
      await ready;
      return node.call(app, service, input, qos, opts);
    },
    describe: () => node.describe(),
  };
}
