// A node as placement sees it, for tests: node n's id, a dew on wasm with nothing measured.
import type { NodeView } from '../core/placement';

export const id = (n: number) => n.toString(16).padStart(32, '0');

export const node = (n: number, over: Partial<NodeView> = {}): NodeView => ({
  id: id(n),
  role: 'dew',
  publicKey: `key-${n}`,
  trusted: false,
  online: true,
  paused: false,
  rttMs: 1,
  backends: ['wasm'],
  queue: 0,
  maxConcurrency: 1,
  apps: ['digits'],
  stats: {},
  models: {},
  ...over,
});
