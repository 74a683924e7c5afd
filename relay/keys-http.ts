/**
 * The admin API for API keys, which `brume keys` uses: list, create (the secret is in this one
 * answer and nowhere else; `user` makes it act as that user), revoke. Every route needs the
 * `admin` scope.
 * @example mountKeys(app, keys, auth);
 */
import type { FastifyInstance } from 'fastify';
import { InputError, NotFoundError } from '../core/errors';
import type { Auth } from './auth';
import type { ApiKey, KeyStore } from './keys';

export function mountKeys(
  app: FastifyInstance,
  keys: KeyStore,
  auth: Auth,
  userExists: (id: string) => boolean,
): void {
  const guarded = { onRequest: auth.hook('admin') };
  const shown = ({ sha256: _, ...k }: ApiKey) => k;

  app.get('/api/keys', guarded, async () => keys.list().map(shown));

  app.post<{ Body: { scopes?: unknown; label?: unknown; user?: unknown } }>(
    '/api/keys',
    guarded,
    async (req, reply) => {
      const { scopes, label = '', user } = req.body ?? {};
      if (!Array.isArray(scopes) || !scopes.every((s) => typeof s === 'string')) {
        throw new InputError(
          'scopes: send { scopes: ["deploy:<app>", "call", ...], label?, user? }',
        );
      }
      if (typeof label !== 'string') throw new InputError('label: must be a string');
      if (user !== undefined && (typeof user !== 'string' || !userExists(user))) {
        throw new NotFoundError(`user: no user "${String(user).slice(0, 64)}" (GET /api/users)`);
      }
      const { key, secret } = await keys.create(scopes, label, user);
      return reply.code(201).send({ ...shown(key), key: secret });
    },
  );

  app.delete<{ Params: { id: string } }>('/api/keys/:id', guarded, async (req, reply) => {
    if (!(await keys.revoke(req.params.id))) {
      throw new NotFoundError(`no key with id "${req.params.id.slice(0, 64)}" (GET /api/keys)`);
    }
    return reply.code(204).send();
  });
}
