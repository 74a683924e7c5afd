// The relay's log as an operator's tools read it: a real relay process (its cloud node too),
// driven with requests that carry an API key, the admin token, a cookie, a private context value
// and secret call inputs; every stdout line is JSON with level, time and msg, request lines carry
// their reqId, a node's call its call id, and no line holds any of the secrets.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { joinRaw } from '../raw-node';
import { type RelayProcess, startRelay } from '../relay-process';
import { until } from '../until';

let relay: RelayProcess;
beforeAll(async () => {
  relay = await startRelay({ args: ['--log-level', 'debug'] });
}, 120_000);
afterAll(async () => {
  await relay?.stop();
});

interface Line {
  level: number;
  time: number;
  msg: string;
  reqId?: string;
  call?: number;
  req?: unknown;
  res?: unknown;
}

/** Every complete line the relay wrote, parsed; a line that is not JSON fails the test. */
function lines(): { raw: string; line: Line }[] {
  return relay
    .output()
    .split('\n')
    .slice(0, -1)
    .map((raw) => {
      try {
        return { raw, line: JSON.parse(raw) as Line };
      } catch {
        throw new Error(`not a JSON line: ${raw}`);
      }
    });
}

const secrets = {
  cookie: 'cookie-secret-4f1e',
  input: 'input-secret-90ab',
  privateValue: 'private-secret-77c2',
  query: 'query-secret-3d5a',
  wrongKey: 'brume_wrong-secret-c0de',
};

describe('the relay log', () => {
  it('is JSON lines with reqId on request lines and no secret anywhere', async () => {
    const { url, token } = relay;
    const admin = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };
    // startRelay returns once the relay is up, its cloud node joined: ready, with that check.
    const ready = await fetch(`${url}/api/ready`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toMatchObject({ ready: true, checks: { cloud: { ok: true } } });
    // An API key, made by the admin: its secret is in this answer only.
    const made = await fetch(`${url}/api/keys`, {
      method: 'POST',
      headers: admin,
      body: JSON.stringify({ scopes: ['call', 'metrics'], label: 'logs test' }),
    });
    expect(made.status).toBe(201);
    const key = ((await made.json()) as { key: string }).key;

    // A call with the key, a cookie, a secret in the query string and in the input.
    const called = await fetch(`${url}/api/call/digits/classify?token=${secrets.query}`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${key}`,
        cookie: `session=${secrets.cookie}`,
        'content-type': 'application/json',
      },
      body: JSON.stringify({ input: { pixels: secrets.input } }),
    });
    expect(called.status).toBeGreaterThanOrEqual(400); // not an image: the Logic refuses it
    // A private value over HTTP is refused; the value itself must not reach the log either.
    const put = await fetch(`${url}/api/context/digits/note`, {
      method: 'PUT',
      headers: admin,
      body: JSON.stringify({ value: secrets.privateValue, privacy: ['owner'] }),
    });
    expect(put.status).toBeGreaterThanOrEqual(400);
    // A credential the relay does not know, and a scrape with the key.
    const wrong = await fetch(`${url}/api/calls`, {
      headers: { authorization: `Bearer ${secrets.wrongKey}` },
    });
    expect(wrong.status).toBe(401);
    expect(
      (await fetch(`${url}/metrics`, { headers: { authorization: `Bearer ${key}` } })).status,
    ).toBe(200);

    // A node's call through the relay, with a secret input: its line names the call, not the input.
    const { node } = await joinRaw(`${url.replace('http', 'ws')}/ws`);
    node.send({
      t: 'call',
      id: 41,
      to: '0'.repeat(32),
      app: 'digits',
      service: 'classify',
      rpc: 'classify',
      input: { pixels: secrets.input },
      qos: {},
    });
    await node.next('error', 30_000);
    node.ws.close();

    const all = await until(() => {
      const got = lines();
      return got.some((l) => l.line.call === 41) && got.some((l) => l.line.reqId && l.line.res)
        ? got
        : undefined;
    }, 'the call lines in the relay log');
    for (const { raw, line } of all) {
      expect(typeof line.level, raw).toBe('number');
      expect(typeof line.time, raw).toBe('number');
      expect(typeof line.msg, raw).toBe('string');
      if (line.req || line.res || (/^call /.test(String(line.msg)) && line.call === undefined))
        expect(line.reqId, raw).toMatch(/^req-/);
      for (const secret of [key, token, ...Object.values(secrets)]) {
        expect(raw, `a secret in the log: ${raw}`).not.toContain(secret);
      }
    }
    // The HTTP call's own lines: the request, its answer, the call through the hub (failed: the
    // Logic refused the input), one reqId and the call's trace id.
    const callRequest = all.find(
      (l) => (l.line.req as { url?: string })?.url === '/api/call/digits/classify',
    );
    expect(callRequest).toBeDefined();
    const sameRequest = all.filter((l) => l.line.reqId === callRequest!.line.reqId);
    expect(sameRequest.map((l) => l.line.msg)).toEqual(
      expect.arrayContaining(['incoming request', 'call failed', 'request completed']),
    );
    // The node's call: its id and the calling node on its line.
    const nodeCall = all.find((l) => l.line.call === 41)!;
    expect(nodeCall.line.msg).toBe('call failed'); // its input is not an image
    expect(nodeCall.raw).toContain(`"caller":"`);
  }, 120_000);
});
