/**
 * Routes the HTTP server's upgrade requests by path, and refuses the rest with a typed error.
 * An upgraded socket belongs to no one until a handler takes it: Node's HTTP server has removed
 * its own error listener by then, so an error on it (a client that resets while the relay
 * answers) would end the process. Every socket gets a listener before anything is written.
 * @example routeUpgrades(server, { '/ws': (req, socket, head) => hub.upgrade(req, socket, head) }, log);
 */
import { type IncomingMessage, type Server, STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';
import {
  BrumeError,
  httpStatus,
  InputError,
  InternalError,
  NotFoundError,
  OriginError,
  toWire,
} from '../core/errors';

export type UpgradeHandler = (req: IncomingMessage, socket: Duplex, head: Buffer, url: URL) => void;

export function routeUpgrades(
  server: Server,
  routes: Record<string, UpgradeHandler>,
  log: { warn(m: string): void },
  /** Throws a BrumeError for a request no route may take (a Host that is not the relay's). */
  check: (req: IncomingMessage) => void = () => {},
): void {
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on('error', () => socket.destroy());
    try {
      check(req);
    } catch (e) {
      const error = e instanceof BrumeError ? e : new InputError(String(e));
      return refuseUpgrade(socket, error);
    }
    const url = parseTarget(req.url);
    if (!url) {
      const shown = JSON.stringify((req.url ?? '').slice(0, 64));
      return refuseUpgrade(socket, new InputError(`the request target ${shown} is not a path`));
    }
    const handler = Object.hasOwn(routes, url.pathname) ? routes[url.pathname] : undefined;
    if (!handler) {
      const paths = Object.keys(routes).join(', ');
      const shown = JSON.stringify(url.pathname.slice(0, 64));
      return refuseUpgrade(
        socket,
        new NotFoundError(`no socket at ${shown}: open one of ${paths}`),
      );
    }
    try {
      handler(req, socket, head, url);
    } catch (e) {
      // A bug in a handler costs this socket, not the relay.
      log.warn(`upgrade to ${url.pathname} failed: ${(e as Error).message}`);
      refuseUpgrade(socket, new InternalError('the relay could not take this socket'));
    }
  });
}

/** Answers an upgrade with the error's status and `{ error: { code, message } }`, then closes. */
export function refuseUpgrade(socket: Duplex, error: BrumeError): void {
  if (socket.listenerCount('error') === 0) socket.on('error', () => socket.destroy());
  if (!socket.writable) return void socket.destroy();
  const status = httpStatus(error);
  const body = JSON.stringify({ error: toWire(error) });
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\n` +
      'Connection: close\r\nContent-Type: application/json\r\n' +
      `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
    () => socket.destroy(),
  );
}

/** The request target as a URL, or undefined when it is not a path (`//:`, `*`, absolute URLs). */
function parseTarget(target: string | undefined): URL | undefined {
  if (!target?.startsWith('/') || target.startsWith('//')) return undefined;
  try {
    return new URL(target, 'http://relay');
  } catch {
    return undefined;
  }
}

/** A page origin not on the allow-list, named with the flag that would allow it. */
export function originError(origin: string): BrumeError {
  const shown = JSON.stringify(origin.slice(0, 100));
  return new OriginError(
    `Origin ${shown} may not open sockets on this relay (allow it with --origin)`,
  );
}
