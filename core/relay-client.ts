/**
 * The one client of the relay's HTTP API (PROTOCOL.md §6), used by the admin console, the CLI and
 * the app source: a base URL, an optional credential sent as a Bearer token, and `fetch` passed
 * in (no DOM or Node types here). Every refusal is read one way: the `{ error }` body revived by
 * `fromWire` (so callers branch on its class and code); a body without one is an `HttpError`
 * naming the status; a relay that cannot be reached is an `UnavailableError`.
 * @example const relay = relayClient({ base: 'http://127.0.0.1:8787', credential: token, fetch });
 *          const keys = await relay.json<KeyInfo[]>('GET', '/api/keys');
 */
import { decode, encode } from './codec';
import { type BrumeError, fromWire, HttpError, UnavailableError } from './errors';

/** What a request may carry: the slice of `RequestInit` the client uses. */
export interface HttpInit {
  method?: string;
  headers?: Record<string, string>;
  body?: string | Uint8Array<ArrayBuffer>;
}

/** The slice of a Fetch API `Response` the client reads. */
export interface HttpResponse {
  ok: boolean;
  status: number;
  headers: { get(name: string): string | null };
  json(): Promise<unknown>;
  arrayBuffer(): Promise<ArrayBuffer>;
  body: { getReader(): { read(): Promise<{ done: boolean; value?: Uint8Array }> } } | null;
}

/** The platform's `fetch` (the browser's, Node's, or a test's). */
export type HttpFetch = (url: string, init?: HttpInit) => Promise<HttpResponse>;

export interface RelayClientOptions {
  /** The relay's origin, e.g. `http://127.0.0.1:8787`; '' for this page's own origin. */
  base: string;
  /** An API key or the admin token, sent as `Authorization: Bearer …`. */
  credential?: string;
  fetch: HttpFetch;
}

export interface RelayClient {
  readonly base: string;
  /** For a request the client cannot make itself (an upload with progress). */
  readonly credential?: string;
  /** A request with a JSON body (when given); answers the decoded JSON (undefined for 204). */
  json<T>(method: string, path: string, body?: unknown): Promise<T>;
  /** A request with a MessagePack body; answers the decoded MessagePack (or JSON) answer. */
  msgpack<T>(method: string, path: string, body: unknown): Promise<T>;
  /** A request whose answer the caller reads itself (a blob to stream), refusals thrown. */
  send(method: string, path: string, init?: HttpInit): Promise<HttpResponse>;
}

const MSGPACK = 'application/msgpack';

export function relayClient(options: RelayClientOptions): RelayClient {
  const { base, credential } = options;
  const where = base || 'this page';
  const url = (path: string) => (base ? new URL(path, base).toString() : path);

  async function send(method: string, path: string, init: HttpInit = {}): Promise<HttpResponse> {
    const headers = {
      ...init.headers,
      ...(credential !== undefined && { authorization: `Bearer ${credential}` }),
    };
    let res: HttpResponse;
    try {
      res = await options.fetch(url(path), { ...init, method, headers });
    } catch (e) {
      const why = (e as { cause?: { code?: string } }).cause?.code ?? (e as Error).message;
      throw new UnavailableError(`cannot reach the relay at ${where} (${why})`, { cause: e });
    }
    if (!res.ok) throw await refusal(res, `${method} ${path}`);
    return res;
  }

  const read = async <T>(res: HttpResponse): Promise<T> => {
    if (res.status === 204) return undefined as T;
    const type = res.headers.get('content-type') ?? '';
    if (type.includes('msgpack')) return decode(new Uint8Array(await res.arrayBuffer())) as T;
    return (await res.json()) as T;
  };

  return {
    base,
    ...(credential !== undefined && { credential }),
    send,
    async json<T>(method: string, path: string, body?: unknown) {
      const init: HttpInit =
        body === undefined
          ? {}
          : { headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) };
      return read<T>(await send(method, path, init));
    },
    async msgpack<T>(method: string, path: string, body: unknown) {
      const bytes = encode(body) as Uint8Array<ArrayBuffer>;
      const headers = { 'content-type': MSGPACK, accept: MSGPACK };
      return read<T>(await send(method, path, { headers, body: bytes }));
    },
  };
}

/**
 * The error a refused request stands for: the relay's `{ error }` body revived as its class, or
 * an HttpError naming the status when the body holds none (a proxy, a relay too old).
 */
export async function refusal(res: HttpResponse, what: string): Promise<BrumeError> {
  let body: { error?: unknown } | undefined;
  try {
    const type = res.headers.get('content-type') ?? '';
    body = (
      type.includes('msgpack') ? decode(new Uint8Array(await res.arrayBuffer())) : await res.json()
    ) as { error?: unknown } | undefined;
  } catch {
    body = undefined;
  }
  if (body && typeof body === 'object' && body.error) return fromWire(body.error);
  return new HttpError(`${what} answered ${res.status}`);
}
