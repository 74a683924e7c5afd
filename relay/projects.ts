/**
 * Users, projects and who may do what (seed 003's object model, PROTOCOL.md §6.1): a user is a
 * principal that API keys belong to; a project holds apps and members, each with a role
 * (`reader` < `deployer` < `owner`). An app belongs to at most one project; an app in a project
 * is governed by its members alone (the admin aside), an app in none by the key scopes of
 * relay/keys.ts as before. Kept in `<data>/projects.json`, written durably, bounded.
 * @example const projects = await openProjects('.brume', console.warn);
 *          await projects.createProject(admin, { id: 'vision' });
 *          projects.access(principal, 'digits', 'deploy');
 */
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { z } from 'zod';
import {
  ConflictError,
  ForbiddenError,
  InputError,
  LimitError,
  NotFoundError,
  UnavailableError,
} from '../core/errors';
import { APP_NAME, APP_NAME_RULE } from '../core/names';
import { serial } from '../core/serial';
import type { Principal } from './auth';
import type { SharedDoc } from './cluster/doc';
import { readDurable, writeDurable } from './durable';
import { grants } from './keys';

export const ROLES = ['reader', 'deployer', 'owner'] as const;
export type Role = (typeof ROLES)[number];
/** What `access` decides: read an app's data (jobs, KV), write its KV, deploy it. */
export type Access = 'read' | 'write' | 'deploy';

export interface User {
  id: string;
  label: string;
  /**
   * Where its user-scoped context keys live (PROTOCOL.md §5.5): new for every user made, so a
   * user made again under an old name reads none of the old one's keys. Projects have one too.
   */
  namespace: string;
  createdAt: string;
}
export interface Member {
  user: string;
  role: Role;
}
export interface Project {
  id: string;
  label: string;
  apps: string[];
  members: Member[];
  namespace: string;
  createdAt: string;
}

export const projectLimits = {
  users: 1000,
  projects: 1000,
  /** Projects one user may own: no user fills the relay's list alone. */
  ownedPerUser: 20,
  members: 100,
  apps: 100,
  label: 200,
};

const label = z.string().max(projectLimits.label);
const NAMESPACE = /^n[0-9a-f]{16}$/;
const newNamespace = () => `n${randomBytes(8).toString('hex')}`;
export const userSchema = z.strictObject({
  id: z.string().regex(APP_NAME),
  label,
  namespace: z.string().regex(NAMESPACE),
  createdAt: z.string(),
});
export const projectSchema = z.strictObject({
  id: z.string().regex(APP_NAME),
  label,
  apps: z.array(z.string().regex(APP_NAME)).max(projectLimits.apps),
  members: z
    .array(z.strictObject({ user: z.string().regex(APP_NAME), role: z.enum(ROLES) }))
    .max(projectLimits.members),
  namespace: z.string().regex(NAMESPACE),
  createdAt: z.string(),
});
/** Users and projects as projects.json (or a cluster's shared document) holds them. */
export const projectsSchema = z.strictObject({
  v: z.literal(1),
  users: z.array(userSchema),
  projects: z.array(projectSchema),
});
const fileSchema = projectsSchema;
export type ProjectsState = z.infer<typeof projectsSchema>;
type State = ProjectsState;
export const emptyProjects = (): ProjectsState => ({ v: 1, users: [], projects: [] });
/** A change in a cluster tried again at most this often when other relays' changes win the race. */
const MAX_SAVE_ATTEMPTS = 16;
/** Thrown by a shared save another relay won: the change runs again from the new state. */
const STALE = Symbol('stale');

/** The user a principal acts as: a key's owner; the admin token and unowned keys have none. */
export const userOf = (p: Principal | undefined): string | undefined =>
  p?.kind === 'key' ? p.key.user : undefined;

