/**
 * The app API (PROTOCOL.md §6): list apps and their versions, fetch a manifest, deploy a
 * `.brume` bundle (`deploy` scope for that app), make a version current (admin). Files by hash
 * are blobs (relay/http/blobs.ts).
 * @example mountApps(app, { apps, store, auth, log, bodyLimit });
 */
import type { FastifyInstance } from 'fastify';
import type { AppSummary } from '../../core/api';
import { ForbiddenError, InputError, toWire } from '../../core/errors';
import { type Apps, summarize } from '../apps';
import type { Auth } from '../auth';
import type { RelayLogger } from '../log';
import type { Store } from '../store';
import { errorText } from './site';

export const BUNDLE_TYPES = ['application/vnd.brume.bundle', 'application/octet-stream'];

export interface AppRoutesOptions {
  apps: Apps;
  store: Store;
  auth: Auth;
  log: RelayLogger;
  /** Largest bundle accepted, in bytes. */
  bodyLimit: number;
}

export function mountApps(app: FastifyInstance, o: AppRoutesOptions): void {
  const { apps, store } = o;
  app.addContentTypeParser(BUNDLE_TYPES, { parseAs: 'buffer' }, (_req, body, done) => {
    done(null, body);
  });

  app.get('/api/apps', async () => {
    const out: AppSummary[] = [];
    for (const name of await store.apps.names()) {
      const manifest = await store.apps.current(name);
      if (manifest) out.push(await summarize(manifest));
    }
    return out;
  });
  app.get<{ Params: { name: string } }>('/api/apps/:name', async (req) =>
    apps.find(req.params.name),
  );
  app.get<{ Params: { name: string } }>('/api/apps/:name/versions', async (req) => {
    await apps.find(req.params.name);
    return store.apps.versions(req.params.name);
  });
  app.get<{ Params: { name: string; version: string } }>(
    '/api/apps/:name/versions/:version',
    async (req) => apps.version(req.params.name, req.params.version),
  );

  mountDeploy(app, o);
}

/** POST /api/apps and POST /api/apps/:name/current. */
function mountDeploy(app: FastifyInstance, o: AppRoutesOptions): void {
  const { apps, auth, log } = o;
  // Read no bundle from someone who may deploy nothing; the app's own name is checked once read.
  const route = { bodyLimit: o.bodyLimit, onRequest: auth.hook('deploy') };
  app.post('/api/apps', route, async (req, reply) => {
    if (!(req.body instanceof Uint8Array)) {
      const err = new InputError(
        `unsupported content-type ${req.headers['content-type'] ?? '(none)'}: send the bundle as ${BUNDLE_TYPES.join(' or ')}`,
      );
      return reply.code(415).send({ error: toWire(err) });
    }
    const may = (name: string) => {
      if (!auth.allows(auth.principal(req), 'deploy', name)) {
        throw new ForbiddenError(`this key may not deploy app "${name}" (it needs deploy:${name})`);
      }
    };
    const result = await apps.deploy(req.body, may).catch((e: unknown) => {
      log.warn({ reqId: req.id }, `deploy refused: ${errorText(e)}`);
      throw e;
    });
    const { name, version, currentVersion } = result;
    log.info(
      { reqId: req.id, app: name, version },
      `deployed ${name}@${version}${result.created ? '' : ' (unchanged)'}${result.current ? '' : `, kept ${currentVersion} current`}`,
    );
    return reply.code(result.created ? 201 : 200).send({
      name,
      version,
      manifestSha256: result.manifestSha256,
      current: result.current,
      currentVersion,
      ...(!result.current && {
        note: `stored ${name}@${version}, but ${currentVersion} stays current: a deploy never makes an older version current (an admin can: POST /api/apps/${name}/current { version }, or brume current ${name} ${version})`,
      }),
    });
  });

  // Making an older version current again (a rollback) is the admin's decision, never a deploy's.
  app.post<{ Params: { name: string }; Body: { version?: unknown } }>(
    '/api/apps/:name/current',
    { onRequest: auth.hook('admin') },
    async (req) => {
      const version = req.body?.version;
      if (typeof version !== 'string') throw new InputError('version: send { version: "1.2.3" }');
      const result = await apps.setCurrent(req.params.name, version);
      log.info(
        { reqId: req.id, app: result.name, version: result.version },
        `made ${result.name}@${result.version} current`,
      );
      return result;
    },
  );
}
