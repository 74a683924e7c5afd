// The node inside the relay's iframe for a `brume.js` script tag: the host page talks to it by
// message only (web/embed-protocol.ts), and gets the same API as the join page.

import { startBrume } from './brume';
import { serveEmbed } from './embed-serve';

const q = new URLSearchParams(location.search);
const { api } = startBrume({
  role: q.get('role') === 'fog' ? 'fog' : 'dew',
  contribute: q.get('contribute') !== 'false',
});

const serve = serveEmbed(api, (reply) => window.parent.postMessage(reply, '*'));
window.addEventListener('message', (e: MessageEvent) => {
  if (e.source === window.parent) serve(e.data);
});
