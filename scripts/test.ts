// `npm test`: everything CI runs, in order, stopping at the first failure.
// Browser tests run inside a loopback-only network namespace where the machine allows one, so
// nothing a test does can reach another host (ENVIRONMENT.md); WebRTC tests require it.
import { spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { netnsPrefix } from './netns';

const chromium = process.env.BRUME_CHROMIUM ?? '/usr/bin/chromium';
const isRoot = process.getuid?.() === 0;

function run(title: string, cmd: string, args: string[], env: NodeJS.ProcessEnv = {}): void {
  console.log(`\n▶ ${title}: ${[cmd, ...args].join(' ')}`);
  const r = spawnSync(cmd, args, { stdio: 'inherit', env: { ...process.env, ...env } });
  if (r.status !== 0) {
    console.error(`\n✖ ${title} failed (exit ${r.status ?? r.signal}).`);
    process.exit(r.status || 1);
  }
}

function ensureChromium(): void {
  if (existsSync(chromium)) return;
  if (!isRoot) {
    console.error(
      `Chromium is not installed at ${chromium}. Run:\n  sudo apt-get update && sudo apt-get install -y chromium\n(or set BRUME_CHROMIUM to a Chromium binary)`,
    );
    process.exit(1);
  }
  run('install chromium', 'sh', [
    '-c',
    'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium',
  ]);
}

const only = process.argv[2];
// Marks every process this run starts (they inherit it), so the check at the end finds this
// run's leftovers and not another run's.
const runId = randomUUID();
process.env.BRUME_TEST_RUN = runId;
ensureChromium();
if (!only || only === 'static') {
  for (const p of ['core', 'worker', 'web', 'relay', 'tests'])
    run(`typecheck ${p}`, 'npx', ['tsc', '-p', p]);
  run('lint', 'npm', ['run', '--silent', 'lint']);
}
run('build', 'npm', ['run', '--silent', 'build']);
if (!only || only === 'unit') run('unit tests', 'npx', ['vitest', 'run']);
if (!only || only === 'browser') {
  const ns = netnsPrefix();
  if (!ns) {
    console.log(
      "\n(no network namespace could be made here: browser tests run on the host's loopback with WebRTC turned off in the tabs, so calls between tabs take the relay path)",
    );
  }
  const [cmd, ...args] = [...(ns ?? []), 'npx', 'playwright', 'test'];
  run('browser tests', cmd!, args, ns ? { BRUME_NETNS: '1' } : { BRUME_NO_NETNS: '1' });
}
// The suite leaves nothing running: a relay a test started and never stopped would hold its port
// and data directory long after the run.
const left = leftoverRelays();
if (left.length) {
  console.error(`\n✖ relays started by the tests are still running:\n${left.join('\n')}`);
  process.exit(1);
}
console.log('\n✔ all checks passed');

/** Relays (by command line) that this run started (by environment) and that still run; Linux. */
function leftoverRelays(): string[] {
  if (!existsSync('/proc')) return [];
  const found: string[] = [];
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      const args = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ');
      // The relay from source, or the installed package's (tests/e2e/package.spec.ts).
      if (!args.includes('relay/cli.ts') && !args.includes('lib/brume.js')) continue;
      const env = readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0');
      if (env.includes(`BRUME_TEST_RUN=${runId}`)) found.push(`${pid} ${args}`);
    } catch {
      // gone meanwhile, or not ours to read
    }
  }
  return found;
}
