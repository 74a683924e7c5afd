/**
 * The blob API (PROTOCOL.md §6): `PUT /api/blobs` streams a body of any size (up to the relay's
 * limit) into the content-addressed store and answers `{ hash, size }`; `GET /api/blobs/:hash`
 * (and HEAD) streams one back, whole or one byte range; `GET /api/blobs` lists them (admin).
 * An app's file is public (tabs fetch them); any other blob needs the `jobs` scope.
 * @example mountBlobs(app, { blobs, isAppFile, auth, log, maxBytes });
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { Counter, Gauge, type Registry } from 'prom-client';
import { z } from 'zod';
import {
  AuthError,
  BrumeError,
  ForbiddenError,
  InputError,
  LimitError,
  NotFoundError,
  toWire,
} from '../../core/errors';
import { describeIssues } from '../../core/issues';
import { isSha256 } from '../../core/names';
import type { Auth } from '../auth';
import type { Blobs, ByteRange } from '../blobs';
import type { RelayLogger } from '../log';
import { errorText } from './site';

export interface BlobRoutesOptions {
  blobs: Blobs;
  /** Whether `hash` is a file of a deployed app (public). */
  isAppFile(hash: string): Promise<boolean>;
  auth: Auth;
  log: RelayLogger;
  /** Largest blob a PUT may send, in bytes. */
  maxBytes: number;
  /** Where its metrics go (README: Metrics); none: not counted. */
  registry?: Registry;
}

/** Uploads by outcome (`stored` or an error code), bytes stored, uploads streaming now. */
function blobMetrics(registry: Registry | undefined, blobs: Blobs) {
  const registers = registry ? [registry] : [];
  const uploads = new Counter({
    name: 'brume_blob_uploads_total',
    help: 'PUT /api/blobs by outcome: stored, or the error code that refused it',
    labelNames: ['outcome'],
    registers,
  });
  const bytes = new Counter({
    name: 'brume_blob_upload_bytes_total',
    help: 'bytes of blobs stored by PUT /api/blobs (a duplicate counted again)',
    registers,
  });
  new Gauge({
    name: 'brume_blob_uploads_in_progress',
    help: 'uploads streaming into the blob store now',
    registers,
    collect() {
      this.set(blobs.uploading());
    },
  });
  return {
    stored(size: number) {
      uploads.inc({ outcome: 'stored' });
      bytes.inc(size);
    },
    /** Counts `e`; answers it, to be thrown. */
    refused<E>(e: E): E {
      uploads.inc({ outcome: e instanceof BrumeError ? e.code : 'other' });
      return e;
    },
  };
}

/** How long the rest of a refused upload is read (and dropped) before its connection is cut. */
const DRAIN_MS = 10_000;

const listQuery = z
  .object({
    after: z
      .string()
      .regex(/^[0-9a-f]{0,64}$/, 'a sha256 (or a prefix of one)')
      .default(''),
    limit: z.coerce.number().int().min(1).max(1000).default(100),
  })
  .strict();

