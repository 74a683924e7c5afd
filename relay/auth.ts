/**
 * Who is asking, and may they: resolves `Authorization: Bearer <admin token | API key>` to a
 * principal and checks its scopes (PROTOCOL.md §7). No header is the anonymous caller; a header
 * the relay does not know is refused, never taken as anonymous, so a typo is loud.
 * @example app.post('/api/apps', { onRequest: auth.hook('deploy') }, ...);
 *          auth.require(req, 'context:write', 'digits');
 */
import type { FastifyRequest } from 'fastify';
import { AuthError, ForbiddenError } from '../core/errors';
import type { Admin } from './admin';
import { type ApiKey, grants, type KeyStore, type Permission } from './keys';

export type Principal = { kind: 'admin' } | { kind: 'key'; key: ApiKey };

export interface Auth {
  /** The request's principal; undefined without credentials; AuthError for an unknown one. */
  principal(req: FastifyRequest): Principal | undefined;
  /** Whether `p` holds `permission` (for `app` where it is per app). */
  allows(p: Principal | undefined, permission: Permission, app?: string): boolean;
  /** The principal, if it holds `permission`; AuthError or ForbiddenError otherwise. */
  require(req: FastifyRequest, permission: Permission, app?: string): Principal;
  /** A route hook for `require` (for per-app permissions: holds it for at least one app). */
  hook(permission: Permission): (req: FastifyRequest) => Promise<void>;
}

const BEARER = /^Bearer ([\x21-\x7e]{1,512})$/;

export function createAuth(admin: Admin, keys: KeyStore): Auth {
  const seen = new WeakMap<FastifyRequest, Principal | undefined>();

  function principal(req: FastifyRequest): Principal | undefined {
    if (seen.has(req)) return seen.get(req);
    const header = req.headers.authorization;
    let p: Principal | undefined;
    if (header !== undefined) {
      const secret = BEARER.exec(header)?.[1];
      if (admin.authorized(header)) p = { kind: 'admin' };
      else {
        const key = secret === undefined ? undefined : keys.find(secret);
        if (!key) {
          throw new AuthError(
            'Authorization: not a key this relay knows (send "Bearer <key>": brume keys create makes one, or the admin token)',
          );
        }
        p = { kind: 'key', key };
      }
    }
    seen.set(req, p);
    return p;
  }

  function allows(p: Principal | undefined, permission: Permission, app?: string): boolean {
    if (!p) return false;
    return p.kind === 'admin' || grants(p.key.scopes, permission, app);
  }

  function require(req: FastifyRequest, permission: Permission, app?: string): Principal {
    const p = principal(req);
    // Named as the scope a key would need: `call`, `context:write:digits`.
    const what = app === undefined ? permission : `${permission}:${app}`;
    if (!p) {
      throw new AuthError(
        `this needs a credential with scope ${what}: send Authorization: Bearer <key> (brume keys create) or the admin token`,
      );
    }
    if (!allows(p, permission, app)) {
      throw new ForbiddenError(
        `key ${p.kind === 'key' ? p.key.id : ''} has scopes ${p.kind === 'key' ? p.key.scopes.join(', ') : ''}, not ${what}`,
      );
    }
    return p;
  }

  return {
    principal,
    allows,
    require,
    hook: (permission) => async (req) => {
      require(req, permission);
    },
  };
}
