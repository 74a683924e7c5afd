/**
 * Users, projects and API keys pushed between federated sites (issue 17, seed 003: "users,
 * projects, apps and keys are pushed to federated sites when they change"):
 * - a key made here travels as it is stored (id, scopes, user, the sha256 of its secret: never
 *   the secret, which this site does not have either); a revoke travels as the key's id, and the
 *   id is remembered (bounded) so a key revoked never comes back, whichever arrives first;
 * - a user or project changed here travels whole (or as its deletion) with a version: when it
 *   changed (ms, a Lamport clock: past every version seen) and the site (ties). A peer takes it
 *   only if it is newer than what it has, so an older change never overwrites a newer one and a
 *   change pushed twice is taken once.
 * Local changes and changes applied from peers run one at a time. What a peer pushed is applied
 * to the relay's own stores, never pushed on (full mesh: one hop). Versions and revoked ids are
 * kept in `<dataDir>/federation-objects.json`, written durably.
 * @example const objects = await openObjects({ dataDir, site, push, warn });
 *          const keys = objects.keys(ownKeys); await objects.apply(item, { keys: ownKeys, projects });
 */
import { join } from 'node:path';
import { z } from 'zod';
import { NotFoundError } from '../../core/errors';
import { APP_NAME } from '../../core/names';
import { serial } from '../../core/serial';
import type { Principal } from '../auth';
import { readDurable, writeDurable } from '../durable';
import { type ApiKey, type KeyStore, keySchema, parseScope } from '../keys';
import { type Project, type Projects, projectSchema, type User, userSchema } from '../projects';
import { SITE } from './peers';

/** When a user or project changed (ms, Lamport-bumped) and where (breaks ties). */
export interface Version {
  at: number;
  site: string;
}

/** A change of a user, project or key, as pushed to a peer. */
export type ObjectItem =
  | { kind: 'key'; key: ApiKey }
  | { kind: 'revoke'; id: string }
  | { kind: 'user'; id: string; user?: User; v: Version }
  | { kind: 'project'; id: string; project?: Project; v: Version };

/** Versions of users and projects remembered at most (deletions too); least recent forgotten. */
export const MAX_VERSIONS = 8192;
/** Revoked key ids remembered at most (10 times the keys a relay holds); oldest forgotten. */
export const MAX_REVOKED = 10_000;
/** Largest change taken, in bytes: a project at its limits (100 members, 100 apps) is ~20 KiB. */
export const MAX_OBJECT_BYTES = 64 * 1024;
/** How far ahead of this site's clock a pushed version may be: a peer cannot stall the clock. */
export const MAX_CLOCK_AHEAD_MS = 10 * 60_000;

const KEY_ID = /^[0-9a-f]{16}$/;
const versionSchema = z.strictObject({
  at: z.number().int().nonnegative(),
  site: z.string().regex(SITE),
});
/** What `POST /api/federation/objects` takes: each field checked as any input is. */
export const objectItemSchema = z
  .discriminatedUnion('kind', [
    z.strictObject({ kind: z.literal('key'), key: keySchema.strict() }),
    z.strictObject({ kind: z.literal('revoke'), id: z.string().regex(KEY_ID) }),
    z.strictObject({
      kind: z.literal('user'),
      id: z.string().regex(APP_NAME),
      user: userSchema.optional(),
      v: versionSchema,
    }),
    z.strictObject({
      kind: z.literal('project'),
      id: z.string().regex(APP_NAME),
      project: projectSchema.optional(),
      v: versionSchema,
    }),
  ])
  .superRefine((item, ctx) => {
    const fail = (path: (string | number)[], message: string) =>
      ctx.addIssue({ code: 'custom', path, message });
    if (item.kind === 'key') {
      item.key.scopes.forEach((s, i) => {
        try {
          parseScope(s);
        } catch (e) {
          fail(['key', 'scopes', i], (e as Error).message);
        }
      });
    }
    if (item.kind === 'user' || item.kind === 'project') {
      const value = item.kind === 'user' ? item.user : item.project;
      if (value && value.id !== item.id) fail([item.kind, 'id'], `must be "${item.id}"`);
      if (item.v.at > Date.now() + MAX_CLOCK_AHEAD_MS) {
        fail(['v', 'at'], `more than ${MAX_CLOCK_AHEAD_MS} ms ahead of this site's clock`);
      }
    }
  });

const fileSchema = z.strictObject({
  v: z.literal(1),
  versions: z.array(z.tuple([z.string(), versionSchema])).max(MAX_VERSIONS),
  revoked: z.array(z.string().regex(KEY_ID)).max(MAX_REVOKED),
});

