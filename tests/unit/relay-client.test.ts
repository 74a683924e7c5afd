// The one relay HTTP client: what it sends, and that every refusal is read one way.
import { describe, expect, it } from 'vitest';
import { decode, encode } from '../../core/codec';
import { AuthError, HttpError, QosError, UnavailableError } from '../../core/errors';
import type { HttpInit, HttpResponse } from '../../core/relay-client';
import { relayClient } from '../../core/relay-client';

function answer(status: number, body: unknown, type = 'application/json'): HttpResponse {
  const bytes =
    body === undefined
      ? new Uint8Array()
      : type.includes('msgpack')
        ? encode(body)
        : new TextEncoder().encode(JSON.stringify(body));
  return {
    ok: status < 300,
    status,
    headers: { get: (n) => (n === 'content-type' ? type : null) },
    json: async () => JSON.parse(new TextDecoder().decode(bytes)),
    arrayBuffer: async () => bytes.slice().buffer as ArrayBuffer,
    body: null,
  };
}

describe('relayClient', () => {
  it('sends the credential and a JSON body, and answers the JSON', async () => {
    const seen: { url: string; init?: HttpInit }[] = [];
    const relay = relayClient({
      base: 'http://relay.test:8787',
      credential: 'brume_k',
      fetch: async (url, init) => {
        seen.push({ url, ...(init && { init }) });
        return answer(201, { id: 'k1' });
      },
    });
    expect(await relay.json('POST', '/api/keys', { scopes: ['call'] })).toEqual({ id: 'k1' });
    expect(seen[0]!.url).toBe('http://relay.test:8787/api/keys');
    expect(seen[0]!.init).toMatchObject({
      method: 'POST',
      headers: { authorization: 'Bearer brume_k', 'content-type': 'application/json' },
      body: '{"scopes":["call"]}',
    });
  });

  it('sends and reads MessagePack', async () => {
    const relay = relayClient({
      base: '',
      fetch: async (url, init) => {
        expect(url).toBe('/api/call/a/s');
        expect(decode(init!.body as Uint8Array)).toEqual({ input: new Uint8Array([1, 2]) });
        return answer(200, { value: 3 }, 'application/msgpack');
      },
    });
    expect(await relay.msgpack('POST', '/api/call/a/s', { input: new Uint8Array([1, 2]) })).toEqual(
      {
        value: 3,
      },
    );
  });

  it('revives the relay error body as its class, with its details', async () => {
    const qos = { code: 'E_QOS', message: 'too slow', constraint: 'latencyMs', best: 12 };
    const relay = relayClient({ base: 'http://r', fetch: async () => answer(422, { error: qos }) });
    const e = await relay.json('GET', '/api/x').catch((x: unknown) => x);
    expect(e).toBeInstanceOf(QosError);
    expect(e).toMatchObject({ code: 'E_QOS', constraint: 'latencyMs', best: 12 });
    const auth = relayClient({
      base: 'http://r',
      fetch: async () => answer(401, { error: { code: 'E_AUTH', message: 'unknown key' } }),
    });
    expect(await auth.json('GET', '/api/nodes').catch((x: unknown) => x)).toBeInstanceOf(AuthError);
  });

  it('makes a body without an error an HttpError naming the status', async () => {
    const relay = relayClient({
      base: 'http://r',
      fetch: async () => answer(502, undefined, 'text/html'),
    });
    const e = await relay.json('GET', '/api/apps').catch((x: unknown) => x);
    expect(e).toBeInstanceOf(HttpError);
    expect((e as Error).message).toBe('GET /api/apps answered 502');
  });

  it('says the relay cannot be reached, keeping the cause', async () => {
    const cause = Object.assign(new TypeError('fetch failed'), { cause: { code: 'ECONNREFUSED' } });
    const relay = relayClient({
      base: 'http://127.0.0.1:9',
      fetch: async () => {
        throw cause;
      },
    });
    const e = await relay.json('GET', '/api/apps').catch((x: unknown) => x);
    expect(e).toBeInstanceOf(UnavailableError);
    expect((e as Error).message).toBe(
      'cannot reach the relay at http://127.0.0.1:9 (ECONNREFUSED)',
    );
    expect((e as Error).cause).toBe(cause);
  });
});
