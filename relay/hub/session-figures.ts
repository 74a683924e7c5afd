/**
 * The figures a session is placed by (PROTOCOL.md §5.9 "Placement"): the energy model's
 * assumptions, the stats key of the session's own rpc on each node (core/placement/figures.ts),
 * a node's figure for it, and the medians taken for nodes without one (or with their own report).
 * @example const k = figureKey(manifest, session); const ms = figure(node, k, medians(nodes, k).measured);
 */
import type { NodeRecord, SessionRecord } from '../../core/api';
import type { Manifest } from '../../core/manifest';
import { backendOf, execFigure, type NodeView, statsKeyPrefix } from '../../core/placement/figures';
import { MAX_FIGURE_MS } from '../../core/protocol/fields';
import { WIFI_MJ_PER_MS } from '../../core/session/energy';

/**
 * The figures the energy model assumes where nothing is measured (PROTOCOL.md §5.9): a device's
 * power running a frame itself — the mean of the three phones Nimbus measured (182 mJ / 154 ms,
 * 318 mJ / 116 ms, 268 mJ / 190 ms ≈ 1.78 mJ/ms) — its Wi-Fi radio's power while sending (the
 * seed's 1.21 mJ/ms), and a node's link rate (no bandwidth is measured yet: a LAN's 100 Mbps).
 */
export const energyFigures = {
  localMjPerMs: 1.78,
  radioMjPerMs: WIFI_MJ_PER_MS,
  bandwidthMbps: 100,
};
/** A frame's execution time on a node with no figure for the service, ms. */
export const UNKNOWN_EXEC_MS = 10;
/** Where a session's figures are: its rpc's stats key prefix, a Logic's or a model's, its pool. */
export interface FigureKey {
  prefix: string;
  logic: boolean;
  /** `app/service` for a Logic (slotsFor caps its slots by the pool's workers), else ''. */
  pool: string;
}

/** Medians of the figures for a session's rpc (undefined: none). */
export interface Known {
  measured?: number;
  all?: number;
}

/** The session's own rpc: the one it names, else the Logic's first rpc or the model's first variant. */
export function figureKey(manifest: Manifest, s: SessionRecord): FigureKey {
  const svc = manifest.services[s.service]!;
  const logic = svc.kind === 'logic';
  const rpc = s.rpc || (logic ? svc.rpcs[0] : Object.keys(svc.variants)[0]) || '';
  return {
    prefix: statsKeyPrefix(s.app, s.service, rpc),
    logic,
    pool: logic ? `${s.app}/${s.service}` : '',
  };
}

/** The stats key of the session's rpc on `n`: `@logic`, or a model's on the node's backend. */
const keyFor = (n: NodeView, k: FigureKey) => k.prefix + (k.logic ? 'logic' : backendOf(n));

/**
 * A node's time for one call of the session's rpc (execFigure: the relay's own measurement
 * first, a node can lie; else its report), undefined when none counts. A report is taken as no
 * faster than `measured`, the median of the relay's measurements over all nodes.
 */
export function figure(n: NodeRecord, k: FigureKey, measured?: number): number | undefined {
  const key = keyFor(n, k);
  const f = execFigure(n, key);
  if (!f || !usable(f.p50)) return undefined;
  return f === n.measured?.[key] || measured === undefined ? f.p50 : Math.max(f.p50, measured);
}

function median(xs: number[]): number | undefined {
  return xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)];
}

/** A figure placement can compute with: finite, at least 0, at most MAX_FIGURE_MS. */
const usable = (ms: number) => Number.isFinite(ms) && ms >= 0 && ms <= MAX_FIGURE_MS;
/** A frame's time at the session's rate, ms (within MAX_FIGURE_MS: a tiny fps is no Infinity). */
export const budgetMs = (s: Pick<SessionRecord, 'fps'>) => Math.min(MAX_FIGURE_MS, 1000 / s.fps);
/**
 * The medians of the figures for `s`'s rpc over every node: of the relay's own measurements (a
 * node's own report is taken as no faster than that), and of all (a node that has not run it
 * yet is taken to be as fast as those that have, not faster: no move for a guess).
 */
export function medians(nodes: readonly NodeRecord[], k: FigureKey): Known {
  const measured: number[] = [];
  const reported: number[] = [];
  for (const n of nodes) {
    const key = keyFor(n, k);
    const f = execFigure(n, key);
    if (f && usable(f.p50)) (f === n.measured?.[key] ? measured : reported).push(f.p50);
  }
  const m = median(measured);
  const all = median([...measured, ...reported.map((ms) => Math.max(ms, m ?? ms))]);
  return { ...(m !== undefined && { measured: m }), ...(all !== undefined && { all }) };
}