export function mountBlobs(app: FastifyInstance, o: BlobRoutesOptions): void {
  const { blobs, auth } = o;
  const counts = blobMetrics(o.registry, blobs);

  // Uploaders: the jobs scope (inputs) or a deploy scope (an app author's files).
  const mayUpload = async (req: FastifyRequest) => {
    const p = auth.principal(req);
    if (!p) throw new AuthError('PUT /api/blobs needs a credential with scope jobs or deploy');
    if (!auth.allows(p, 'jobs') && !auth.allows(p, 'deploy')) {
      throw new ForbiddenError('PUT /api/blobs needs scope jobs or deploy');
    }
  };

  // In a scope of its own: every body type is handed to the route as the request stream, unread.
  void app.register(async (scope) => {
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser('*', (_req, _payload, done) => done(null));
    // A refused upload's unread rest would hold the connection (the next request on it waits
    // behind it): it is read and dropped for a while, and the connection closed after the answer.
    scope.addHook('onError', async (req, reply) => {
      if (req.raw.readableEnded) return;
      reply.header('connection', 'close');
      const cut = setTimeout(() => req.raw.socket?.destroy(), DRAIN_MS).unref();
      req.raw.once('close', () => clearTimeout(cut));
      req.raw.resume();
    });
    scope.put('/api/blobs', { onRequest: mayUpload }, async (req, reply) => {
      const declared = Number(req.headers['content-length']);
      if (declared > o.maxBytes) {
        throw counts.refused(
          new LimitError(
            `content-length ${declared} is over the relay's blob limit of ${o.maxBytes} bytes (--max-blob-mib)`,
          ),
        );
      }
      const expect = header(req, 'x-brume-sha256');
      const started = performance.now();
      const stored = await blobs.putStream(req.raw, o.maxBytes, expect).catch((e: unknown) => {
        o.log.warn({ reqId: req.id }, `blob upload refused: ${errorText(e)}`);
        counts.refused(e);
        throw e;
      });
      counts.stored(stored.size);
      o.log.info(
        { reqId: req.id, hash: stored.hash, size: stored.size },
        `stored blob ${stored.hash.slice(0, 12)} (${stored.size} bytes in ${Math.round(performance.now() - started)} ms)`,
      );
      return reply.code(201).send(stored);
    });
  });

  app.get('/api/blobs', { onRequest: auth.hook('admin') }, async (req) => {
    const r = listQuery.safeParse(req.query ?? {});
    if (!r.success) throw new InputError(describeIssues(r.error, [], { whole: 'the query' }));
    const list = await blobs.list(r.data.after, r.data.limit);
    const refs = await blobs.referrers(list.map((b) => b.hash));
    return list.map((b) => ({ ...b, referrers: refs.get(b.hash) ?? [] }));
  });

  // Now rather than at the next period (an operator freeing disk, a test).
  app.post('/api/blobs/collect', { onRequest: auth.hook('admin') }, async (req) => {
    const r = await blobs.collect();
    o.log.info({ reqId: req.id, deleted: r.deleted.length, kept: r.kept }, 'blobs collected');
    return r;
  });

  // HEAD by the same handler, which then opens no stream (Fastify's own HEAD would read it all).
  app.route<{ Params: { hash: string } }>({
    method: ['GET', 'HEAD'],
    url: '/api/blobs/:hash',
    exposeHeadRoute: false,
    handler: async (req, reply) => {
      const { hash } = req.params;
      if (!isSha256(hash)) {
        throw new InputError(
          `hash: "${hash.slice(0, 80)}" is not a sha256 (64 lowercase hex digits)`,
        );
      }
      const open = await o.isAppFile(hash);
      if (!open) auth.require(req, 'jobs');
      const etag = `"${hash}"`;
      reply
        // A shared cache may keep an app's file for everyone, never another blob.
        .header('cache-control', `${open ? 'public' : 'private'}, max-age=31536000, immutable`)
        .header('etag', etag)
        .header('accept-ranges', 'bytes');
      if (req.headers['if-none-match'] === etag) return reply.code(304).send();
      const file = await blobs.openFile(hash);
      if (!file) throw new NotFoundError(`no blob with sha256 ${hash} on this relay`);
      const range = parseRange(req.headers.range, file.size);
      if (range instanceof InputError || req.method === 'HEAD') await file.close();
      if (range instanceof InputError) {
        return reply
          .code(416)
          .header('content-range', `bytes */${file.size}`)
          .send({ error: toWire(range) });
      }
      reply.type('application/octet-stream');
      if (range) {
        reply
          .code(206)
          .header('content-range', `bytes ${range.start}-${range.end}/${file.size}`)
          .header('content-length', range.end - range.start + 1);
      } else reply.header('content-length', file.size);
      return reply.send(req.method === 'HEAD' ? undefined : file.read(range));
    },
  });
}

function header(req: FastifyRequest, name: string): string | undefined {
  const v = req.headers[name];
  if (Array.isArray(v)) throw new InputError(`${name}: send it once`);
  return v;
}

/**
 * The one range of a `Range: bytes=…` header (first-last, first-, or -suffix), clipped to the
 * blob; undefined for no header; an InputError (answered 416) for any other form, several
 * ranges, or a range that starts past the end.
 */
export function parseRange(
  text: string | undefined,
  size: number,
): ByteRange | InputError | undefined {
  if (text === undefined) return undefined;
  const m = /^bytes=(\d{0,16})-(\d{0,16})$/.exec(text.trim());
  if (!m) {
    const several = /^bytes=.*,/.test(text);
    return new InputError(
      several
        ? 'Range: one range per request (send bytes=first-last, bytes=first- or bytes=-suffix)'
        : `Range: "${text.slice(0, 80)}" is not bytes=first-last, bytes=first- or bytes=-suffix`,
    );
  }
  const [, a, b] = m as unknown as [string, string, string];
  if (a === '' && b === '') return new InputError('Range: bytes=- names no bytes');
  if (a === '') {
    const n = Number(b);
    if (n === 0 || size === 0)
      return new InputError(`Range: bytes=-${b} of a ${size}-byte blob names no bytes`);
    return { start: Math.max(0, size - n), end: size - 1 };
  }
  const start = Number(a);
  const end = b === '' ? size - 1 : Math.min(Number(b), size - 1);
  if (start >= size)
    return new InputError(`Range: starts at ${start}, past the end of a ${size}-byte blob`);
  if (b !== '' && Number(b) < start)
    return new InputError(`Range: ends (${b}) before it starts (${start})`);
  return { start, end };
}
