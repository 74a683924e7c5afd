/**
 * digits-ee over the fabric (issue 14 §1): a relay in this process with its cloud node, a trusted
 * fog node and a dew node (Node platform, real sockets on loopback). The dew asks; each request is
 * made to leave at exit 1, 2 or 3 by the app's per-request overrides, and timed at the caller
 * (wall time of the dew's call); the baseline sends the raw digit to the cloud node, which runs
 * the three parts itself (privacy pinned to the cloud node, every exit off). The medians give the
 * tier latencies early-exit.ts's sweep is timed with: dew = exit 1; fog, cloud = what the fog-step
 * and cloud-step Logics took there (their trace entries); the hop up = what is left of exit 2 over
 * exit 1 and of exit 3 over exit 2 past those, averaged.
 * @example const f = await earlyExitFabric(200); printEarlyExitFabric(f);
 *          const ee = await earlyExitBench({ latency: f.latency });
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadOrCreateIdentity, memoryKeyStore } from '../../core/identity';
import type { TraceEntry } from '../../core/runtime';
import { loadDigits } from '../../models/digits/data';
import { packApp } from '../../scripts/pack-apps';
import { drawDigit } from '../apps';
import { inProcessRelay } from '../relay-process';
import { closeNodes, testNode } from '../test-node';
import { until } from '../until';
import { type EarlyExitFigures, earlyExitSection, sweepRows, type TierLatency } from './early-exit';
import type { Section } from './report';

export interface FabricExitRow {
  label: string;
  exit: number;
  /** Where classify, fog-step and cloud-step ran: roles, e.g. "dew → fog → cloud". */
  path: string;
  bytesUp: number;
  p50: number;
  p90: number;
}

export interface EarlyExitFabric {
  runs: number;
  rows: FabricExitRow[];
  latency: TierLatency;
}

const quantile = (xs: number[], q: number) =>
  [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(q * xs.length))] ?? 0;
const round = (x: number) => Math.round(x * 1000) / 1000;

/** Measures `runs` requests of each kind (after 20 warm-up ones), held-out digits in turn. */
export async function earlyExitFabric(runs = 200): Promise<EarlyExitFabric> {
  const out = mkdtempSync(join(tmpdir(), 'brume-ee-bench-'));
  const root = new URL('../..', import.meta.url).pathname;
  const { outPath } = await packApp(
    join(root, 'logics/digits-ee/brume.json'),
    join(out, 'ee.brume'),
  );
  const server = await inProcessRelay({ cloudNode: true });
  const nodes = [];
  try {
    await server.relay.deploy(new Uint8Array(readFileSync(outPath)));
    const fogId = await loadOrCreateIdentity(memoryKeyStore(), 'bench-fog');
    await server.relay.admin.trust(fogId.publicKey, 'digits-ee bench fog');
    const fog = await testNode(server.ws, fogId, { role: 'fog', refresh: true });
    nodes.push(fog);
    await fog.whenJoined();
    const dewId = await loadOrCreateIdentity(memoryKeyStore(), 'bench-dew');
    const dew = await testNode(server.ws, dewId, { refresh: true });
    nodes.push(dew);
    await dew.whenJoined();
    let cloud = '';
    await until(() => {
      const all = server.relay.hub.nodes();
      cloud = all.find((n) => n.role === 'cloud' && n.apps.includes('digits-ee'))?.id ?? '';
      return cloud !== '' && all.filter((n) => n.apps.includes('digits-ee')).length === 3;
    }, 'the dew, the fog and the cloud node holding digits-ee');
    const role = (id: string | undefined) =>
      id === dew.runtime.id ? 'dew' : id === fog.runtime.id ? 'fog' : id === cloud ? 'cloud' : '?';

    const { heldout } = loadDigits();
    const digit = (i: number) => ({
      width: 28,
      height: 28,
      pixels: drawDigit(heldout.x, i % heldout.n, {
        width: 28,
        height: 28,
        scale: 1,
        dx: 0,
        dy: 0,
      }),
    });
    const kinds = [
      { label: 'exit 1 (dew)', exits: { dew: { rule: 'top', threshold: 0 } }, qos: {} },
      {
        label: 'exit 2 (fog)',
        exits: { dew: { off: true }, fog: { rule: 'top', threshold: 0 } },
        qos: {},
      },
      { label: 'exit 3 (cloud)', exits: { dew: { off: true }, fog: { off: true } }, qos: {} },
      {
        label: 'cloud only, raw pixels',
        exits: { dew: { off: true }, fog: { off: true } },
        qos: { privacy: cloud },
      },
    ];
    const rows: FabricExitRow[] = [];
    const stepMs: Record<string, number[]> = { 'fog-step': [], 'cloud-step': [] };
    for (const k of kinds) {
      const times: number[] = [];
      let path = '';
      let bytesUp = 0;
      let exit = 0;
      for (let i = 0; i < runs + 20; i++) {
        const t0 = performance.now();
        const r = await dew.call('digits-ee', 'classify', { ...digit(i), exits: k.exits }, k.qos);
        const ms = performance.now() - t0;
        if (i < 20) continue;
        times.push(ms);
        const v = r.value as { exit: number; bytesUp: number };
        exit = v.exit;
        bytesUp = v.bytesUp;
        const logic = (s: string) => r.trace.find((t: TraceEntry) => t.service === s);
        path = ['classify', 'fog-step', 'cloud-step']
          .map((s) => logic(s))
          .filter((t) => t !== undefined)
          .map((t) => role(t.node))
          .join(' → ');
        if (!('privacy' in k.qos)) {
          for (const s of ['fog-step', 'cloud-step']) {
            const t = logic(s);
            // A step's own time only where it is the last tier reached (past the fog's exit, its
            // time holds the call on up to the cloud).
            if (t && (s === 'cloud-step' || v.exit === 2)) stepMs[s]!.push(t.ms);
          }
        }
      }
      // The baseline's bytes up: the digit as the caller sends it (28×28 bytes), not features.
      if ('privacy' in k.qos) bytesUp = 28 * 28;
      rows.push({
        label: k.label,
        exit,
        path,
        bytesUp,
        p50: quantile(times, 0.5),
        p90: quantile(times, 0.9),
      });
    }
    const [e1, e2, e3, base] = rows.map((r) => r.p50) as [number, number, number, number];
    const fogMs = quantile(stepMs['fog-step']!, 0.5);
    const cloudMs = quantile(stepMs['cloud-step']!, 0.5);
    const hopMs = Math.max(0, (e2 - e1 - fogMs + (e3 - e2 - cloudMs)) / 2);
    const latency: TierLatency = {
      dewMs: round(e1),
      fogMs: round(fogMs),
      cloudMs: round(cloudMs),
      hopMs: round(hopMs),
      cloudOnlyMs: round(base),
    };
    return { runs, rows, latency };
  } finally {
    closeNodes(nodes);
    await server.close();
    rmSync(out, { recursive: true, force: true });
  }
}

