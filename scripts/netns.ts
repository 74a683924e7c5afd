// A loopback-only network namespace for anything that opens browser or WebRTC connections, so
// nothing a test or benchmark does can reach another host (ENVIRONMENT.md).
import { execFileSync } from 'node:child_process';

/** How to wrap a command in a fresh network namespace with only `lo`, or undefined. */
export function netnsPrefix(): string[] | undefined {
  if (process.env.BRUME_NO_NETNS) return undefined;
  const isRoot = process.getuid?.() === 0;
  for (const flags of isRoot ? ['-n', '-rn'] : ['-rn']) {
    try {
      execFileSync('unshare', [flags, 'sh', '-c', 'ip link set lo up'], { stdio: 'ignore' });
      return ['unshare', flags, 'sh', '-c', 'ip link set lo up && exec "$@"', 'netns'];
    } catch {
      // try the next way, or run without a namespace
    }
  }
  return undefined;
}
