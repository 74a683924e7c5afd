/**
 * The routes a federated site calls on this one (PROTOCOL.md §6.3), each behind the key shared
 * with the peers (relay/federation/peers.ts) and each body checked as any other input:
 * - `POST /api/federation/apps`: a `.brume` bundle pushed when it was deployed there; verified
 *   and stored as a deploy here (a newer version becomes current).
 * - `POST /api/federation/apps/:name/current`: `{ version }` made current there (a rollback).
 * - `POST /api/federation/context`: `{ op }` (MessagePack), a global context change made there;
 *   stored and fanned out to this site's nodes, never pushed on (full mesh: one hop).
 * - `POST /api/federation/objects`: a user, project or key changed there (JSON,
 *   relay/federation/objects.ts), applied to this site's own stores unless older than what is here.
 * - `GET /api/federation/blobs/:hash`: a blob's bytes, fetched when a job here needs it.
 * - `POST /api/federation/call/:app/:service`: `{ input, qos?, rpc? }` (MessagePack) run on this
 *   site's nodes; the answer says which site ran it. Never placed at a third site.
 * @example mountFederation(app, { peers, apps, context, publish, blobs, hub, bodyLimit });
 */
import type { Readable } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import type { ContextOp } from '../../core/context/replica';
import { InputError, NotFoundError, UnavailableError } from '../../core/errors';
import { isAppName, isAppVersion, isSha256 } from '../../core/names';
import { contextOpSchema, qosSchema } from '../../core/protocol';
import type { Qos } from '../../core/scheduler';
import type { Apps } from '../apps';
import type { Blobs } from '../blobs';
import { parseBody } from '../bodies';
import type { RelayContext } from '../context';
import type { CallAnswer } from '../hub/forwarding';
import type { KeyStore } from '../keys';
import { encodeAnswer } from '../outgoing';
import type { Projects } from '../projects';
import { MAX_OBJECT_BYTES, type ObjectItem, objectItemSchema } from './objects';
import type { Peers } from './peers';

export interface FederationRoutesOptions {
  peers: Peers;
  /** The relay's own apps, context and blobs: what arrives here is not pushed on. */
  apps: Apps;
  context: RelayContext;
  /** Sends a stored change to this site's nodes. */
  publish(op: ContextOp, seq: number): void;
  blobs: Blobs;
  /** The relay's own keys and users/projects: what arrives here is not pushed on. */
  keys: KeyStore;
  projects: Projects;
  /** Applies a pushed user, project or key change (relay/federation/objects.ts). */
  objects: { apply(item: ObjectItem): Promise<void> };
  hub: {
    call(app: string, service: string, input: unknown, qos: Qos, rpc?: string): Promise<CallAnswer>;
    draining(): boolean;
  };
  /** Largest bundle taken, in bytes (the relay's `bodyLimit`). */
  bodyLimit: number;
}

const opBody = z.strictObject({ op: contextOpSchema });
const currentBody = z.strictObject({ version: z.string().max(256) });
const callBody = z.strictObject({
  input: z.unknown(),
  qos: qosSchema.optional(),
  rpc: z.string().max(256).optional(),
});

export function mountFederation(app: FastifyInstance, o: FederationRoutesOptions): void {
  const guarded = {
    onRequest: async (req: { headers: { authorization?: string | undefined } }) =>
      o.peers.authorize(req.headers.authorization),
  };

  app.post('/api/federation/apps', { ...guarded, bodyLimit: o.bodyLimit }, async (req) => {
    if (!(req.body instanceof Uint8Array)) {
      throw new InputError('send the bundle as application/octet-stream');
    }
    const r = await o.apps.deploy(req.body);
    return { name: r.name, version: r.version, created: r.created, site: o.peers.site };
  });

  app.post<{ Params: { name: string } }>(
    '/api/federation/apps/:name/current',
    guarded,
    async (req) => {
      const { version } = parseBody(currentBody, req.body, '{ version }');
      if (!isAppName(req.params.name) || !isAppVersion(version)) {
        throw new InputError('an app name and a version');
      }
      return o.apps.setCurrent(req.params.name, version);
    },
  );

  app.post('/api/federation/context', guarded, async (req, reply) => {
    const { op } = parseBody(opBody, req.body, '{ op }') as { op: ContextOp };
    if (op.local) throw new InputError('op.local: a site-local change never leaves its site');
    if (op.scope === 'node') {
      throw new InputError("op.scope: node-scoped keys stay at their node's site");
    }
    const seq = await o.context.accept(op, '');
    if (seq) o.publish(op, seq);
    return reply.code(204).send();
  });

  app.post(
    '/api/federation/objects',
    { ...guarded, bodyLimit: MAX_OBJECT_BYTES },
    async (req, reply) => {
      const item = parseBody(objectItemSchema, req.body, '{ kind, ... } (PROTOCOL.md §6.3)');
      await o.objects.apply(item as ObjectItem);
      return reply.code(204).send();
    },
  );

  app.get<{ Params: { hash: string } }>(
    '/api/federation/blobs/:hash',
    guarded,
    async (req, reply) => {
      const { hash } = req.params;
      if (!isSha256(hash)) throw new InputError('hash: 64 lowercase hex digits');
      const blob = await o.blobs.openFile(hash);
      if (!blob) throw new NotFoundError(`no blob ${hash} at this site`);
      return reply
        .type('application/octet-stream')
        .header('content-length', String(blob.size))
        .send(blob.read() as Readable);
    },
  );

  app.post<{ Params: { app: string; service: string } }>(
    '/api/federation/call/:app/:service',
    guarded,
    async (req, reply) => {
      if (o.hub.draining()) throw new UnavailableError('this site is shutting down (draining)');
      const { input, qos, rpc } = parseBody(callBody, req.body, '{ input, qos?, rpc? }');
      const answer = await o.hub.call(req.params.app, req.params.service, input, qos ?? {}, rpc);
      const bytes = encodeAnswer({ ...answer, site: o.peers.site });
      return reply
        .type('application/msgpack')
        .send(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
    },
  );
}
