/**
 * `brume node`: a server node (relay/server-node.ts) from its flags (and env), printing its public
 * key for the admin to trust, drained on SIGTERM or SIGINT (no new calls, those in flight finish,
 * exit 0).
 * @example npx tsx relay/cli.ts node --relay http://127.0.0.1:8787 --role fog --data .brume-node
 */

import { availableParallelism } from 'node:os';
import { resolve } from 'node:path';
import { isAppName } from '../../core/names';
import { type ServerNodeOptions, socketUrl, startServerNode } from '../server-node';
import { type Flag, integer, UsageError } from './args';

/** The options `node` runs with, from its flags (and env). */
export function nodeOptions(flag: Flag): Omit<ServerNodeOptions, 'log'> {
  const relay = flag('relay') ?? process.env.BRUME_RELAY ?? 'http://127.0.0.1:8787';
  try {
    socketUrl(relay);
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  const role = flag('role') ?? 'cloud';
  if (role !== 'cloud' && role !== 'fog') {
    throw new UsageError(`--role must be cloud or fog, got "${role}"`);
  }
  const cores = availableParallelism();
  const threads = integer(
    '--threads',
    flag('threads') ?? String(Math.max(1, Math.min(4, cores - 1))),
    1,
    256,
  );
  const apps = flag('apps')?.split(',');
  for (const a of apps ?? []) {
    if (!isAppName(a)) throw new UsageError(`--apps: "${a}" is not an app name`);
  }
  return {
    relay,
    role,
    dataDir: resolve(flag('data') ?? process.env.BRUME_NODE_DATA ?? '.brume-node'),
    threads,
    // A few calls per thread: while one call's Model runs, the next one's input is framed. At
    // least --max-workers, so the pools can grow to their cap.
    concurrency: integer(
      '--concurrency',
      flag('concurrency') ?? String(Math.max(4 * threads, Number(flag('max-workers')) || 0)),
      1,
      4096,
    ),
    maxQueued: integer('--max-queued', flag('max-queued') ?? '64', 0, 100_000),
    ...(apps && { apps }),
    caps: {
      timeoutMs: integer('--logic-timeout-ms', flag('logic-timeout-ms') ?? '10000', 1, 600_000),
      memoryMiB: integer('--logic-memory-mib', flag('logic-memory-mib') ?? '256', 1, 4096),
      heapMiB: integer('--logic-heap-mib', flag('logic-heap-mib') ?? '64', 16, 4096),
      ...(flag('max-workers') !== undefined && {
        maxWorkers: integer('--max-workers', flag('max-workers')!, 1, 64),
      }),
      ...(flag('worker-idle-ms') !== undefined && {
        workerIdleMs: integer('--worker-idle-ms', flag('worker-idle-ms')!, 100, 3_600_000),
      }),
      ...(flag('hold-ms') !== undefined && {
        holdMs: integer('--hold-ms', flag('hold-ms')!, 1, 60_000),
      }),
    },
  };
}

export async function runNode(o: Omit<ServerNodeOptions, 'log'>): Promise<number> {
  const log = (line: string) => console.log(line);
  const s = await startServerNode({ ...o, log });
  const loaded = s.providers.filter((p) => p.loaded).map((p) => p.name);
  console.log(`Brume ${o.role} node ${s.identity.id} (data: ${o.dataDir})`);
  console.log(`public key: ${s.identity.publicKey}`);
  console.log(
    `  trust it on the relay: brume trust ${s.identity.publicKey} --label "<name>" (or Approve in the console)`,
  );
  console.log(`execution providers: ${loaded.join(', ') || 'none'}`);
  console.log(`joining ${socketUrl(o.relay)}`);
  return new Promise<number>((done) => {
    let stopping = false;
    const stop = (signal: NodeJS.Signals) => {
      if (stopping) {
        console.error(`${signal} again: exiting without waiting`);
        process.exit(1);
      }
      stopping = true;
      console.log(`${signal}: draining (no new calls; those in flight finish first)`);
      s.drain().then(({ finished }) => {
        console.log(finished ? 'drained' : 'drain timed out: calls still running were dropped');
        done(0);
      });
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
}
