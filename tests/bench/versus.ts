// The relay's HTTP path beside the bare server alone (the same figures `npm run bench` prints in
// its hardening part), for A/B runs: `npx tsx tests/bench/versus.ts [relay start flags]`.
// BENCH_VERSUS_ROUNDS (default 5) alternating windows of BENCH_VERSUS_S (default 4) seconds.
import { loadDigits } from '../../models/digits/data';
import { startRelay } from '../relay-process';
import { until } from '../until';
import { printVersus, startBare, versusBare } from './hardening';

const { heldout } = loadDigits();
const digit = Uint8Array.from(heldout.x.subarray(0, 784), (v) => Math.round(v * 255));
const relay = await startRelay({ args: process.argv.slice(2) });
const bare = await startBare();
try {
  await until(
    async () => {
      const res = await fetch(`${relay.url}/api/nodes`, {
        headers: { authorization: `Bearer ${relay.token}` },
      });
      return ((await res.json()) as { role: string }[]).some((n) => n.role === 'cloud');
    },
    'the cloud node to join',
    60_000,
    100,
  );
  const rows = await versusBare(
    relay.url,
    relay.token,
    bare.url,
    digit,
    Number(process.env.BENCH_VERSUS_ROUNDS ?? 5),
    Number(process.env.BENCH_VERSUS_S ?? 4),
  );
  printVersus(rows);
  console.log(JSON.stringify(rows));
} finally {
  await bare.stop();
  await relay.stop();
}
process.exit(0);