const rank = (r: Role) => ROLES.indexOf(r);
/** The least role each kind of access needs in a project. */
const NEEDS: Record<Access, Role> = { read: 'reader', write: 'deployer', deploy: 'deployer' };

function checkId(what: string, id: unknown): string {
  if (typeof id !== 'string' || !APP_NAME.test(id)) {
    throw new InputError(`${what}: expected a name matching ${APP_NAME_RULE}`);
  }
  return id;
}
function checkLabel(value: unknown): string {
  if (value === undefined) return '';
  if (typeof value !== 'string') throw new InputError('label: must be a string');
  if (value.length > projectLimits.label) {
    throw new LimitError(`label: at most ${projectLimits.label} characters`);
  }
  return value;
}
function checkRole(value: unknown): Role {
  if (value === undefined) return 'deployer';
  if (!(ROLES as readonly unknown[]).includes(value)) {
    throw new InputError(`role: one of ${ROLES.join(', ')}`);
  }
  return value as Role;
}

export type Projects = Awaited<ReturnType<typeof openProjects>>;

/**
 * Opens the users and projects of a data directory (a corrupt file is moved aside: none then),
 * or, in a cluster, of the `shared` document every relay reads and writes (relay/cluster/doc.ts):
 * a change there is decided on the latest state and saved only if no relay saved meanwhile,
 * else decided again on theirs; other relays' changes replace this copy as they are heard.
 */
