// What metrics and logging cost on the HTTP call path: two relays in this process, each with a
// node that echoes, one logging every request (info: two lines a request) into a sink, the other
// with no logger; windows alternate A, B, B, A… so load changes weigh on both alike. Then the
// metric hooks a call runs, alone, per call. `npx tsx tests/bench/observe-cost.ts`
// BENCH_OBSERVE_ROUNDS (default 6) windows of BENCH_OBSERVE_S (default 3) seconds per side.
import { Writable } from 'node:stream';
import { createMetrics } from '../../relay/metrics';
import { hostileApp } from '../apps';
import { answerCall, joinRaw, onCalls } from '../raw-node';
import { inProcessRelay } from '../relay-process';

const rounds = Number(process.env.BENCH_OBSERVE_ROUNDS ?? 6);
const seconds = Number(process.env.BENCH_OBSERVE_S ?? 3);
const concurrency = 8;

let logged = 0;
const sink = new Writable({
  write(chunk: Buffer, _enc, done) {
    logged += chunk.length;
    done();
  },
});

async function side(options: Parameters<typeof inProcessRelay>[0]) {
  const server = await inProcessRelay({ apps: [await hostileApp()], ...options });
  const { node } = await joinRaw(server.ws);
  onCalls(node, (f) => answerCall(node, f, f.input));
  return server;
}

// "logger" replaces the relay's own (Fastify's, with its request lines); without it, pino logs.
const observed = await side({ logger: undefined, log: { level: 'info', stream: sink } });
const bare = await side({});

/** Calls for `seconds` with `concurrency` in flight: calls a second and the median latency. */
async function window(relay: { url: string; admin: { token: string } }) {
  const latencies: number[] = [];
  const end = performance.now() + seconds * 1000;
  const body = JSON.stringify({ input: 'hello', rpc: 'echo' });
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < end) {
        const t0 = performance.now();
        // With the admin token: anonymous calls are limited per address.
        const res = await fetch(`${relay.url}/api/call/hostile/echo`, {
          method: 'POST',
          headers: {
            'content-type': 'application/json',
            authorization: `Bearer ${relay.admin.token}`,
          },
          body,
        });
        if (res.status !== 200) throw new Error(`call: ${res.status} ${await res.text()}`);
        await res.arrayBuffer();
        latencies.push(performance.now() - t0);
      }
    }),
  );
  latencies.sort((a, b) => a - b);
  return { rate: latencies.length / seconds, p50: latencies[latencies.length >> 1]! };
}

type Window = { rate: number; p50: number };
const results: { observed: Window[]; bare: Window[] } = { observed: [], bare: [] };
try {
  for (let r = 0; r < rounds; r++) {
    const order = r % 2 ? (['bare', 'observed'] as const) : (['observed', 'bare'] as const);
    for (const name of order) {
      const w = await window((name === 'observed' ? observed : bare).relay);
      results[name].push(w);
      console.log(
        `round ${r + 1} ${name}: ${w.rate.toFixed(0)} calls/s, p50 ${w.p50.toFixed(2)} ms`,
      );
    }
  }
} finally {
  await observed.close();
  await bare.close();
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
const rate = {
  observed: median(results.observed.map((w) => w.rate)),
  bare: median(results.bare.map((w) => w.rate)),
};
const p50 = {
  observed: median(results.observed.map((w) => w.p50)),
  bare: median(results.bare.map((w) => w.p50)),
};
console.log(
  `\nHTTP call path, medians of ${rounds} windows of ${seconds} s, ${concurrency} in flight:` +
    `\n  with logging (info) + metrics: ${rate.observed.toFixed(0)} calls/s, p50 ${p50.observed.toFixed(2)} ms` +
    `\n  without a logger:              ${rate.bare.toFixed(0)} calls/s, p50 ${p50.bare.toFixed(2)} ms` +
    `\n  ratio (with / without): throughput ${(rate.observed / rate.bare).toFixed(3)}, p50 ${(p50.observed / p50.bare).toFixed(3)}` +
    `\n  log written: ${(logged / 1024).toFixed(0)} KiB`,
);

// The metric hooks one forwarded HTTP call runs (relay/metrics.ts), alone: both relays above
// run them, so the A/B shows logging; this shows metrics.
const m = createMetrics();
m.deployed((await hostileApp()).manifest);
const n = 200_000;
const t0 = performance.now();
for (let i = 0; i < n; i++) {
  await m.decision(Promise.resolve(i));
  m.forwarded('');
  m.bytes('out', 120);
  m.bytes('in', 80);
  m.call('hostile', 'echo', 'echo', 'ok', 1.5);
}
const perCall = ((performance.now() - t0) / n) * 1000;
console.log(
  `  metric hooks per call: ${perCall.toFixed(2)} µs (${((perCall / 1000 / p50.bare) * 100).toFixed(2)}% of the p50 without a logger)`,
);
