/**
 * The app API (PROTOCOL.md §6): list apps and their versions, fetch a manifest, deploy a
 * `.brume` bundle (`deploy` scope for that app, or a deployer of its project), make a version
 * current (admin, or an owner of its project). Files by hash are blobs (relay/http/blobs.ts).
 * @example mountApps(app, { apps, store, auth, log, bodyLimit });
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { AppSummary } from '../../core/api';
import { ForbiddenError, InputError, toWire } from '../../core/errors';
import { type Apps, summarize } from '../apps';
import type { Auth } from '../auth';
import type { RelayLogger } from '../log';
import type { Projects } from '../projects';
import type { Store } from '../store';
import { errorText } from './site';

export const BUNDLE_TYPES = ['application/vnd.brume.bundle', 'application/octet-stream'];

export interface AppRoutesOptions {
  apps: Apps;
  store: Store;
  auth: Auth;
  /** Who may deploy an app: its project's members, else the key scopes (relay/projects.ts). */
  projects: Pick<Projects, 'access' | 'mayDeploySome' | 'roleFor' | 'projectOf'>;
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
  const { apps, auth, log, projects } = o;
  // Read no bundle from someone who may deploy nothing; the app's own name is checked once read.
  const route = {
    bodyLimit: o.bodyLimit,
    onRequest: async (req: FastifyRequest) => {
      const p = auth.principal(req);
      if (!projects.mayDeploySome(p)) auth.require(req, 'deploy'); // says what is missing
    },
  };
  app.post('/api/apps', route, async (req, reply) => {
    if (!(req.body instanceof Uint8Array)) {
      const err = new InputError(
        `unsupported content-type ${req.headers['content-type'] ?? '(none)'}: send the bundle as ${BUNDLE_TYPES.join(' or ')}`,
      );
      return reply.code(415).send({ error: toWire(err) });
    }
    const may = (name: string) => {
      if (!projects.access(auth.principal(req), name, 'deploy')) {
        const project = projects.projectOf(name);
        throw new ForbiddenError(
          `this key may not deploy app "${name}" (${project === undefined ? `it needs deploy:${name}` : `it belongs to project "${project}": its members with role deployer or owner may`})`,
        );
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

  // Making an older version current again (a rollback) is the admin's decision, never a deploy's;
  // for an app in a project, also its owners'.
  app.post<{ Params: { name: string }; Body: { version?: unknown } }>(
    '/api/apps/:name/current',
    async (req) => {
      if (projects.roleFor(auth.principal(req), req.params.name) !== 'owner') {
        auth.require(req, 'admin');
      }
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
