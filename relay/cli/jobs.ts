/**
 * `brume submit` and `brume job`: asynchronous jobs over the relay's jobs API (POST /api/jobs,
 * GET and DELETE /api/jobs/:id, GET /api/jobs/:id/watch as Server-Sent Events; PROTOCOL.md §6).
 * @example
 * brume submit digits classify --input @digit.msgpack     # prints the job's id
 * brume job 01J… --watch                                   # each state until it ends
 */
import { LimitError, UnavailableError } from '../../core/errors';
import { type Invocation, integer, UsageError } from './args';
import { inputOf, relayFor, remote, show } from './remote';

/** A job as GET /api/jobs/:id answers it (the fields the CLI reads; the rest is printed as is). */
interface Job {
  id: string;
  state: string;
  result?: unknown;
  resultBlob?: string;
  error?: { code?: string; message?: string };
  [field: string]: unknown;
}

const ENDED = new Set(['succeeded', 'failed', 'cancelled']);

/** The longest line an event stream may send before the watch gives up on it. */
const MAX_EVENT_BYTES = 16 * 2 ** 20;

export async function submit({ positionals, values, flag }: Invocation): Promise<number> {
  const [app, service, ...extra] = positionals;
  if (!app || !service || extra.length) {
    throw new UsageError(
      'submit takes an app and a service: brume submit digits classify --input …',
    );
  }
  const input = await inputOf(flag);
  const priority = flag('priority');
  const deadline = flag('deadline-ms');
  const key = flag('idempotency-key');
  const body = {
    app,
    service,
    input: input.value,
    ...(priority !== undefined && { priority: integer('--priority', priority, 0, 1_000_000) }),
    ...(deadline !== undefined && {
      deadlineMs: integer('--deadline-ms', deadline, 1, 365 * 86_400_000),
    }),
    ...(key !== undefined && { idempotencyKey: key }),
  };
  const relay = await relayFor(flag);
  return remote('submit refused', async () => {
    const job = input.msgpack
      ? await relay.msgpack<Job>('POST', '/api/jobs', body)
      : await relay.json<Job>('POST', '/api/jobs', body);
    show(values, job, () => console.log(job.id));
  });
}

export async function job({ positionals, values, flag }: Invocation): Promise<number> {
  const [id, ...extra] = positionals;
  if (!id || extra.length) throw new UsageError('job takes one job id: brume job <id>');
  if (values.watch && values.cancel) throw new UsageError('--watch or --cancel, not both');
  const path = `/api/jobs/${encodeURIComponent(id)}`;
  const relay = await relayFor(flag);
  return remote('refused', async () => {
    if (values.cancel) {
      const j = await relay.json<Job | undefined>('DELETE', path);
      show(values, j ?? { id, state: 'cancelled' }, () => console.log(`cancelled job ${id}`));
      return;
    }
    if (!values.watch) {
      const j = await relay.json<Job>('GET', path);
      show(values, j, () => printJob(j));
      return;
    }
    const res = await relay.send('GET', `${path}/watch`, {
      headers: { accept: 'text/event-stream' },
    });
    for await (const j of events(res.body)) {
      if (values.json) console.log(JSON.stringify(j));
      else printJob(j);
      if (ENDED.has(j.state)) return;
    }
    throw new UnavailableError('the relay ended the watch before the job ended');
  });
}

function printJob(j: Job): void {
  const line = [`${j.id}  ${j.state}`];
  if (typeof j.node === 'string') line.push(`on ${j.node}`);
  if (typeof j.attempts === 'number') line.push(`attempt ${j.attempts}`);
  console.log(line.join('  '));
  if (j.state === 'succeeded') {
    console.log(j.resultBlob ? `result: blob ${j.resultBlob}` : JSON.stringify(j.result, null, 2));
  }
  if (j.error) console.log(`error${j.error.code ? ` (${j.error.code})` : ''}: ${j.error.message}`);
}

type Body = { getReader(): { read(): Promise<{ done: boolean; value?: Uint8Array }> } } | null;

/** The `data:` of each Server-Sent Event, parsed as a job; a line over the bound ends the watch. */
async function* events(body: Body): AsyncGenerator<Job> {
  if (!body) return;
  const reader = body.getReader();
  const text = new TextDecoder();
  let buffered = '';
  let data: string[] = [];
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return;
    buffered += text.decode(value, { stream: true });
    if (buffered.length > MAX_EVENT_BYTES) {
      throw new LimitError(`the watch sent an event over ${MAX_EVENT_BYTES} bytes`);
    }
    let end = buffered.indexOf('\n');
    while (end >= 0) {
      const line = buffered.slice(0, end).replace(/\r$/, '');
      buffered = buffered.slice(end + 1);
      end = buffered.indexOf('\n');
      if (line.startsWith('data:')) data.push(line.slice(5).trimStart());
      else if (line === '' && data.length > 0) {
        const parsed = parseJob(data.join('\n'));
        data = [];
        if (parsed) yield parsed;
      }
    }
  }
}

function parseJob(text: string): Job | undefined {
  try {
    const j = JSON.parse(text) as Job;
    return j && typeof j === 'object' && typeof j.state === 'string' ? j : undefined;
  } catch {
    return undefined;
  }
}
