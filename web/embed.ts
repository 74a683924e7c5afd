// The node inside the relay's iframe for a `brume.js` script tag: the host page talks to it by
// message only (web/embed-protocol.ts).

import { toWire } from '../core/errors';
import { startBrume } from './brume';
import type { EmbedReply, EmbedRequest } from './embed-protocol';

const q = new URLSearchParams(location.search);
const brume = startBrume({
  role: q.get('role') === 'fog' ? 'fog' : 'dew',
  contribute: q.get('contribute') !== 'false',
});

const post = (reply: EmbedReply) => window.parent.postMessage(reply, '*');

async function status(): Promise<void> {
  const f = await brume.fabric;
  post({
    brume: 1,
    id: 0,
    status: { ready: true, joined: f.status === 'joined', contributing: !f.paused, node: f.nodeId },
  });
}

void brume.ready.then(async () => {
  const f = await brume.fabric;
  f.onStatus(() => void status());
  await status();
});

window.addEventListener('message', (e: MessageEvent) => {
  if (e.source !== window.parent) return;
  const m = e.data as Partial<EmbedRequest>;
  if (m?.brume !== 1 || typeof m.id !== 'number' || !Array.isArray(m.args)) return;
  const args = m.args;
  const id = m.id;
  const run = async (): Promise<unknown> => {
    switch (m.op) {
      case 'invoke': {
        const [app, service, input, qos] = args as [string, string, unknown, object?];
        const r = await brume.invoke(app, service, input, qos ?? {});
        return { value: r.value, node: r.node, via: r.via, rpc: r.rpc, ms: r.ms, reason: r.reason };
      }
      case 'schedule': {
        const [app, service, qos] = args as [string, string, object?];
        return brume.schedule(app, service, qos ?? {});
      }
      case 'pause': {
        const f = await brume.fabric;
        f.pause('user', Boolean(args[0]));
        await status();
        return !f.paused;
      }
      default:
        throw new Error(`unknown operation ${String(m.op)}`);
    }
  };
  run().then(
    (value) => post({ brume: 1, id, ok: true, value }),
    (err: unknown) => post({ brume: 1, id, ok: false, error: toWire(err) }),
  );
});
