/**
 * The jobs API as page code and Node clients use it (`window.brume.jobs`, PROTOCOL.md §6.2): submit
 * a job to the relay, read it, watch its states, cancel it — over HTTP in MessagePack (so binary
 * inputs and results travel as they are). A tab submits without a credential when the relay takes
 * anonymous calls (the default): its jobs are read and cancelled by id, which only it was told.
 * @example const { id } = await brume.jobs.submit({ app: 'ocr', service: 'read', input: pages });
 *          for await (const job of brume.jobs.watch(id)) console.log(job.state);
 *          const { result } = await brume.jobs.get(id);
 */
import { decode } from './codec';
import { HttpError } from './errors';
import type { RelayClient } from './relay-client';
import type { Qos } from './scheduler';

export const jobStates = ['queued', 'running', 'succeeded', 'failed', 'cancelled'] as const;
export type JobState = (typeof jobStates)[number];
export const isTerminal = (s: JobState): boolean => s !== 'queued' && s !== 'running';

/** What `POST /api/jobs` takes: `input`, or `inputBlob` (the sha256 of its MessagePack bytes). */
export interface JobRequest {
  app: string;
  service: string;
  input?: unknown;
  inputBlob?: string;
  rpc?: string;
  qos?: Qos;
  /** -100..100, higher first; default 0. */
  priority?: number;
  /** Fails with E_TIMEOUT unless done this many ms after it was submitted. */
  deadlineMs?: number;
  /** The same key from the same submitter answers the job it made first. */
  idempotencyKey?: string;
}

/** What `GET /api/jobs/:id` answers. */
export interface JobView {
  id: string;
  app: string;
  service: string;
  state: JobState;
  priority: number;
  attempts: number;
  created: number;
  started?: number;
  finished?: number;
  deadline?: number;
  node?: string;
  result?: unknown;
  /** The sha256 of a blob holding the MessagePack-encoded result (a result over the threshold). */
  resultBlob?: string;
  error?: { code: string; message: string };
  /** Why earlier runs did not succeed. */
  reasons?: string[];
  /** A queued job: why it has not started. */
  waiting?: string;
}

export interface JobsApi {
  /** Hands a job in; resolves once the relay has it on disk. */
  submit(request: JobRequest): Promise<{ id: string; state: JobState }>;
  get(id: string): Promise<JobView>;
  /** The job's view now and at each change, ending after a terminal state (without `result`). */
  watch(id: string): AsyncIterable<JobView>;
  cancel(id: string): Promise<JobView>;
}

const MSGPACK = 'application/msgpack';

/** A jobs client over `relay` (its origin and credential: core/relay-client.ts). */
export function jobsClient(relay: RelayClient): JobsApi {
  const path = (id: string) => `/api/jobs/${encodeURIComponent(id)}`;
  const read = async <T>(method: string, p: string): Promise<T> => {
    const res = await relay.send(method, p, { headers: { accept: MSGPACK } });
    return decode(new Uint8Array(await res.arrayBuffer())) as T;
  };
  return {
    submit: (r) => relay.msgpack('POST', '/api/jobs', r),
    get: (id) => read('GET', path(id)),
    cancel: (id) => read('DELETE', path(id)),
    async *watch(id) {
      const res = await relay.send('GET', `${path(id)}/watch`);
      if (!res.body) throw new HttpError('the watch answered without a stream');
      const reader = res.body.getReader();
      let held = new Uint8Array(0);
      for (;;) {
        const { value, done } = await reader.read();
        if (done || !value) return;
        const next = new Uint8Array(held.byteLength + value.byteLength);
        next.set(held);
        next.set(value, held.byteLength);
        held = next;
        // Events end with a blank line; each carries one `data:` line of JSON.
        for (let end = blankLine(held); end >= 0; end = blankLine(held)) {
          const event = new TextDecoder().decode(held.subarray(0, end));
          held = held.slice(end + 2);
          const data = /^data: (.*)$/m.exec(event)?.[1];
          if (!data) continue;
          const view = JSON.parse(data) as JobView;
          yield view;
          if (isTerminal(view.state)) return;
        }
      }
    },
  };
}

function blankLine(bytes: Uint8Array): number {
  for (let i = 0; i + 1 < bytes.byteLength; i++)
    if (bytes[i] === 10 && bytes[i + 1] === 10) return i;
  return -1;
}
