/**
 * Seed 003's object REST shape for the classes this part of the relay holds (PROTOCOL.md §6.1):
 * `GET/POST /api/:class`, `GET/POST/DELETE /api/:class/:id`, `POST /api/:class/:id/:method`
 * for users and projects, and the read-only views functions (app services) and workers (nodes).
 * Each class's routes are mounted by name, never as a `:class` parameter, so the other classes
 * (jobs, blobs, apps, keys) keep their own routes. Who may do what is in relay/projects.ts.
 * @example mountObjects(app, { projects, keys, auth, apps, nodes: () => hub.nodes() });
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { AuthError, ForbiddenError, InputError, NotFoundError } from '../../core/errors';
import type { Manifest } from '../../core/manifest-schema';
import { isAppName } from '../../core/names';
import type { Auth, Principal } from '../auth';
import type { KeyStore } from '../keys';
import type { Projects } from '../projects';

export interface ObjectRoutesOptions {
  projects: Projects;
  keys: KeyStore;
  auth: Auth;
  /** Every deployed app's current manifest, by name. */
  apps: { names(): Promise<string[]>; current(name: string): Promise<Manifest | undefined> };
  /** Deletes the context keys of a deleted project's or user's namespace (PROTOCOL.md §5.5). */
  forget(scope: 'project' | 'user', namespace: string): Promise<void>;
  /** The nodes connected now, as the hub sees them. */
  nodes(): { id: string; role: string; publicKey: string; joinedAt: number; lastSeen: number }[];
}

type Req = FastifyRequest<{ Params: { id: string; method: string }; Body: unknown }>;
type Body = Record<string, unknown>;

/** A seed-003 class: its list, create, read, set, delete and methods (absent: not supported). */
interface ObjectClass {
  /** Whether a request without a credential may read it (else AuthError). */
  anonymous?: boolean;
  list(p: Principal | undefined): Promise<unknown>;
  create?(p: Principal | undefined, body: Body): Promise<unknown>;
  get(p: Principal | undefined, id: string): Promise<unknown>;
  set?(p: Principal | undefined, id: string, body: Body): Promise<unknown>;
  remove?(p: Principal | undefined, id: string): Promise<void>;
  methods?: Record<string, (p: Principal | undefined, id: string, body: Body) => Promise<unknown>>;
}

export function mountObjects(app: FastifyInstance, o: ObjectRoutesOptions): void {
  const classes: Record<string, ObjectClass> = {
    users: users(o),
    projects: projects(o),
    functions: functions(o),
    workers: workers(o),
  };
  for (const [name, c] of Object.entries(classes)) mountClass(app, o.auth, name, c);
}

function mountClass(app: FastifyInstance, auth: Auth, name: string, c: ObjectClass): void {
  const body = (req: Req): Body => {
    const b = req.body ?? {};
    if (typeof b !== 'object' || Array.isArray(b)) throw new InputError('the body: a JSON object');
    return b as Body;
  };
  // Every route of a class that is not open to all needs a credential, whatever it then allows.
  const who = (req: FastifyRequest): Principal | undefined => {
    const p = auth.principal(req);
    if (!p && !c.anonymous) {
      throw new AuthError(
        `/api/${name} needs a credential: send Authorization: Bearer <key> (a user's key: POST /api/users/:id/createKey) or the admin token`,
      );
    }
    return p;
  };
  const unsupported = (what: string): never => {
    throw new NotFoundError(`${name} have no ${what} (PROTOCOL.md §6.1)`);
  };
  app.get(`/api/${name}`, async (req) => c.list(who(req)));
  app.post(`/api/${name}`, async (req: Req, reply) => {
    if (!c.create) return unsupported('create: they are read-only');
    return reply.code(201).send(await c.create(who(req), body(req)));
  });
  app.get(`/api/${name}/:id`, async (req: Req) => c.get(who(req), req.params.id));
  app.post(`/api/${name}/:id`, async (req: Req) => {
    if (!c.set) return unsupported('attributes to set: they are read-only');
    return c.set(who(req), req.params.id, body(req));
  });
  app.delete(`/api/${name}/:id`, async (req: Req, reply) => {
    if (!c.remove) return unsupported('delete: they are read-only');
    await c.remove(who(req), req.params.id);
    return reply.code(204).send();
  });
  app.post(`/api/${name}/:id/:method`, async (req: Req) => {
    const m = Object.hasOwn(c.methods ?? {}, req.params.method)
      ? c.methods![req.params.method]
      : undefined;
    if (!m) {
      const known = Object.keys(c.methods ?? {});
      return unsupported(
        `method "${req.params.method.slice(0, 64)}"${known.length ? ` (they have ${known.join(', ')})` : ''}`,
      );
    }
    return m(who(req), req.params.id, body(req));
  });
}

