// The relay under random and mutated input (fast-check), as a real process on a real port: raw
// HTTP requests, upgrade requests, frames on /ws before and after a real join, PeerJS messages
// from a registered node, and bundle uploads. After each batch the relay must still be running,
// answer /api/health, serve an honest node's call, and hold its memory within a bound.
//
// BRUME_FUZZ_RUNS=N runs N cases per batch (default a few dozen, for npm test). A failure prints
// its seed and the line that replays it: `BRUME_SEED=<seed> npx vitest run tests/unit/fuzz.test.ts
// -t '<batch>'`. BRUME_FUZZ_RSS_MIB bounds the growth of the relay's RSS (default 256 MiB).
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { nodeIdOf } from '../../core/identity';
import { packBundle } from '../../core/manifest';
import {
  bundleBytes,
  httpRequest,
  peerMessage,
  upgrade,
  type WsMessage,
  wsMessage,
} from '../fuzz-inputs';
import { fuzzApp, healthy, honestCallWorks, openSignalling, rawHttp } from '../fuzz-kit';
import { joinRaw, type RawNode } from '../raw-node';
import { type RelayProcess, startRelay } from '../relay-process';

const runs = Number(process.env.BRUME_FUZZ_RUNS ?? 40);
const seedBase = Number(process.env.BRUME_SEED ?? Date.now() % 2 ** 31);
const rssBoundKiB = Number(process.env.BRUME_FUZZ_RSS_MIB ?? 256) * 1024;
// Over the relay's 16 MiB frame limit: the socket is closed with 1009 without a decode.
const OVERSIZE = 16 * 1024 * 1024 + 1;

let relay: RelayProcess;
let wsUrl: string;
let rssStart = 0;
let tried = 0;
/** A joined node with signalling open for the whole run: hostile messages are addressed to it. */
let bystander: { node: RawNode; peer: WebSocket };

beforeAll(async () => {
  relay = await startRelay({ args: ['--no-cloud'] });
  wsUrl = `${relay.url.replace('http', 'ws')}/ws`;
  const b = await fuzzApp();
  const res = await upload(packBundle(b.manifest, b.files));
  expect(res.status, await res.text()).toBe(201);
  const { node, welcome } = await joinRaw(wsUrl);
  bystander = { node, peer: await openSignalling(relay.url, welcome.nodeId, welcome.peerToken) };
  rssStart = relay.rss() / 1024;
});

afterAll(async () => {
  const rss = relay?.child.exitCode === null ? relay.rss() / 1024 : 0;
  console.log(
    `fuzz: ${tried} cases (seed ${seedBase}); relay RSS ${mib(rssStart)} → ${mib(rss)} MiB`,
  );
  bystander?.node.ws.terminate();
  bystander?.peer.terminate();
  await relay?.stop();
});

const mib = (kib: number) => (kib / 1024).toFixed(1);
// A batch's time grows with its cases; no case waits on a clock, so this is only a backstop.
const batchTimeoutMs = 30_000 + runs * 1000;

function upload(bytes: Uint8Array): Promise<Response> {
  return fetch(`${relay.url}/api/apps`, {
    method: 'POST',
    headers: {
      'content-type': 'application/vnd.brume.bundle',
      authorization: `Bearer ${relay.token}`,
    },
    body: Buffer.from(bytes),
  });
}

/**
 * Runs one batch: `runs` cases of `arb` through `attack`, stopping at the first case after which
 * the relay is gone (no shrinking: later cases would all fail against a dead relay). Then checks
 * the relay whole. A failure names the seed, the case, and the line that replays the batch.
 */
async function batch<T>(
  name: string,
  offset: number,
  arb: fc.Arbitrary<T>,
  attack: (input: T) => Promise<void>,
): Promise<void> {
  const seed = seedBase + offset;
  const replay = `BRUME_SEED=${seedBase} BRUME_FUZZ_RUNS=${runs} npx vitest run tests/unit/fuzz.test.ts -t '${name}'`;
  const details = await fc.check(
    fc.asyncProperty(arb, async (input) => {
      tried++;
      await attack(input);
      return relay.child.exitCode === null;
    }),
    { seed, numRuns: runs, endOnFailure: true },
  );
  const rss = relay.child.exitCode === null ? relay.rss() / 1024 : 0;
  console.log(`fuzz ${name}: ${details.numRuns} cases, relay RSS ${mib(rss)} MiB`);
  try {
    if (details.failed) {
      const shown = fc.stringify(details.counterexample).slice(0, 2000);
      throw new Error(`case ${shown} failed: ${details.errorInstance ?? 'the relay exited'}`);
    }
    await healthy(relay.url);
    await honestCallWorks(relay.url);
    expect(bystander.node.ws.readyState, 'the bystander node was disconnected').toBe(
      WebSocket.OPEN,
    );
    expect(rss - rssStart, 'RSS growth in KiB').toBeLessThan(rssBoundKiB);
  } catch (e) {
    throw new Error(
      `fuzz ${name} (seed ${seed}): ${(e as Error).message}\nreplay: ${replay}\nrelay output:\n${relay.output().slice(-3000)}`,
    );
  }
}

