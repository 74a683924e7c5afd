// Tools for throwing hostile input at a relay and checking it is still whole afterwards: raw bytes
// over TCP, and an honest node that must still be served (the relay's memory: RelayProcess.rss).
import { connect } from 'node:net';
import { WebSocket } from 'ws';
import { encode } from '../core/codec';
import { type Bundle, buildManifest, packBundle } from '../core/manifest';
import { encodeFrame, type ToNode } from '../core/protocol';
import { wasm } from './apps';
import { joinRaw, onCalls, type RawNode } from './raw-node';

/**
 * Writes `bytes` to the relay's port and answers what came back before the relay closed the
 * socket (or `waitMs` passed with the socket still open). With `reset`, the socket is reset
 * (TCP RST) right after writing, before any answer: what a client that vanishes does. With
 * `end`, the client half-closes after writing, so the relay answers what it can and closes.
 */
export function rawHttp(
  url: string,
  bytes: Uint8Array | string,
  options: { reset?: boolean; end?: boolean; waitMs?: number } = {},
): Promise<string> {
  const { host, hostname, port } = new URL(url);
  // Requests name the relay as `Host: 127.0.0.1`; the relay answers only its own names (host
  // and port), so that line becomes its real one, and a fuzzed Host is sent as generated.
  if (typeof bytes === 'string') bytes = bytes.replace('Host: 127.0.0.1\r\n', `Host: ${host}\r\n`);
  else
    bytes = Buffer.from(
      Buffer.from(bytes).toString('latin1').replace('Host: 127.0.0.1\r\n', `Host: ${host}\r\n`),
      'latin1',
    );
  return new Promise((resolve) => {
    const socket = connect(Number(port), hostname);
    let got = '';
    const done = () => {
      clearTimeout(timer);
      socket.destroy();
      resolve(got);
    };
    // An answer that never ends is an answer too: the caller checks the relay, not this socket.
    const timer = setTimeout(done, options.waitMs ?? 2000);
    socket.on('data', (d) => (got += d.toString('latin1')));
    socket.on('error', done);
    socket.on('close', done);
    socket.on('connect', () => {
      if (options.end && !options.reset) socket.end(bytes);
      else socket.write(bytes);
      if (options.reset) {
        socket.resetAndDestroy();
        done();
      }
    });
  });
}

/** An upgrade request for `path` with extra header lines. */
export function upgradeRequest(path: string, headers: string[] = []): string {
  return [
    `GET ${path} HTTP/1.1`,
    'Host: 127.0.0.1',
    'Connection: Upgrade',
    'Upgrade: websocket',
    'Sec-WebSocket-Version: 13',
    'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==',
    ...headers,
    '',
    '',
  ].join('\r\n');
}

/** The relay answers `/api/health`; throws with what it answered otherwise. */
export async function healthy(url: string): Promise<void> {
  const res = await fetch(`${url}/api/health`);
  const body = (await res.json()) as { ok?: boolean };
  if (res.status !== 200 || body.ok !== true) {
    throw new Error(`/api/health answered ${res.status} ${JSON.stringify(body)}`);
  }
}

/** An app with one Logic service; raw nodes answer its calls, so its file is never run. */
export async function fuzzApp(): Promise<Bundle> {
  // A real Logic all the same: a deploy checks the rpcs against the wasm's exports.
  const files = { 'echo.wasm': wasm('echo') };
  const manifest = await buildManifest(
    {
      brume: 1,
      name: 'fuzz',
      version: '1.0.0',
      services: { echo: { kind: 'logic', file: 'echo.wasm', rpcs: ['echo'] } },
    },
    files,
  );
  return { manifest, files };
}

/** Deploys the fuzz app with the relay's admin token. */
export async function deployFuzzApp(url: string, token: string): Promise<void> {
  const b = await fuzzApp();
  const res = await fetch(`${url}/api/apps`, {
    method: 'POST',
    headers: { 'content-type': 'application/vnd.brume.bundle', authorization: `Bearer ${token}` },
    body: Buffer.from(packBundle(b.manifest, b.files)),
  });
  if (res.status >= 300) throw new Error(`deploy answered ${res.status}: ${await res.text()}`);
}

/** Answers every call frame the node gets with `answer(input)`. */
export function serve(node: RawNode, answer: (input: unknown) => unknown): void {
  serveBytes(node, (f) =>
    encodeFrame({ t: 'result', id: f.id, value: answer(f.input), rpc: f.rpc, ms: 0 }),
  );
}

/** Answers every call frame the node gets with the bytes `frame(call)` makes, sent as they are. */
export function serveBytes(
  node: RawNode,
  frame: (call: Extract<ToNode, { t: 'call' }>) => Uint8Array,
): void {
  onCalls(node, (f) => {
    if (node.ws.readyState === node.ws.OPEN) node.ws.send(frame(f));
  });
}

/**
 * A result frame whose value is `levels` nested arrays: valid MessagePack that the relay's
 * decoder takes and its encoder (depth 100) cannot write back. Built by hand for that reason.
 */
export function deepResult(call: { id: number; rpc: string }, levels: number): Uint8Array {
  const head = encode({ t: 'result', id: call.id, rpc: call.rpc, ms: 0 });
  // Same map with one more entry: fixmap 0x84 becomes 0x85, then "value" and the nesting.
  const value = new Uint8Array([...encode('value'), ...new Array(levels).fill(0x91), ...encode(0)]);
  return new Uint8Array([head[0]! + 1, ...head.subarray(1), ...value]);
}

/**
 * An honest dew joins, serves the fuzz app's echo, and an HTTP call pinned to it comes back:
 * the relay still joins, places and forwards. Throws with what it got otherwise.
 */
export async function honestCallWorks(url: string): Promise<void> {
  const { node, welcome } = await joinRaw(`${url.replace('http', 'ws')}/ws`);
  try {
    serve(node, (input) => ({ echo: input }));
    const res = await fetch(`${url}/api/call/fuzz/echo`, {
      method: 'POST',
      headers: { 'content-type': 'application/msgpack' },
      body: Buffer.from(encode({ input: 'still here', qos: { privacy: welcome.nodeId } })),
    });
    const body = Buffer.from(await res.arrayBuffer());
    if (res.status !== 200 || !body.includes('still here')) {
      throw new Error(`the honest call answered ${res.status}: ${body.toString('latin1')}`);
    }
  } finally {
    node.ws.terminate();
  }
}

/** Opens the PeerJS signalling socket as joined node `id` with the token from its welcome. */
export function openSignalling(url: string, id: string, token: string): Promise<WebSocket> {
  const ws = new WebSocket(
    `${url.replace('http', 'ws')}/peerjs/peerjs?key=brume&id=${id}&token=${token}`,
  );
  ws.on('error', () => {});
  return new Promise((resolve, reject) => {
    ws.once('open', () => resolve(ws));
    ws.once('unexpected-response', (_req, res) =>
      reject(new Error(`signalling refused: ${res.statusCode}`)),
    );
    ws.once('close', () => reject(new Error('signalling socket closed before opening')));
  });
}

/** Resolves once `ws` is closed, with its code. */
export function closedCode(ws: WebSocket): Promise<number> {
  if (ws.readyState === ws.CLOSED) return Promise.resolve(1006);
  return new Promise((resolve) => ws.once('close', (code) => resolve(code)));
}