export function printEarlyExitFabric(f: EarlyExitFabric): void {
  console.log(
    `digits-ee over the fabric (relay + Node fog + cloud node on loopback, ${f.runs} requests each, caller's wall time): dew ${f.latency.dewMs} ms, fog ${f.latency.fogMs} ms, cloud ${f.latency.cloudMs} ms, hop ${f.latency.hopMs} ms`,
  );
  console.table(
    f.rows.map((r) => ({
      request: r.label,
      ran: r.path,
      'bytes up': r.bytesUp,
      'p50 (ms)': r.p50.toFixed(2),
      'p90 (ms)': r.p90.toFixed(2),
    })),
  );
}

export function earlyExitFabricSection(f: EarlyExitFabric): Section {
  return {
    id: 'early-exit-fabric',
    title: 'digits-ee over the fabric: latency by exit (dew → fog → cloud)',
    baseline: 'the raw digit sent to the cloud node, which runs all three parts',
    note:
      `A dew node asks (Node platform), a trusted fog node and the relay's cloud node serve, on loopback ` +
      `through the relay (no data channels in Node). Each request is made to leave at its exit by the ` +
      `app's per-request overrides; ${f.runs} held-out digits each after 20 warm-up, wall time at the ` +
      'caller. The early-exit sweep timed with these figures is in the section beside it.',
    rows: f.rows.map((r) => ({
      label: r.label,
      ran: r.path,
      'bytes up': r.bytesUp,
      'p50 (ms)': r.p50,
      'p90 (ms)': r.p90,
    })),
  };
}

/** The models-alone sweep's rows timed with the fabric's tier latencies instead of run() alone. */
export function fabricSweep(ee: EarlyExitFigures, f: EarlyExitFabric): EarlyExitFigures {
  return { ...ee, latency: f.latency, rows: sweepRows(ee.outputs, f.latency, ee.defaults) };
}

/** The per-exit table, and the sweep timed over the fabric beside the cloud-only baseline. */
export function fabricSections(timed: Omit<EarlyExitFigures, 'outputs'>, f: EarlyExitFabric) {
  const sweep = earlyExitSection(timed);
  return [
    earlyExitFabricSection(f),
    {
      ...sweep,
      id: 'early-exit-fabric-sweep',
      title: 'Early-exit digits: the threshold sweep timed over the fabric (dew → fog → cloud)',
    },
  ];
}