export async function openProjects(
  dataDir: string,
  warn: (message: string) => void,
  limits: Partial<typeof projectLimits> = {},
  shared?: SharedDoc<ProjectsState>,
) {
  const max = { ...projectLimits, ...limits };
  const file = join(dataDir, 'projects.json');
  const stored = shared
    ? shared.value()
    : await readDurable(
        file,
        (bytes) => fileSchema.parse(JSON.parse(bytes.toString('utf8'))),
        warn,
      );
  let state: State = stored ?? emptyProjects();
  let byApp = appIndex(state.projects);
  const adopt = (next: State) => {
    state = next;
    byApp = appIndex(next.projects);
  };
  shared?.onChange(adopt);
  const oneAtATime = serial();
  // The state a change is decided on: saved only if it is still the shared latest.
  let base = state;
  const change = <T>(work: () => Promise<T>): Promise<T> =>
    oneAtATime(async () => {
      for (let attempt = 1; ; attempt++) {
        base = state;
        try {
          return await work();
        } catch (e) {
          if (e !== STALE || !shared) throw e;
          adopt(shared.value());
          if (attempt >= MAX_SAVE_ATTEMPTS)
            throw new UnavailableError(
              `projects: ${MAX_SAVE_ATTEMPTS} saves in a row lost to other relays' changes; retry`,
            );
        }
      }
    });
  // Memory changes only once the file (or Redis) has: a failed write leaves both as they were.
  const commit = async (next: State) => {
    if (shared) {
      if (!(await shared.save(next, base))) throw STALE;
    } else await writeDurable(file, `${JSON.stringify(next, null, 2)}\n`);
    adopt(next);
  };
  const copy = <T>(x: T): T => structuredClone(x);

  const user = (id: string) => state.users.find((u) => u.id === id);
  const project = (id: string) => state.projects.find((p) => p.id === id);
  const roleIn = (pr: Project, who: string | undefined) =>
    who === undefined ? undefined : pr.members.find((m) => m.user === who)?.role;
  /** The project, if `p` may see it (admin, or a member); NotFound otherwise, as for none. */
  const visible = (p: Principal | undefined, id: string): Project => {
    const pr = project(id);
    if (!pr || (p?.kind !== 'admin' && roleIn(pr, userOf(p)) === undefined)) {
      throw new NotFoundError(`no project "${id.slice(0, 64)}" that you are a member of`);
    }
    return pr;
  };
  /** The project, if `p` owns it (or is the admin). */
  const owned = (p: Principal | undefined, id: string): Project => {
    const pr = visible(p, id);
    if (p?.kind !== 'admin' && roleIn(pr, userOf(p)) !== 'owner') {
      throw new ForbiddenError(`only an owner of project "${id}" (or the admin) may change it`);
    }
    return pr;
  };
  const adminOnly = (p: Principal | undefined, what: string) => {
    if (p?.kind !== 'admin') throw new ForbiddenError(`${what} needs the admin token`);
  };
  /** Replaces project `id` with `next(project)` and stores it. */
  const update = (id: string, next: (pr: Project) => Project) =>
    commit({ ...state, projects: state.projects.map((pr) => (pr.id === id ? next(pr) : pr)) });

  /**
   * Whether `p` may do `what` to app `name`. An app in a project: its members by role (reader
   * reads its data, deployer writes it and deploys, owner too), nobody else but the admin. An
   * app in no project: deploy as its `deploy:<apps>` scope says; read and write are left to the
   * route's own scope (`context:write` for its context, `jobs` for its jobs), so this allows them.
   */
  function access(p: Principal | undefined, name: string, what: Access): boolean {
    if (p?.kind === 'admin') return true;
    const pr = byApp.get(name);
    if (!pr) return what !== 'deploy' || (p !== undefined && grants(p.key.scopes, 'deploy', name));
    const role = roleIn(pr, userOf(p));
    return role !== undefined && rank(role) >= rank(NEEDS[what]);
  }

  return {
    access,
    /** The project app `name` belongs to, if any. */
    projectOf: (name: string): string | undefined => byApp.get(name)?.id,
    /** The context namespace of the project of app `name` (its project-scoped keys), if any. */
    projectNamespace: (name: string): string | undefined => byApp.get(name)?.namespace,
    /** The context namespace of user `id` (their user-scoped keys), if they exist. */
    userNamespace: (id: string): string | undefined => user(id)?.namespace,
    /** `p`'s role in the project of app `name` (undefined: not a member, or no project). */
    roleFor: (p: Principal | undefined, name: string): Role | undefined => {
      const pr = byApp.get(name);
      return pr && roleIn(pr, userOf(p));
    },
    /** Whether `p` may deploy some app: by a scope, or as a deployer of some project. */
    mayDeploySome(p: Principal | undefined): boolean {
      if (!p) return false;
      if (p.kind === 'admin' || grants(p.key.scopes, 'deploy')) return true;
      const who = userOf(p);
      return state.projects.some((pr) => {
        const role = roleIn(pr, who);
        return role !== undefined && rank(role) >= rank('deployer');
      });
    },
    userExists: (id: string) => user(id) !== undefined,

    listUsers(p: Principal | undefined): User[] {
      if (p?.kind === 'admin') return copy(state.users);
      const me = userOf(p);
      return copy(state.users.filter((u) => u.id === me));
    },
    getUser(p: Principal | undefined, id: string): User {
      const u = user(id);
      if (!u || (p?.kind !== 'admin' && userOf(p) !== id)) {
        throw new NotFoundError(`no user "${id.slice(0, 64)}" you may see (GET /api/users)`);
      }
      return copy(u);
    },
    createUser: (p: Principal | undefined, body: { id?: unknown; label?: unknown }) =>
      change(async () => {
        adminOnly(p, 'creating a user');
        const id = checkId('id', body.id);
        const u: User = {
          id,
          label: checkLabel(body.label),
          namespace: newNamespace(),
          createdAt: new Date().toISOString(),
        };
        if (user(id)) throw new ConflictError(`user "${id}" exists already`);
        if (state.users.length >= max.users) {
          throw new LimitError(`this relay holds ${max.users} users already (its limit)`);
        }
        await commit({ ...state, users: [...state.users, u] });
        return copy(u);
      }),
    setUser: (p: Principal | undefined, id: string, body: { label?: unknown }) =>
      change(async () => {
        adminOnly(p, 'changing a user');
        if (!user(id)) throw new NotFoundError(`no user "${id.slice(0, 64)}"`);
        const l = checkLabel(body.label);
        await commit({
          ...state,
          users: state.users.map((u) => (u.id === id ? { ...u, label: l } : u)),
        });
        return copy(user(id)!);
      }),
    /**
     * Deletes a user and their memberships (their keys are the caller's to revoke); answers the
     * user's context namespace, whose keys the caller may delete.
     */
    deleteUser: (p: Principal | undefined, id: string) =>
      change(async () => {
        adminOnly(p, 'deleting a user');
        const gone = user(id);
        if (!gone) throw new NotFoundError(`no user "${id.slice(0, 64)}"`);
        await commit({
          v: 1,
          users: state.users.filter((u) => u.id !== id),
          projects: state.projects.map((pr) => ({
            ...pr,
            members: pr.members.filter((m) => m.user !== id),
          })),
        });
        return gone.namespace;
      }),

    listProjects(p: Principal | undefined): Project[] {
      if (p?.kind === 'admin') return copy(state.projects);
      const me = userOf(p);
      return copy(state.projects.filter((pr) => roleIn(pr, me) !== undefined));
    },
    getProject: (p: Principal | undefined, id: string): Project => copy(visible(p, id)),
    /** The admin, or a user (who becomes its owner), makes a project. */
    createProject: (p: Principal | undefined, body: { id?: unknown; label?: unknown }) =>
      change(async () => {
        const me = userOf(p);
        // A key whose user was deleted (and is being revoked) acts as nobody.
        if (p?.kind !== 'admin' && (me === undefined || !user(me))) {
          throw new ForbiddenError(
            'creating a project needs the admin token or a key that belongs to a user (POST /api/users/:id/createKey)',
          );
        }
        const id = checkId('id', body.id);
        const pr: Project = {
          id,
          label: checkLabel(body.label),
          apps: [],
          members: me === undefined ? [] : [{ user: me, role: 'owner' }],
          namespace: newNamespace(),
          createdAt: new Date().toISOString(),
        };
        if (project(id)) throw new ConflictError(`project "${id}" exists already`);
        if (state.projects.length >= max.projects) {
          throw new LimitError(`this relay holds ${max.projects} projects already (its limit)`);
        }
        const owned = state.projects.filter((x) => roleIn(x, me) === 'owner').length;
        if (me !== undefined && owned >= max.ownedPerUser) {
          throw new LimitError(
            `user "${me}" owns ${max.ownedPerUser} projects already (the limit per user): delete one, or ask the admin`,
          );
        }
        await commit({ ...state, projects: [...state.projects, pr] });
        return copy(pr);
      }),
    setProject: (p: Principal | undefined, id: string, body: { label?: unknown }) =>
      change(async () => {
        owned(p, id);
        const l = checkLabel(body.label);
        await update(id, (pr) => ({ ...pr, label: l }));
        return copy(project(id)!);
      }),
    /** Deletes a project (its apps stay deployed); answers its context namespace, as deleteUser. */
    deleteProject: (p: Principal | undefined, id: string) =>
      change(async () => {
        const gone = owned(p, id);
        await commit({ ...state, projects: state.projects.filter((pr) => pr.id !== id) });
        return gone.namespace;
      }),
    /** Adds `user` with `role`, or changes the role of a member. */
    addMember: (p: Principal | undefined, id: string, body: { user?: unknown; role?: unknown }) =>
      change(async () => {
        const pr = owned(p, id);
        const who = checkId('user', body.user);
        const role = checkRole(body.role);
        if (!user(who)) throw new NotFoundError(`no user "${who}" (POST /api/users makes one)`);
        const others = pr.members.filter((m) => m.user !== who);
        if (others.length >= max.members) {
          throw new LimitError(`project "${id}" has ${max.members} members already (its limit)`);
        }
        await update(id, (x) => ({ ...x, members: [...others, { user: who, role }] }));
        return copy(project(id)!);
      }),
    removeMember: (p: Principal | undefined, id: string, body: { user?: unknown }) =>
      change(async () => {
        const pr = owned(p, id);
        const who = checkId('user', body.user);
        if (!pr.members.some((m) => m.user === who)) {
          throw new NotFoundError(`"${who}" is not a member of project "${id}"`);
        }
        const left = pr.members.filter((m) => m.user !== who);
        if (p?.kind !== 'admin' && !left.some((m) => m.role === 'owner')) {
          throw new ConflictError(`"${who}" is the last owner of "${id}": add another owner first`);
        }
        await update(id, (x) => ({ ...x, members: left }));
        return copy(project(id)!);
      }),
    /**
     * Puts app `app` in project `id`. An app already deployed outside any project joins only if
     * `p` may deploy it today (its scopes), so that no user takes over an app by naming it.
     */
    addApp: (p: Principal | undefined, id: string, body: { app?: unknown }, deployed: boolean) =>
      change(async () => {
        const pr = owned(p, id);
        const app = checkId('app', body.app);
        const holder = byApp.get(app);
        if (holder?.id === id) return copy(pr);
        if (holder) throw new ConflictError(`app "${app}" belongs to project "${holder.id}"`);
        if (deployed && !access(p, app, 'deploy')) {
          throw new ForbiddenError(
            `app "${app}" is deployed already: only a key that may deploy it (deploy:${app}) or the admin may put it in a project`,
          );
        }
        if (pr.apps.length >= max.apps) {
          throw new LimitError(`project "${id}" has ${max.apps} apps already (its limit)`);
        }
        await update(id, (x) => ({ ...x, apps: [...x.apps, app] }));
        return copy(project(id)!);
      }),
    removeApp: (p: Principal | undefined, id: string, body: { app?: unknown }) =>
      change(async () => {
        const pr = owned(p, id);
        const app = checkId('app', body.app);
        if (!pr.apps.includes(app)) {
          throw new NotFoundError(`app "${app}" is not in project "${id}"`);
        }
        await update(id, (x) => ({ ...x, apps: x.apps.filter((a) => a !== app) }));
        return copy(project(id)!);
      }),
    /**
     * Takes a user or project as a federated site has it now (relay/federation/objects.ts; checked
     * by userSchema/projectSchema there), or its deletion (undefined). No rights are checked: the
     * site that changed it did. Bounds hold; an app held here by another project: E_CONFLICT.
     */
    adopt: (kind: 'user' | 'project', id: string, value: User | Project | undefined) =>
      change(async () => {
        const list: (User | Project)[] = kind === 'user' ? state.users : state.projects;
        const rest = list.filter((x) => x.id !== id);
        if (value && rest.length === list.length && list.length >= max[`${kind}s`]) {
          throw new LimitError(`this relay holds ${max[`${kind}s`]} ${kind}s already (its limit)`);
        }
        const holder = (a: string) => (byApp.get(a)?.id ?? id) !== id;
        const taken = value && 'apps' in value ? value.apps.find(holder) : undefined;
        if (taken) {
          throw new ConflictError(`app "${taken}" belongs to project "${byApp.get(taken)!.id}"`);
        }
        const next = value ? [...rest, copy(value)] : rest;
        if (kind === 'project') return commit({ ...state, projects: next as Project[] });
        // A user gone leaves every project, as deleteUser does.
        const members = (pr: Project) => pr.members.filter((m) => value || m.user !== id);
        await commit({
          v: 1,
          users: next as User[],
          projects: state.projects.map((pr) => ({ ...pr, members: members(pr) })),
        });
      }),
  };
}

function appIndex(projects: Project[]): Map<string, Project> {
  const m = new Map<string, Project>();
  for (const pr of projects) for (const a of pr.apps) m.set(a, pr);
  return m;
}
