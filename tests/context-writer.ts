// A relay context store that writes until the disk refuses (run under `ulimit -f`, see
// tests/unit/context-log.test.ts), then prints what was acknowledged and what the refusal was.
import { encode } from '../core/codec';
import type { ContextOp } from '../core/context/replica';
import { openContext } from '../relay/context';

const ctx = await openContext(process.argv[2]!, { compactFloorBytes: 2 ** 30 });
const acked: string[] = [];
for (let i = 0; i < 1000; i++) {
  const op: ContextOp = {
    opId: `w-${i}`,
    app: 'app',
    key: `k${i}`,
    scope: 'app',
    stamp: { wall: Date.now(), count: i, node: 'w' },
    kind: 'put',
    value: encode('x'.repeat(7_000)),
  };
  try {
    await ctx.accept(op, '');
    acked.push(op.opId);
  } catch (e) {
    const { code, message } = e as { code: string; message: string };
    // Memory changes only after the write succeeded.
    const unchanged = !ctx.replica.has(op.opId) && ctx.replica.state().length === acked.length;
    await ctx.close();
    console.log(JSON.stringify({ acked, error: { code, message }, unchanged }));
    process.exit(0);
  }
}
console.log(JSON.stringify({ acked, error: { code: 'none', message: 'the disk never refused' } }));
