// A node's call to another node through the relay, with and without decision leases
// (PROTOCOL.md §5.3.2), side by side in one run: two relay processes, one with `--lease-ms 0`
// (the baseline: a scheduling round trip before every call), each with a real node whose calls
// must go elsewhere (it cannot hold the model) and a simulated node that answers at once. Rounds
// alternate between the two, so machine noise falls on both alike.
import { rmSync } from 'node:fs';
import type { WebSocket } from 'ws';
import { loadOrCreateIdentity, memoryKeyStore } from '../../core/identity';
import { packBundle } from '../../core/manifest';
import type { BrumeNode } from '../../core/node/node';
import { hopsApp } from '../apps';
import { answerCall, joinRaw, onCalls } from '../raw-node';
import { deploy, type RelayProcess, startRelay } from '../relay-process';
import { testNode } from '../test-node';

export interface LeaseRow {
  leases: 'on' | 'off';
  /** One call at a time: the caller's round trip, median and 90th percentile. */
  p50Ms: number;
  p90Ms: number;
  /** `lanes` calls in flight at once: calls answered per second (median of the rounds). */
  callsPerSecond: number;
}

export interface LeaseBench {
  rounds: number;
  callsPerRound: number;
  lanes: number;
  rows: LeaseRow[];
  /** p50 without leases over p50 with them; calls/s with leases over calls/s without. */
  latencyRatio: number;
  throughputRatio: number;
}

interface Fabric {
  relay: RelayProcess;
  node: BrumeNode;
  target: WebSocket;
}

async function fabric(leaseArgs: string[]): Promise<Fabric> {
  // With leases a node sends calls as fast as they are answered: past the default 500 frames a
  // second the relay would close it (a limit for nodes on the internet, not for this bench).
  const relay = await startRelay({ args: ['--no-cloud', '--frame-rate', '20000', ...leaseArgs] });
  const b = await hopsApp();
  await deploy(relay, packBundle(b.manifest, b.files));
  const ws = `${relay.url.replace('http', 'ws')}/ws`;
  const { node: target } = await joinRaw(ws, 'dew', { keep: (f) => f.t !== 'call' });
  target.send({
    t: 'heartbeat',
    load: { queue: 0, maxConcurrency: 64 },
    apps: ['hops'],
    models: { 'hops/model': ['small', 'large'] },
    stats: {
      'hops/model/small@wasm': { count: 10, p50: 0.05 },
      'hops/model/large@wasm': { count: 10, p50: 0.05 },
    },
    paused: false,
  });
  onCalls(target, (call) => answerCall(target, call, call.input, 0.05));
  const identity = await loadOrCreateIdentity(memoryKeyStore(), 'bench');
  // No room for any model: every call it makes goes to another node.
  const node = await testNode(ws, identity, { runtime: { maxModelBytes: 0 } });
  await node.whenJoined(20_000);
  return { relay, node, target: target.ws };
}

const input = { n: 1 };
const quantile = (xs: number[], q: number) =>
  [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * q))]!;

async function sequential(f: Fabric, calls: number): Promise<number[]> {
  const xs: number[] = [];
  for (let i = 0; i < calls; i++) {
    const t0 = performance.now();
    await f.node.call('hops', 'model', input);
    xs.push(performance.now() - t0);
  }
  return xs;
}

async function parallel(f: Fabric, lanes: number, ms: number): Promise<number> {
  let done = 0;
  const t0 = performance.now();
  const lane = async () => {
    while (performance.now() - t0 < ms) {
      await f.node.call('hops', 'model', input);
      done++;
    }
  };
  await Promise.all(Array.from({ length: lanes }, lane));
  return (done * 1000) / (performance.now() - t0);
}

/**
 * Measures both; `rounds` alternations of `calls` sequential calls and `ms` of `lanes` parallel
 * ones on each.
 * @example const r = await leaseBench({ rounds: 5, calls: 200, lanes: 8, ms: 1000 });
 */
export async function leaseBench(
  o: { rounds?: number; calls?: number; lanes?: number; ms?: number } = {},
): Promise<LeaseBench> {
  const rounds = o.rounds ?? 5;
  const calls = o.calls ?? 200;
  const lanes = o.lanes ?? 8;
  const ms = o.ms ?? 1000;
  const on = await fabric([]);
  const off = await fabric(['--lease-ms', '0']);
  try {
    const lat = { on: [] as number[], off: [] as number[] };
    const rate = { on: [] as number[], off: [] as number[] };
    // Warm: the app fetched, sockets and the relays' JITs settled.
    for (const f of [on, off]) await sequential(f, 50);
    for (let r = 0; r < rounds; r++) {
      // Which goes first alternates too.
      const order = r % 2 === 0 ? (['on', 'off'] as const) : (['off', 'on'] as const);
      for (const k of order) lat[k].push(...(await sequential(k === 'on' ? on : off, calls)));
      for (const k of order) rate[k].push(await parallel(k === 'on' ? on : off, lanes, ms));
    }
    const row = (k: 'on' | 'off'): LeaseRow => ({
      leases: k,
      p50Ms: quantile(lat[k], 0.5),
      p90Ms: quantile(lat[k], 0.9),
      callsPerSecond: quantile(rate[k], 0.5),
    });
    const rows = [row('on'), row('off')];
    return {
      rounds,
      callsPerRound: calls,
      lanes,
      rows,
      latencyRatio: rows[1]!.p50Ms / rows[0]!.p50Ms,
      throughputRatio: rows[0]!.callsPerSecond / rows[1]!.callsPerSecond,
    };
  } finally {
    for (const f of [on, off]) {
      f.node.close();
      f.node.runtime.close();
      f.target.close();
      await f.relay.stop();
      rmSync(f.relay.dataDir, { recursive: true, force: true });
    }
  }
}