function users(o: ObjectRoutesOptions): ObjectClass {
  const { projects, keys } = o;
  return {
    list: async (p) => projects.listUsers(p),
    create: (p, b) => projects.createUser(p, b),
    get: async (p, id) => projects.getUser(p, id),
    set: (p, id, b) => projects.setUser(p, id, b),
    // Their keys go with them, and first: a key left acting as nobody would regain the roles of a
    // user made again under the name. Only the admin deletes users (deleteUser checks it too).
    remove: async (p, id) => {
      if (p?.kind === 'admin') {
        for (const k of keys.list()) if (k.user === id) await keys.revoke(k.id);
      }
      const namespace = await projects.deleteUser(p, id);
      await o.forget('user', namespace);
    },
    methods: {
      /** A key for this user: `{ scopes?, label? }`; the secret is in this answer only. */
      createKey: async (p, id, b) => {
        if (p?.kind !== 'admin') throw new ForbiddenError('making a key needs the admin token');
        projects.getUser(p, id);
        const scopes = b.scopes ?? ['call', 'jobs'];
        if (!Array.isArray(scopes) || !scopes.every((s) => typeof s === 'string')) {
          throw new InputError('scopes: a list of scopes like ["call", "jobs"]');
        }
        const label = b.label ?? '';
        if (typeof label !== 'string') throw new InputError('label: must be a string');
        const { key, secret } = await keys.create(scopes, label, id);
        const { sha256: _, ...shown } = key;
        return { ...shown, key: secret };
      },
      /** The user's keys, without secrets. */
      keys: async (p, id) => {
        projects.getUser(p, id);
        return keys.list().flatMap(({ sha256: _, ...k }) => (k.user === id ? [k] : []));
      },
    },
  };
}

function projects(o: ObjectRoutesOptions): ObjectClass {
  const { projects: pr } = o;
  const deployed = async (b: Body) =>
    typeof b.app === 'string' && isAppName(b.app) && (await o.apps.current(b.app)) !== undefined;
  return {
    list: async (p) => pr.listProjects(p),
    create: (p, b) => pr.createProject(p, b),
    get: async (p, id) => pr.getProject(p, id),
    set: (p, id, b) => pr.setProject(p, id, b),
    remove: async (p, id) => o.forget('project', await pr.deleteProject(p, id)),
    methods: {
      addMember: (p, id, b) => pr.addMember(p, id, b),
      removeMember: (p, id, b) => pr.removeMember(p, id, b),
      addApp: async (p, id, b) => pr.addApp(p, id, b, await deployed(b)),
      removeApp: (p, id, b) => pr.removeApp(p, id, b),
    },
  };
}

/**
 * Functions: the services of the current version of each app the caller may read (apps in no
 * project, and those of its projects), as `<app>.<service>`. Read-only: deploy makes them.
 */
function functions(o: ObjectRoutesOptions): ObjectClass {
  const view = (m: Manifest, service: string) => {
    const s = m.services[service]!;
    const project = o.projects.projectOf(m.name);
    return {
      id: `${m.name}.${service}`,
      app: m.name,
      service,
      version: m.version,
      kind: s.kind,
      ...(s.kind === 'logic' ? { rpcs: s.rpcs } : { task: s.task }),
      ...(project !== undefined && { project }),
    };
  };
  return {
    anonymous: true,
    list: async (p) => {
      const out = [];
      for (const name of await o.apps.names()) {
        if (!o.projects.access(p, name, 'read')) continue;
        const m = await o.apps.current(name);
        if (m) for (const service of Object.keys(m.services)) out.push(view(m, service));
      }
      return out;
    },
    get: async (p, id) => {
      const [name = '', service = '', ...rest] = id.split('.');
      const m =
        isAppName(name) && !rest.length && o.projects.access(p, name, 'read')
          ? await o.apps.current(name)
          : undefined;
      if (!m || !Object.hasOwn(m.services, service)) {
        throw new NotFoundError(`no function "${id.slice(0, 130)}" (ids are <app>.<service>)`);
      }
      return view(m, service);
    },
  };
}

/** Workers: the nodes connected now (the admin's view; nodes belong to no project). */
function workers(o: ObjectRoutesOptions): ObjectClass {
  const guard = (p: Principal | undefined) => {
    if (p?.kind !== 'admin') throw new ForbiddenError('listing workers needs the admin token');
  };
  const view = (n: ReturnType<ObjectRoutesOptions['nodes']>[number]) => ({
    id: n.id,
    role: n.role,
    publicKey: n.publicKey,
    joinedAt: n.joinedAt,
    lastSeen: n.lastSeen,
  });
  return {
    list: async (p) => {
      guard(p);
      return o.nodes().map(view);
    },
    get: async (p, id) => {
      guard(p);
      const n = o.nodes().find((x) => x.id === id);
      if (!n) throw new NotFoundError(`no worker "${id.slice(0, 64)}" is connected`);
      return view(n);
    },
  };
}
