/**
 * The relay's log: Fastify's own logger (pino), JSON lines by default, pino-pretty's format for
 * a person at a terminal. Request lines carry Fastify's `reqId`; node calls their `call` id. What
 * it never writes: credentials (Authorization, cookies, API keys, the admin token), query
 * strings, bodies (call inputs, context values). Parts of the relay log through `RelayLogger`,
 * pino's shape, so the pino logger itself is passed straight through.
 * @example const app = Fastify({ logger: loggerOptions({ level: 'info', pretty: false }) });
 *          app.log.info({ app: 'digits' }, 'deployed');
 */
import type { FastifyServerOptions } from 'fastify';
import pretty from 'pino-pretty';

/** Fields of a log line, first as in pino: `log.info({ trace }, 'call answered')`. */
export type LogFields = Record<string, unknown>;

/** pino's call shapes: `info(fields, msg)` and `info(msg)`. */
export interface LogFn {
  (fields: LogFields, message: string): void;
  (message: string): void;
}

export interface RelayLogger {
  info: LogFn;
  warn: LogFn;
  error: LogFn;
  /** Lines too many for `info` (one per call); absent: not written. */
  debug?: LogFn;
}

export const logLevels = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof logLevels)[number];

export interface LogOptions {
  /** Default `info`. */
  level?: LogLevel;
  /** pino-pretty's format instead of JSON lines; default: whether stdout is a terminal. */
  pretty?: boolean;
  /** Where lines go instead of stdout (tests). */
  stream?: { write(line: string): void };
}

/** Headers that carry credentials, wherever a line might hold them: pino writes `[Redacted]`. */
const secretPaths = [
  'req.headers.authorization',
  'req.headers.cookie',
  'req.headers["proxy-authorization"]',
  'res.headers["set-cookie"]',
  'headers.authorization',
  'headers.cookie',
];

/** Fastify's `logger` option for these choices. */
export function loggerOptions(o: LogOptions = {}): NonNullable<FastifyServerOptions['logger']> {
  const stream =
    o.stream ??
    ((o.pretty ?? process.stdout.isTTY === true)
      ? pretty({ sync: true, colorize: true, translateTime: 'SYS:HH:MM:ss.l' })
      : undefined);
  return {
    level: o.level ?? 'info',
    redact: secretPaths,
    serializers: {
      // The path only: a query string may carry what its sender did not mean to have logged.
      req: (req) => ({
        method: req.method,
        url: req.url?.split('?')[0],
        // Fastify hands its own request here, whose `ip` follows its trustProxy setting.
        remoteAddress: (req as { ip?: string }).ip,
      }),
    },
    ...(stream && { stream }),
  };
}
