// Helpers for the jobs tests and bench: the jobs API over real HTTP, as a client sees it.
import { decode, encode } from '../core/codec';
import { until } from './until';

export interface JobAnswer {
  status: number;
  body: Record<string, unknown> & {
    id?: string;
    state?: string;
    error?: { code: string; message: string };
  };
}

/** One request to the jobs API with JSON (or MessagePack when `msgpack`), the admin `token` if given. */
export async function jobsApi(
  url: string,
  method: string,
  path: string,
  o: { body?: unknown; token?: string; msgpack?: boolean; raw?: string } = {},
): Promise<JobAnswer> {
  const type = o.msgpack ? 'application/msgpack' : 'application/json';
  const headers: Record<string, string> = { accept: type };
  if (o.token) headers.authorization = `Bearer ${o.token}`;
  let body: BodyInit | undefined;
  if (o.raw !== undefined) body = o.raw;
  else if (o.body !== undefined)
    body = o.msgpack ? Buffer.from(encode(o.body)) : JSON.stringify(o.body);
  if (body !== undefined) headers['content-type'] = type;
  const res = await fetch(`${url}${path}`, {
    method,
    headers,
    ...(body !== undefined && { body }),
  });
  const bytes = new Uint8Array(await res.arrayBuffer());
  const parsed = res.headers.get('content-type')?.includes('msgpack')
    ? decode(bytes)
    : JSON.parse(new TextDecoder().decode(bytes) || '{}');
  return { status: res.status, body: parsed as JobAnswer['body'] };
}

/** Submits a job with the admin token; throws unless the relay answers 202. */
export async function submitJob(
  relay: { url: string; token: string },
  body: unknown,
): Promise<string> {
  const r = await jobsApi(relay.url, 'POST', '/api/jobs', { body, token: relay.token });
  if (r.status !== 202) throw new Error(`submit answered ${r.status}: ${JSON.stringify(r.body)}`);
  return r.body.id!;
}

/** Polls GET /api/jobs/:id until `state` (or any terminal state when omitted). */
export async function jobWhen(
  relay: { url: string; token: string },
  id: string,
  states: string[] = ['succeeded', 'failed', 'cancelled'],
  timeoutMs = 60_000,
): Promise<JobAnswer['body']> {
  return until(
    async () => {
      // MessagePack: a binary result has no JSON form.
      const r = await jobsApi(relay.url, 'GET', `/api/jobs/${id}`, {
        token: relay.token,
        msgpack: true,
      });
      return states.includes(r.body.state ?? '') ? r.body : undefined;
    },
    `job ${id} to be ${states.join(' or ')}`,
    timeoutMs,
    50,
  );
}

/**
 * Iterations of the echo Logic's `spin` per millisecond on `app` (the cloud node): n doubles until
 * one call takes at least half a second, so the figure is not a few milliseconds' noise.
 */
export async function spinRate(url: string, app = 'greet'): Promise<number> {
  const call = async (n: number) => {
    const t0 = performance.now();
    const res = await fetch(`${url}/api/call/${app}/${app}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ input: { n }, rpc: 'spin' }),
    });
    if (!res.ok) throw new Error(`spin call answered ${res.status}: ${await res.text()}`);
    await res.arrayBuffer();
    return performance.now() - t0;
  };
  await call(1); // the Logic loaded
  for (let n = 10_000_000; ; n *= 2) {
    const ms = await call(n);
    if (ms >= 500 || n >= 2 ** 36) return n / ms;
  }
}
