// `npm test`: everything CI runs, in order, stopping at the first failure.
// Browser tests run inside a loopback-only network namespace where the machine allows one, so
// nothing a test does can reach another host (ENVIRONMENT.md); WebRTC tests require it.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
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
console.log('\n✔ all checks passed');
