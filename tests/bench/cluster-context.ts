// placeholder, written next
import type { RawNode } from '../raw-node';
import type { ContextFigures } from './cluster';
export async function clusterContext(
  _byRelay: RawNode[][],
  _watchers: number,
  _writes: number,
): Promise<ContextFigures | undefined> {
  return undefined;
}
