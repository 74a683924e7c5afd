/**
 * `brume.js`: one script tag makes any page a Brume node and gives it `window.brume`.
 *   <script src="https://RELAY/brume.js" data-role="dew" data-contribute="true" async></script>
 * `data-timeout-ms` bounds each call (default 120000: the first may load a model); past it the
 * call rejects with code E_TIMEOUT.
 * The node runs in a hidden iframe of the relay's origin, so its keys, storage and context are
 * out of the host page's reach; this file only forwards calls by message. It is small on purpose:
 * onnxruntime and the models load in the iframe, and only when work arrives.
 */
import type { EmbedReply, EmbedRequest } from './embed-protocol';

interface Status {
  ready: boolean;
  joined: boolean;
  contributing: boolean;
  node: string;
}

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

  const pending = new Map<number, { resolve(v: unknown): void; reject(e: Error): void }>();
  let nextId = 1;
  let status: Status = { ready: false, joined: false, contributing: contribute, node: '' };
  let readyResolve: () => void;
  const ready = new Promise<void>((r) => {
    readyResolve = r;
  });

  // What a person sees: whether this page lends their computer to the fabric, and a way to stop.
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
  const paint = () => {
    badge.textContent = status.contributing
      ? 'Brume: this page shares your computer · pause'
      : 'Brume: not sharing your computer';
    badge.disabled = !contribute;
    badge.setAttribute('data-contributing', String(status.contributing));
  };
  badge.addEventListener('click', () => void send('pause', [status.contributing]));

  window.addEventListener('message', (e: MessageEvent) => {
    if (e.origin !== relay || e.source !== frame.contentWindow) return;
    const m = e.data as EmbedReply;
    if (m?.brume !== 1) return;
    if ('status' in m) {
      status = m.status;
      paint();
      if (status.ready) readyResolve();
      return;
    }
    const p = pending.get(m.id);
    if (!p) return;
    pending.delete(m.id);
    if (m.ok) p.resolve(m.value);
    else p.reject(Object.assign(new Error(m.error.message), m.error));
  });

  // Every call has a deadline, also while the iframe is still loading: a node that never answers
  // must not leave the page waiting for ever.
  function send(op: EmbedRequest['op'], args: unknown[]): Promise<unknown> {
    const id = nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        pending.delete(id);
        const message = `brume: "${op}" got no answer within ${timeoutMs} ms`;
        reject(Object.assign(new Error(message), { name: 'TimeoutError', code: 'E_TIMEOUT' }));
      }, timeoutMs);
      pending.set(id, {
        resolve(v) {
          clearTimeout(timer);
          resolve(v);
        },
        reject(e) {
          clearTimeout(timer);
          reject(e);
        },
      });
      void ready.then(() => {
        if (pending.has(id)) frame.contentWindow!.postMessage({ brume: 1, id, op, args }, relay);
      });
    });
  }

  const invoke = (app: string, service: string, input: unknown, qos = {}) =>
    send('invoke', [app, service, input, qos]) as Promise<{ value: unknown; node: string }>;
  (window as unknown as { brume: unknown }).brume = {
    ready,
    invoke,
    call: async (app: string, service: string, input: unknown, qos = {}) =>
      (await invoke(app, service, input, qos)).value,
    schedule: (app: string, service: string, qos = {}) => send('schedule', [app, service, qos]),
    status: () => ({ ...status }),
  };

  const mount = () => {
    document.body.append(frame, badge);
    paint();
  };
  if (document.body) mount();
  else document.addEventListener('DOMContentLoaded', mount);
})();
