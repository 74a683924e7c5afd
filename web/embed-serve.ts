/**
 * The iframe's side of the embed protocol (web/embed-protocol.ts): runs each request from the
 * host page on this node's page API and posts the answer back, once, by id; pushes the node's
 * status and the changes a context watch asked for.
 * @example serveEmbed(api, (reply) => window.parent.postMessage(reply, '*'));
 *          window.addEventListener('message', (e) => { if (e.source === window.parent) serve(e.data); });
 */
import { toWire } from '../core/errors';
import type { AppContext, BrumeApi } from '../core/page-api';
import type { EmbedOps, EmbedReply, EmbedRequest } from './embed-protocol';

/** Answers a function that takes one message from the host page. */
export function serveEmbed(api: BrumeApi, post: (reply: EmbedReply) => void) {
  const contexts = new Map<string, AppContext>();
  const ctx = (app: string) => {
    const c = contexts.get(app) ?? api.context(app);
    contexts.set(app, c);
    return c;
  };
  const watches = new Map<number, () => void>();

  const ops: { [Op in keyof EmbedOps]: (args: EmbedOps[Op], id: number) => Promise<unknown> } = {
    invoke: (a) => api.invoke(...a),
    schedule: (a) => api.schedule(...a),
    describe: () => api.describe(),
    pause: ([paused]) => api.pause(Boolean(paused)),
    'context.get': ([app, key, scope]) => ctx(app).get(key, scope),
    'context.put': ([app, key, value, options]) => ctx(app).put(key, value, options),
    'context.delete': ([app, key, scope]) => ctx(app).delete(key, scope),
    'context.watch': async ([app, prefix], id) => {
      const off = ctx(app).watch(String(prefix), (key, read) =>
        post({ brume: 1, id: 0, watch: id, key, read }),
      );
      watches.set(id, off);
    },
    'context.unwatch': async ([watch]) => {
      watches.get(watch)?.();
      watches.delete(watch);
    },
    'jobs.submit': ([request]) => api.jobs.submit(request),
    'jobs.get': ([id]) => api.jobs.get(id),
    'jobs.cancel': ([id]) => api.jobs.cancel(id),
  };

  // The host page learns the node's status when it is ready and on every change.
  const status = () => post({ brume: 1, id: 0, status: api.status() });
  api.onStatus(status);
  if (api.status().ready) status();

  return (data: unknown): void => {
    const m = data as Partial<EmbedRequest>;
    if (m?.brume !== 1 || typeof m.id !== 'number' || !Array.isArray(m.args)) return;
    const id = m.id;
    const run = Object.hasOwn(ops, m.op ?? '')
      ? (ops[m.op as keyof EmbedOps] as (args: unknown[], id: number) => Promise<unknown>)
      : undefined;
    const answer = run
      ? Promise.resolve().then(() => run(m.args as unknown[], id))
      : Promise.reject(new Error(`unknown operation ${String(m.op)}`));
    answer.then(
      (value) => post({ brume: 1, id, ok: true, value }),
      (err: unknown) => post({ brume: 1, id, ok: false, error: toWire(err) }),
    );
  };
}