export interface FederatedObjects {
  /** `keys` whose creations and revocations are pushed to every peer. */
  keys(keys: KeyStore): KeyStore;
  /** `projects` whose changes of users and projects are pushed to every peer. */
  projects(projects: Projects): Projects;
  /** Applies a change a peer pushed to the relay's own (unwrapped) stores. */
  apply(item: ObjectItem, own: { keys: KeyStore; projects: Projects }): Promise<void>;
}

/** What `get` answers; undefined where it finds none. */
function found<T>(get: () => T): T | undefined {
  try {
    return get();
  } catch (e) {
    if (e instanceof NotFoundError) return undefined;
    throw e;
  }
}

const ADMIN: Principal = { kind: 'admin' };
const newer = (a: Version, b: Version) => a.at > b.at || (a.at === b.at && a.site > b.site);

export async function openObjects(o: {
  /** The relay's data directory: the state is `<dataDir>/federation-objects.json`. */
  dataDir: string;
  site: string;
  push(item: ObjectItem): void;
  warn(m: string): void;
}): Promise<FederatedObjects> {
  const file = join(o.dataDir, 'federation-objects.json');
  const stored = await readDurable(
    file,
    (b) => fileSchema.parse(JSON.parse(b.toString('utf8'))),
    o.warn,
  );
  // Insertion order is recency: a version set again moves to the end.
  const versions = new Map(stored?.versions ?? []);
  const revoked = new Set(stored?.revoked ?? []);
  let clock = Math.max(0, ...[...versions.values()].map((v) => v.at));
  const one = serial();
  const save = () =>
    writeDurable(file, JSON.stringify({ v: 1, versions: [...versions], revoked: [...revoked] }));
  const remember = (name: string, v: Version) => {
    versions.delete(name);
    versions.set(name, v);
    clock = Math.max(clock, v.at);
    for (const old of versions.keys()) {
      if (versions.size <= MAX_VERSIONS) break;
      versions.delete(old);
    }
  };
  const forgetKey = async (id: string) => {
    revoked.add(id);
    for (const old of revoked) {
      if (revoked.size <= MAX_REVOKED) break;
      revoked.delete(old);
    }
    await save();
  };

  /** Records a new version of `kind` `id` made here and pushes it with what it is now. */
  async function changed(p: Projects, kind: 'user' | 'project', id: string): Promise<void> {
    clock = Math.max(Date.now(), clock + 1);
    const v = { at: clock, site: o.site };
    remember(`${kind}:${id}`, v);
    await save();
    if (kind === 'user') {
      o.push({ kind, id, ...(p.userExists(id) && { user: p.getUser(ADMIN, id) }), v });
    } else {
      const project = found(() => p.getProject(ADMIN, id));
      o.push({ kind, id, ...(project && { project }), v });
    }
  }

  return {
    keys: (keys) => ({
      ...keys,
      async create(scopes, label, user) {
        const made = await keys.create(scopes, label, user);
        o.push({ kind: 'key', key: made.key });
        return made;
      },
      async revoke(id) {
        const gone = await keys.revoke(id);
        if (gone) {
          await one(() => forgetKey(id));
          o.push({ kind: 'revoke', id });
        }
        return gone;
      },
    }),

    projects(p) {
      /** `fn`, then its object pushed: one at a time with changes applied from peers. */
      const track =
        <A extends unknown[], R>(
          kind: 'user' | 'project',
          fn: (...a: A) => Promise<R>,
          idOf: (a: A, r: R) => string,
        ) =>
        (...a: A) =>
          one(async () => {
            const r = await fn(...a);
            await changed(p, kind, idOf(a, r));
            return r;
          });
      const byArg = (a: unknown[]) => a[1] as string;
      return {
        ...p,
        createUser: track('user', p.createUser, (_, r) => r.id),
        setUser: track('user', p.setUser, byArg),
        deleteUser: track('user', p.deleteUser, byArg),
        createProject: track('project', p.createProject, (_, r) => r.id),
        setProject: track('project', p.setProject, byArg),
        deleteProject: track('project', p.deleteProject, byArg),
        addMember: track('project', p.addMember, byArg),
        removeMember: track('project', p.removeMember, byArg),
        addApp: track('project', p.addApp, byArg),
        removeApp: track('project', p.removeApp, byArg),
      };
    },

    apply: (item, own) =>
      one(async () => {
        if (item.kind === 'revoke') {
          await forgetKey(item.id);
          await own.keys.revoke(item.id);
          return;
        }
        if (item.kind === 'key') {
          // Revoked (here or at any site that told this one): it stays revoked.
          if (!revoked.has(item.key.id)) await own.keys.adopt(item.key);
          return;
        }
        const name = `${item.kind}:${item.id}`;
        const known = versions.get(name);
        // Older than, or the very change already taken: nothing to do.
        if (known && !newer(item.v, known)) return;
        await own.projects.adopt(
          item.kind,
          item.id,
          item.kind === 'user' ? item.user : item.project,
        );
        remember(name, item.v);
        await save();
      }),
  };
}
