// HTTP statuses say whose fault it is: the one table (core/errors.ts errorTable) against
// PROTOCOL.md §6 and §8, and over HTTP against a real relay process: a Logic's own refusal
// (E_APP) is a 4xx, a Logic that traps or outruns its budget a 5xx.
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { errorTable } from '../../core/errors';
import { packBundle } from '../../core/manifest';
import { hostileApp } from '../apps';
import { deploy, type RelayProcess, startRelay } from '../relay-process';
import { until } from '../until';

const protocol = readFileSync(new URL('../../PROTOCOL.md', import.meta.url), 'utf8');

/** The codes each row of the first `| status | codes |` table after `heading` gives a status. */
function tableAfter(heading: string): Map<string, number> {
  const from = protocol.indexOf(heading);
  expect(from, heading).toBeGreaterThan(-1);
  const lines = protocol.slice(from).split('\n');
  const start = lines.findIndex((l) => /^\| status \| codes \|/.test(l));
  const out = new Map<string, number>();
  for (const line of lines.slice(start + 2)) {
    const m = /^\| (\d{3}) \| (.*?) \|/.exec(line);
    if (!m) break;
    for (const code of m[2]!.matchAll(/`(E_[A-Z_]+)`/g)) out.set(code[1]!, Number(m[1]));
  }
  return out;
}

describe('the status table', () => {
  const table = new Map(Object.entries(errorTable).map(([code, e]) => [code, e.status]));

  it('PROTOCOL.md §6 and §8 list every code with the status errorTable gives it', () => {
    expect(tableAfter('## 6. HTTP API')).toEqual(table);
    expect(tableAfter('## 8. Errors')).toEqual(table);
  });

  it("the caller's input and a Logic's refusal are 4xx; a Logic that fails is 5xx", () => {
    for (const code of ['E_INPUT', 'E_APP', 'E_QOS', 'E_MANIFEST'] as const) {
      expect(errorTable[code].status, code).toBeGreaterThanOrEqual(400);
      expect(errorTable[code].status, code).toBeLessThan(500);
    }
    for (const code of [
      'E_LOGIC_FAULT',
      'E_LOGIC_TIMEOUT',
      'E_LOGIC_MEMORY',
      'E_INTERNAL',
    ] as const) {
      expect(errorTable[code].status, code).toBeGreaterThanOrEqual(500);
    }
  });
});

describe('over HTTP, against a real relay', () => {
  let relay: RelayProcess;
  beforeAll(async () => {
    relay = await startRelay();
    const b = await hostileApp();
    const res = await deploy(relay, packBundle(b.manifest, b.files));
    expect(res.ok, await res.clone().text()).toBe(true);
  }, 60_000);
  afterAll(() => relay?.stop());

  async function call(app: string, service: string, body: unknown) {
    const res = await fetch(`${relay.url}/api/call/${app}/${service}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    return { status: res.status, body: (await res.json()) as { error?: { code: string } } };
  }

  /** The first answer once the relay's cloud node has joined (503 until then). */
  const answered = (app: string, service: string, body: unknown) =>
    until(async () => {
      const r = await call(app, service, body);
      return r.status !== 503 && r;
    }, `an answer from ${app}/${service}`);

  it("a Logic's E_APP is 422: digits refusing a canvas of width 0", async () => {
    const r = await answered('digits', 'classify', { input: { width: 0, height: 1 } });
    expect(r.body.error?.code).toBe('E_APP');
    expect(r.status).toBe(422);
  });

  it("the echo fixture's own error() is 422, its trap 500, its endless loop 5xx", async () => {
    const fail = await answered('hostile', 'echo', { input: 1, rpc: 'fail' });
    expect([fail.status, fail.body.error?.code]).toEqual([422, 'E_APP']);
    const trap = await answered('hostile', 'echo', { input: 1, rpc: 'trap' });
    expect([trap.status, trap.body.error?.code]).toEqual([500, 'E_LOGIC_FAULT']);
    const loop = await answered('hostile', 'loop', { input: 1 });
    expect(loop.body.error?.code).toBe('E_LOGIC_TIMEOUT');
    expect(loop.status).toBeGreaterThanOrEqual(500);
  }, 30_000);
});
