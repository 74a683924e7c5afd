/**
 * The context store over HTTP (PROTOCOL.md §5.5, §6): `GET/PUT/DELETE /api/context/:app/:key`,
 * `?scope=app` (default), `project` (the app's project's keys, shared by its apps) or `user` (the
 * caller's own keys in that app: the user its key belongs to). Who may read and write is
 * relay/projects.ts `access`; private values are never served nor written here.
 * @example mountContext(app, { auth, projects, context, publish, deployed, send });
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { decode, encode } from '../../core/codec';
import type { ContextOp, OpScope } from '../../core/context/replica';
import {
  AuthError,
  ExpiredError,
  ForbiddenError,
  InputError,
  NotFoundError,
  PrivacyError,
  UnsupportedError,
} from '../../core/errors';
import { isAppName } from '../../core/names';
import type { Auth } from '../auth';
import { contextPutBody, parseBody } from '../bodies';
import type { RelayContext } from '../context';
import { type Access, type Projects, userOf } from '../projects';

export interface ContextRoutesOptions {
  auth: Auth;
  projects: Pick<Projects, 'access' | 'projectOf' | 'projectNamespace' | 'userNamespace'>;
  context: RelayContext;
  /** Sends a change the relay stored to the nodes that keep its app. */
  publish(op: ContextOp, seq: number): void;
  /** Whether an app of that name is deployed. */
  deployed(name: string): Promise<boolean>;
  /** Answers in MessagePack or JSON, as the request asks. */
  send(req: FastifyRequest, reply: FastifyReply, status: number, body: unknown): unknown;
}

const HTTP_SCOPES = ['app', 'project', 'user'] as const;
type Req = FastifyRequest<{
  Params: { app: string; key: string };
  Querystring: { scope?: string };
}>;

/** Where a request's key lives: app, key, scope and owner (the user or project), once allowed. */
interface Place {
  app: string;
  key: string;
  scope: OpScope;
  owner?: string;
  /** Names the key in messages: `digits/k`, `digits/k (project vision)`. */
  what: string;
}

export function mountContext(app: FastifyInstance, o: ContextRoutesOptions): void {
  const { auth, projects } = o;

  /** The key the request names, if its principal may `need` it; typed refusals otherwise. */
  const place = (req: Req, need: Access): Place => {
    const { app: name, key } = req.params;
    if (!isAppName(name) || key.length === 0 || key.length > 256) {
      throw new InputError('an app name and a key of 1 to 256 characters');
    }
    const scope = req.query.scope ?? 'app';
    if (!(HTTP_SCOPES as readonly string[]).includes(scope)) {
      throw new InputError(
        `scope: one of ${HTTP_SCOPES.join(', ')} over HTTP (node keys are a node's own)`,
      );
    }
    const p = auth.principal(req);
    // A user's own keys in an app are theirs to write wherever they may read the app.
    const needed: Access = scope === 'user' ? 'read' : need;
    const refuse = (why: string): never => {
      if (!p) throw new AuthError(`${why}: send Authorization: Bearer <key>`);
      throw new ForbiddenError(why);
    };
    const project = projects.projectOf(name);
    // An app in no project: the scope rules as before (and their messages); in one: its members.
    if (project === undefined && needed === 'write') auth.require(req, 'context:write', name);
    else if (!projects.access(p, name, needed)) {
      refuse(
        `"${name}" belongs to project "${project}": ${needed === 'read' ? 'its members' : 'its deployers and owners'} may ${needed} its context`,
      );
    }
    if (scope === 'project') {
      if (project === undefined) {
        throw new NotFoundError(`"${name}" is in no project: it has no project-scoped keys`);
      }
      const owner = projects.projectNamespace(name)!;
      return { app: name, key, scope, owner, what: `${name}/${key} (project ${project})` };
    }
    if (scope === 'user') {
      const user = userOf(p);
      if (user === undefined) {
        refuse(
          "user-scoped keys are those of the user a key belongs to: this credential is no user's",
        );
      }
      const owner = user === undefined ? undefined : projects.userNamespace(user);
      if (owner === undefined) refuse(`user "${user}" no longer exists`);
      return { app: name, key, scope, owner, what: `${name}/${key} (user ${user})` };
    }
    return { app: name, key, scope: 'app', what: `${name}/${key}` };
  };

  const write = async (
    at: Place,
    kind: 'put' | 'delete',
    value?: unknown,
    ttlMs?: number,
    local?: boolean,
  ) => {
    if (!(await o.deployed(at.app))) {
      throw new NotFoundError(
        `no app named "${at.app}" is deployed: its context cannot be written`,
      );
    }
    const stamp = o.context.tick();
    const op: ContextOp = {
      opId: crypto.randomUUID(),
      app: at.app,
      key: at.key,
      scope: at.scope,
      ...(at.owner !== undefined && { owner: at.owner }),
      stamp,
      kind,
      ...(kind === 'put' && { value: encode(value) }),
      ...(ttlMs !== undefined && { expiresAt: stamp.wall + ttlMs }),
      ...(local === true && { local: true as const }),
    };
    const seq = await o.context.accept(op, '');
    if (seq) o.publish(op, seq);
    return op;
  };

  app.get('/api/context/:app/:key', async (req: Req, reply) => {
    const at = place(req, 'read');
    const r = o.context.replica.get(at.app, at.key, at, Date.now());
    if (!r) throw new NotFoundError(`no key ${at.what}`);
    if ('expired' in r) throw new ExpiredError(`${at.what} has expired`);
    if (!r.value) throw new PrivacyError(`${at.what} is private`);
    const body = {
      value: decode(r.value),
      stamp: r.op.stamp,
      ...(r.op.expiresAt !== undefined && { expiresAt: r.op.expiresAt }),
    };
    return o.send(req, reply, 200, body);
  });
  app.put('/api/context/:app/:key', async (req: Req, reply) => {
    const at = place(req, 'write');
    const body = parseBody(contextPutBody, req.body, '{ value, ttlMs?, local? }');
    if (body.privacy !== undefined) {
      throw new UnsupportedError('private values are written by trusted nodes, not over HTTP');
    }
    const op = await write(at, 'put', body.value, body.ttlMs, body.local);
    return reply
      .code(200)
      .send({ stamp: op.stamp, ...(op.expiresAt !== undefined && { expiresAt: op.expiresAt }) });
  });
  app.delete('/api/context/:app/:key', async (req: Req, reply) => {
    await write(place(req, 'write'), 'delete');
    return reply.code(204).send();
  });
}

/**
 * Deletes every live key of a deleted project's or user's namespace, in batches the write queue
 * takes. Unreachable already (a namespace is never drawn twice): this frees what they held.
 */
export async function forgetNamespace(
  context: RelayContext,
  scope: 'project' | 'user',
  namespace: string,
): Promise<void> {
  const live = context.replica
    .state()
    .filter((op) => op.scope === scope && op.owner === namespace && op.kind === 'put');
  for (let at = 0; at < live.length; at += FORGET_BATCH) {
    await Promise.all(
      live.slice(at, at + FORGET_BATCH).map((op) =>
        context.accept(
          {
            opId: crypto.randomUUID(),
            app: op.app,
            key: op.key,
            scope,
            owner: namespace,
            stamp: context.tick(),
            kind: 'delete',
          },
          '',
        ),
      ),
    );
  }
}
/** Deletes written per group commit when a namespace is forgotten: under the queue's 4,096. */
const FORGET_BATCH = 1000;
