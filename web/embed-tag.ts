/**
 * `brume.js`: one script tag makes any page a Brume node and gives it `window.brume`, the same API
 * as the join page's (core/page-api.ts).
 *   <script src="https://RELAY/brume.js" data-role="dew" data-contribute="true" async></script>
 * `data-timeout-ms` bounds each call (default 120000: the first may load a model); past it the
 * call rejects with code E_TIMEOUT.
 * The node runs in a hidden iframe of the relay's origin, so its keys, storage and context are
 * out of the host page's reach; this file only forwards calls by message. It is small on purpose:
 * onnxruntime and the models load in the iframe, and only when work arrives.
 */

import type { ContextRead } from '../core/context/client';
import { fromWire, TimeoutError, UnsupportedError } from '../core/errors';
import { isTerminal, type JobsApi, type JobView } from '../core/jobs-client';
import type { AppContext, BrumeApi, NodeStatus } from '../core/page-api';
import { Pending } from '../core/pending';
import type { EmbedOp, EmbedOps, EmbedReply } from './embed-protocol';

(() => {
  const script = document.currentScript as HTMLScriptElement | null;
  const relay = new URL(script?.dataset.relay ?? script?.src ?? location.href).origin;
  const role = script?.dataset.role === 'fog' ? 'fog' : 'dew';
  const contribute = script?.dataset.contribute !== 'false';
  const timeoutMs =
    Number(script?.dataset.timeoutMs) > 0 ? Number(script?.dataset.timeoutMs) : 120_000;

  const frame = document.createElement('iframe');
  frame.src = `${relay}/embed.html?role=${role}&contribute=${contribute}`;
  frame.title = 'Brume node';
  frame.setAttribute('aria-hidden', 'true');
  Object.assign(frame.style, { display: 'none' });

  // Every call has a deadline, also while the iframe is still loading: a node that never answers
  // must not leave the page waiting for ever.
  const pending = new Pending<unknown, EmbedOp>({
    timeoutMs,
    timeout: (op) => new TimeoutError(`brume: "${op}" got no answer within ${timeoutMs} ms`),
  });
  const watchers = new Map<number, (key: string, read: ContextRead) => void>();
  const statusListeners = new Set<(s: NodeStatus) => void>();
  let status: NodeStatus = { ready: false, joined: false, contributing: contribute, node: '' };
  let readyResolve: () => void;
  const ready = new Promise<void>((r) => {
    readyResolve = r;
  });

  // What a person sees: whether this page lends their computer to the fabric, and a way to stop.
  const badge = badgeButton();
  const paint = () => {
    badge.textContent = status.contributing
      ? 'Brume: this page shares your computer · pause'
      : 'Brume: not sharing your computer';
    badge.disabled = !contribute;
    badge.setAttribute('data-contributing', String(status.contributing));
  };
  badge.addEventListener('click', () => void api.pause(status.contributing));

  window.addEventListener('message', (e: MessageEvent) => {
    if (e.origin !== relay || e.source !== frame.contentWindow) return;
    const m = e.data as EmbedReply;
    if (m?.brume !== 1) return;
    if ('status' in m) {
      status = m.status;
      paint();
      if (status.ready) readyResolve();
      for (const l of [...statusListeners]) l({ ...status });
    } else if ('watch' in m) watchers.get(m.watch)?.(m.key, m.read);
    else if (m.ok) pending.settle(m.id, m.value);
    else pending.fail(m.id, fromWire(m.error));
  });

  const request: Request = (op, args) => {
    const { id, answer } = pending.open(op);
    void ready.then(() => {
      if (pending.has(id)) frame.contentWindow!.postMessage({ brume: 1, id, op, args }, relay);
    });
    return { id, answer };
  };
  const send = <Op extends EmbedOp>(op: Op, args: EmbedOps[Op]) => request(op, args).answer;
  const context = (app: string) => appContext(app, request, watchers);

  const api: BrumeApi = {
    ready,
    invoke: (...args) => send('invoke', args) as ReturnType<BrumeApi['invoke']>,
    call: async (...args) => (await api.invoke(...args)).value,
    schedule: (...args) => send('schedule', args) as ReturnType<BrumeApi['schedule']>,
    describe: () => send('describe', []) as ReturnType<BrumeApi['describe']>,
    // A session's moves would have to cross the message channel as context watches do.
    session: () =>
      Promise.reject(
        new UnsupportedError('sessions are not served through the embed yet: join the relay page'),
      ),
    context,
    status: () => ({ ...status }),
    onStatus(listener) {
      statusListeners.add(listener);
      return () => statusListeners.delete(listener);
    },
    pause: (paused) => send('pause', [paused]) as Promise<NodeStatus>,
    jobs: embedJobs(send),
  };
  window.brume = api;

  const mount = () => {
    document.body.append(frame, badge);
    paint();
  };
  if (document.body) mount();
  else document.addEventListener('DOMContentLoaded', mount);
})();

type Request = <Op extends EmbedOp>(
  op: Op,
  args: EmbedOps[Op],
) => { id: number; answer: Promise<unknown> };

function appContext(
  app: string,
  request: Request,
  watchers: Map<number, (key: string, read: ContextRead) => void>,
): AppContext {
  return {
    get: (key, scope) => request('context.get', [app, key, scope]).answer as Promise<ContextRead>,
    put: async (key, value, options) =>
      void (await request('context.put', [app, key, value, options]).answer),
    delete: async (key, scope) => void (await request('context.delete', [app, key, scope]).answer),
    // A subscription: the iframe sends each change under the watch request's id.
    watch(prefix, cb) {
      const { id, answer } = request('context.watch', [app, prefix]);
      watchers.set(id, cb);
      answer.catch(() => watchers.delete(id));
      return () => {
        if (watchers.delete(id)) request('context.unwatch', [id]).answer.catch(() => {});
      };
    },
  };
}

/**
 * The jobs API through the iframe (which holds the relay's origin). A watch here polls the job
 * each half second and yields each change: the iframe's stream does not cross the message channel.
 */
function embedJobs(
  send: <Op extends EmbedOp>(op: Op, args: EmbedOps[Op]) => Promise<unknown>,
): JobsApi {
  const get = (id: string) => send('jobs.get', [id]) as Promise<JobView>;
  return {
    submit: (r) => send('jobs.submit', [r]) as ReturnType<JobsApi['submit']>,
    get,
    cancel: (id) => send('jobs.cancel', [id]) as Promise<JobView>,
    async *watch(id) {
      let last = '';
      for (;;) {
        const { result: _, ...view } = await get(id);
        if (view.state !== last) yield view;
        last = view.state;
        if (isTerminal(view.state)) return;
        await new Promise((r) => setTimeout(r, 500));
      }
    },
  };
}

function badgeButton(): HTMLButtonElement {
  const badge = document.createElement('button');
  badge.type = 'button';
  Object.assign(badge.style, {
    position: 'fixed',
    right: '12px',
    bottom: '12px',
    zIndex: '2147483647',
    font: '12px system-ui, sans-serif',
    padding: '4px 8px',
    borderRadius: '12px',
    border: '1px solid #b7c0cf',
    background: '#fff',
    color: '#1d2330',
    cursor: 'pointer',
  });
  return badge;
}