/** Sends one message and resolves once the relay has handled it: a pong, or the socket closed. */
function sendAndSettle(ws: WebSocket, m: WsMessage): Promise<void> {
  return new Promise((resolve) => {
    if (ws.readyState !== WebSocket.OPEN) return resolve();
    const done = () => {
      ws.off('pong', done);
      ws.off('close', done);
      resolve();
    };
    ws.on('pong', done);
    ws.on('close', done);
    ws.send(m.data, { binary: m.binary }, () => {});
    // Frames are handled in order: the pong comes after the message was (at least) decoded.
    if (ws.readyState === WebSocket.OPEN) ws.ping();
  });
}

async function openWs(): Promise<WebSocket> {
  const ws = new WebSocket(wsUrl);
  ws.on('error', () => {});
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('close', () => reject(new Error('the relay closed a fresh socket')));
  });
  return ws;
}

describe('fuzz: the relay survives hostile input', () => {
  it(
    'raw HTTP request lines, headers and bodies',
    async () => {
      await batch('http', 1, httpRequest, async (bytes) => {
        // Half-closed after writing: the relay answers what it can and closes; no waiting on time.
        const answer = await rawHttp(relay.url, bytes, { end: true });
        // Bad input is the client's fault (4xx); a 5xx is the relay failing on it.
        if (/^HTTP\/1\.[01] 5/.test(answer)) throw new Error(`answered ${answer.slice(0, 300)}`);
      });
    },
    batchTimeoutMs,
  );

  it(
    'upgrade requests with random paths and headers',
    async () => {
      await batch('upgrade', 2, upgrade, async ({ bytes, reset }) => {
        const answer = await rawHttp(relay.url, bytes, { end: true, reset });
        if (/^HTTP\/1\.[01] 5/.test(answer)) throw new Error(`answered ${answer.slice(0, 300)}`);
      });
    },
    batchTimeoutMs,
  );

  it(
    'WebSocket messages on /ws before joining',
    async () => {
      await batch(
        'ws-before-join',
        3,
        fc.array(wsMessage(OVERSIZE), { minLength: 1, maxLength: 3 }),
        async (messages) => {
          const ws = await openWs();
          for (const m of messages) await sendAndSettle(ws, m);
          ws.terminate();
        },
      );
    },
    batchTimeoutMs,
  );

  it(
    'WebSocket messages on /ws after a real join',
    async () => {
      await batch(
        'ws-after-join',
        4,
        fc.array(wsMessage(OVERSIZE), { minLength: 1, maxLength: 4 }),
        async (messages) => {
          const { node } = await joinRaw(wsUrl);
          for (const m of messages) await sendAndSettle(node.ws, m);
          node.ws.terminate();
        },
      );
    },
    batchTimeoutMs,
  );

  it(
    'PeerJS messages from a registered node',
    async () => {
      const ids = [await nodeIdOf(bystander.node.identity.publicKey)];
      await batch(
        'peerjs',
        5,
        fc.array(peerMessage(ids), { minLength: 1, maxLength: 4 }),
        async (messages) => {
          const { node, welcome } = await joinRaw(wsUrl);
          const peer = await openSignalling(relay.url, welcome.nodeId, welcome.peerToken);
          for (const m of messages) await sendAndSettle(peer, m);
          peer.terminate();
          node.ws.terminate();
        },
      );
    },
    batchTimeoutMs,
  );

  it(
    'bundle uploads: random and mutated .brume bytes',
    async () => {
      const b = await fuzzApp();
      const valid = packBundle(b.manifest, b.files);
      await batch('bundles', 6, bundleBytes(valid), async (bytes) => {
        const res = await upload(bytes);
        const text = await res.text();
        // A refusal is a typed error; a 5xx would be the relay failing on its own input.
        if (res.status >= 500) throw new Error(`deploy answered ${res.status}: ${text}`);
      });
    },
    batchTimeoutMs,
  );
});
