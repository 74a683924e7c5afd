/**
 * What operators and their tools ask a relay: `GET /metrics` (Prometheus text, behind the
 * `metrics` scope: a key with it, or the admin token) and `GET /api/ready` (200 when it can serve,
 * 503 with the failing check named otherwise). `/api/health`, alive or not, is relay/http/site.ts.
 * @example mountObserve(app, { auth, metrics, checks: () => readiness(parts) });
 */
import type { FastifyInstance } from 'fastify';
import type { Auth } from '../auth';
import type { RelayMetrics } from '../metrics';

/** One readiness check: whether it passes, and what was seen. */
export interface Check {
  ok: boolean;
  detail: string;
}

export interface ObserveOptions {
  auth: Auth;
  metrics: RelayMetrics;
  /** The readiness checks, by name; each bounded in time by the caller. */
  checks(): Promise<Record<string, Check>>;
}

export function mountObserve(app: FastifyInstance, o: ObserveOptions): void {
  app.get('/metrics', { onRequest: o.auth.hook('metrics') }, async (_req, reply) => {
    const text = await o.metrics.registry.metrics();
    return reply.type(o.metrics.registry.contentType).send(text);
  });

  app.get('/api/ready', async (_req, reply) => {
    const checks = await o.checks();
    const ready = Object.values(checks).every((c) => c.ok);
    return reply.code(ready ? 200 : 503).send({ ready, checks });
  });
}

/** A check that fails with the error's message when `probe` throws or takes over `ms`. */
export async function probe(what: () => Promise<string>, ms = 2000): Promise<Check> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
  });
  try {
    return { ok: true, detail: await Promise.race([what(), late]) };
  } catch (e) {
    // A system error by its code, not its message: anyone may ask, and paths are the relay's own.
    const { code, syscall } = e as NodeJS.ErrnoException;
    const detail = code ? `${code}${syscall ? ` at ${syscall}` : ''}` : (e as Error).message;
    return { ok: false, detail };
  } finally {
    clearTimeout(timer);
  }
}
