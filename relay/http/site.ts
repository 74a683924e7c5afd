/**
 * What the relay answers around its API: the built web app (cross-origin isolated, so tabs get
 * SharedArrayBuffer and threaded wasm), the admin console (never framed), the embed script (for
 * other sites), `/api/health`, and one shape for every error a route throws:
 * `{ error: { code, message, … } }` with the status PROTOCOL.md §8 gives its code.
 * @example await mountSite(app, { webRoot, bodyLimit, bundleTypes, log, version, startedAt });
 */
import { existsSync } from 'node:fs';
import { relative, sep } from 'node:path';
import fastifyStatic from '@fastify/static';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { BrumeError, httpStatus, InternalError, NotFoundError, toWire } from '../../core/errors';
import type { RelayLogger } from '../log';

export interface SiteOptions {
  /** The built web app's folder. */
  webRoot: string;
  /** Largest request body, for the message that refuses a larger one. */
  bodyLimit: number;
  /** The content types a bundle is sent as, for the message that refuses another. */
  bundleTypes: string[];
  log: RelayLogger;
  /** The relay's version and when it started (`performance.now()`), for `/api/health`. */
  version: string;
  startedAt: number;
}

const MiB = 1024 * 1024;

// The admin console holds the admin token: no other page may frame it (clickjacking).
const NO_FRAMING = {
  'content-security-policy': "frame-ancestors 'none'",
  'x-frame-options': 'DENY',
};

// Cross-origin isolation: without it browsers withhold SharedArrayBuffer (threaded wasm, ort-web).
const ISOLATION_HEADERS = {
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-embedder-policy': 'require-corp',
  'cross-origin-resource-policy': 'same-origin',
};

export async function mountSite(app: FastifyInstance, o: SiteOptions): Promise<void> {
  app.addHook('onSend', async (req, reply, payload) => {
    reply.headers(ISOLATION_HEADERS);
    const path = req.url.split('?')[0];
    if (path === '/admin' || path === '/admin.html') reply.headers(NO_FRAMING);
    if (path === '/brume.js') {
      // The embed script is loaded by other sites' pages, with Subresource Integrity (CORS).
      reply.header('cross-origin-resource-policy', 'cross-origin');
      reply.header('access-control-allow-origin', '*');
      reply.header('cache-control', 'no-cache');
    }
    return payload;
  });

  app.setErrorHandler((error: FastifyError, req, reply) => {
    const { status, body } = httpError(error, o);
    const path = req.url.split('?')[0];
    if (status >= 500) o.log.error({ reqId: req.id }, `${req.method} ${path}: ${errorText(error)}`);
    return reply.code(status).send(body);
  });

  app.setNotFoundHandler((req, reply) => {
    if (!req.url.startsWith('/api/') && !existsSync(o.webRoot)) return webNotBuilt(o, req, reply);
    const err = new NotFoundError(`nothing at ${req.method} ${req.url.split('?')[0]}`);
    return reply.code(404).send({ error: toWire(err) });
  });

  // Static files; a missing file (or a missing webRoot) falls through to the not-found handler.
  await app.register(fastifyStatic, {
    root: o.webRoot,
    prefix: '/',
    suppressWarning: true,
    setHeaders(reply, path) {
      // Vite names built assets by content hash, so they never change under one name.
      if (relative(o.webRoot, path).startsWith(`assets${sep}`)) {
        reply.header('cache-control', 'public, max-age=31536000, immutable');
      }
    },
  });

  // The admin console; its data comes from the admin API, which checks the token.
  app.get('/admin', (_req, reply) => reply.sendFile('admin.html'));

  app.get('/api/health', async () => ({
    ok: true,
    version: o.version,
    uptimeS: Math.round(performance.now() - o.startedAt) / 1000,
  }));
}

function webNotBuilt(o: SiteOptions, req: FastifyRequest, reply: FastifyReply) {
  const message = `web app not built: run npm run build (looked in ${o.webRoot})`;
  reply.code(503);
  if (req.headers.accept?.includes('text/html')) {
    return reply.type('text/html; charset=utf-8').send(`<!doctype html><title>Brume</title>
<p>Brume relay is running, but the ${escapeHtml(message)}.</p>`);
  }
  return reply.send({ error: { code: 'E_UNAVAILABLE', message } });
}

/** HTTP status and `{ error: { code, message } }` for anything a handler threw. */
function httpError(error: unknown, o: SiteOptions): { status: number; body: unknown } {
  if (error instanceof BrumeError) {
    return { status: httpStatus(error), body: { error: toWire(error) } };
  }
  const fe = error as Partial<FastifyError>;
  const status = typeof fe.statusCode === 'number' ? fe.statusCode : 500;
  if (status >= 500) {
    return { status, body: { error: toWire(new InternalError(errorText(error))) } };
  }
  let message = fe.message ?? 'bad request';
  if (fe.code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
    message = `request body is larger than the relay's limit of ${Math.floor(o.bodyLimit / MiB)} MiB`;
  } else if (fe.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') {
    message = `unsupported content-type: send bundles as ${o.bundleTypes.join(' or ')}`;
  }
  return { status, body: { error: { code: 'E_INPUT', message } } };
}

export function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

function escapeHtml(s: string): string {
  return s.replace(/[&<>"]/g, (c) => `&#${c.charCodeAt(0)};`);
}
