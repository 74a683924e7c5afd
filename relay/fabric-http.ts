/**
 * The fabric's HTTP and upgrade surface on the relay's one port: the node WebSocket (`/ws`), the
 * PeerJS signalling socket (`/peerjs/peerjs`), calls for HTTP clients, the context store's routes
 * (relay/http/context.ts), and the admin API (nodes, relays, decisions, events, trust) behind the
 * admin token.
 * @example mountFabric(app, { hub, admin, origins: (o) => o === relayUrl });
 */
import type { FastifyInstance, FastifyReply, FastifyRequest, RouteShorthandOptions } from 'fastify';
import { decode } from '../core/codec';
import { InputError, NotFoundError, QosError, UnavailableError } from '../core/errors';
import { nodeIdOf } from '../core/identity';
import type { ScheduleAnswer } from '../core/page-api';
import { frameLimits } from '../core/protocol';
import { newTraceId, traceIdOf, traceparent } from '../core/trace';
import type { Admin } from './admin';
import type { Auth } from './auth';
import { callBody, parseBody, scheduleBody } from './bodies';
import type { PeerDirectory } from './cluster/signal';
import type { RelayContext } from './context';
import type { Federation } from './federation';
import { type ContextRoutesOptions, mountContext } from './http/context';
import type { Hub } from './hub';
import { checkJson, encodeAnswer } from './outgoing';
import { mountPeerSignalling } from './peer-signal';
import { routeUpgrades } from './upgrade';

export const MSGPACK_TYPES = ['application/msgpack', 'application/vnd.msgpack'];
/** What a call refused while the relay drains is told to wait: about a restart. */
const DRAIN_RETRY_AFTER_S = 5;

export interface FabricHttpOptions {
  hub: Hub;
  admin: Admin;
  auth: Auth;
  context: RelayContext;
  origins(origin: string): boolean;
  /** Largest PeerJS signalling message, in bytes; default 64 KiB. */
  maxSignalBytes?: number;
  /**
   * In a cluster: where the relays hold signalling sockets (relay/cluster/signal.ts); messages
   * for a socket another relay holds go there over the hub's cluster.
   */
  peerDirectory?: PeerDirectory;
  /** Throws HostError for a Host header that is not one of the relay's names. */
  hosts(host: string | undefined): void;
  /** Whether an app of that name is deployed. */
  deployed(name: string): Promise<boolean>;
  /** Who may read and write an app's context (relay/projects.ts). */
  projects: ContextRoutesOptions['projects'];
  /** HTTP calls without a credential: allowed at all, and how many per address per window. */
  calls: { anonymous: boolean; max: number; windowMs: number };
  /**
   * A call no node here can take (E_QOS, E_UNAVAILABLE) placed at a federated site
   * (relay/federation/); undefined when none could either.
   */
  elsewhere?: Federation['elsewhere'];
  log: { warn(m: string): void };
}

/** Mounts the routes and upgrade handling; answers a function that closes the peer sockets. */
export function mountFabric(app: FastifyInstance, o: FabricHttpOptions): () => void {
  const { hub } = o;

  // Node sockets and PeerJS signalling share the relay's port; anything else is refused.
  const peers = mountPeerSignalling(app.server, {
    authorized: (id, token) => hub.peerTokenOk(id, token),
    known: (id) => hub.nodes().some((n) => n.id === id),
    origins: o.origins,
    ...(o.maxSignalBytes !== undefined && { maxMessageBytes: o.maxSignalBytes }),
    ...(o.peerDirectory && { relays: { ...o.peerDirectory, ...hub.signals } }),
    log: o.log,
  });
  routeUpgrades(
    app.server,
    {
      '/ws': (req, socket, head) => hub.upgrade(req, socket, head),
      '/peerjs/peerjs': peers.upgrade,
    },
    o.log,
    // DNS rebinding: a page on another name must not reach a relay on this machine's loopback.
    (req) => o.hosts(req.headers.host),
  );

  app.addContentTypeParser(MSGPACK_TYPES, { parseAs: 'buffer' }, (_req, body, done) => {
    try {
      done(null, decode(body as Buffer, frameLimits));
    } catch (e) {
      done(new InputError(`the body is not valid MessagePack: ${(e as Error).message}`));
    }
  });
  mountCalls(app, o);
  mountContext(app, {
    auth: o.auth,
    projects: o.projects,
    context: o.context,
    publish: (op, seq) => hub.publish(op, seq),
    deployed: o.deployed,
    send,
  });
  mountAdmin(app, o);
  return () => {
    peers.close();
    o.peerDirectory?.close();
  };
}

/** Calls and schedules for HTTP clients outside the fabric. */
function mountCalls(app: FastifyInstance, o: FabricHttpOptions): void {
  const { hub, auth } = o;
  // Anonymous calls: allowed (rate limited per address) unless switched off; a key with `call`
  // (or the admin token) is held to no per-address limit.
  const callRoute: RouteShorthandOptions = {
    onRequest: async (req, reply) => {
      if (hub.draining()) {
        // Shutting down: nothing new starts; a client retries once it is back (a restart).
        reply.header('retry-after', String(DRAIN_RETRY_AFTER_S));
        throw new UnavailableError('the relay is shutting down (draining): retry once it is back');
      }
      if (!o.calls.anonymous || auth.principal(req)) auth.require(req, 'call');
    },
    config: {
      rateLimit: {
        max: o.calls.max,
        timeWindow: o.calls.windowMs,
        allowList: (req: FastifyRequest) => auth.allows(auth.principal(req), 'call'),
      },
    },
  };
  app.post<{ Params: { app: string; service: string } }>(
    '/api/call/:app/:service',
    callRoute,
    async (req, reply) => {
      // The request's trace: the caller's (W3C traceparent; a bad one is ignored) or a new one.
      const traceId = traceIdOf(req.headers.traceparent) ?? newTraceId();
      reply.header('traceparent', traceparent(traceId));
      const { input, qos, rpc } = parseBody(callBody, req.body, '{ input, qos?, rpc? }');
      const { app: name, service } = req.params;
      const answer = await hub
        .call(name, service, input, qos ?? {}, rpc, traceId, { reqId: req.id })
        .catch(async (e: unknown) => {
          const local = e instanceof QosError || e instanceof UnavailableError;
          const there =
            local && !hub.draining()
              ? await o.elsewhere?.(name, service, input, qos ?? {}, rpc, traceId)
              : undefined;
          if (!there) throw e;
          return there;
        });
      return send(req, reply, 200, { ...answer, traceId });
    },
  );

  // The Edgeless API for clients outside the fabric: where a call would run, and why.
  app.post<{ Params: { app: string; service: string } }>(
    '/api/schedule/:app/:service',
    callRoute,
    async (req) => {
      const { qos, rpc } = parseBody(scheduleBody, req.body, '{ qos?, rpc? }');
      const r = await hub.decide(req.params.app, req.params.service, qos ?? {}, '', [], rpc);
      // The page API's shape (core/page-api.ts ScheduleAnswer): the rpc called on that node and
      // the model variant deciding accuracy; the variants it pins are the relay's own business.
      const answer: ScheduleAnswer = {
        node: r.node,
        rpc: r.rpc,
        variant: r.variant,
        estimateMs: r.estimateMs,
        reason: r.reason,
      };
      return answer;
    },
  );
}

/** The admin API: nodes, decisions, events, calls, quarantine, context, trust. */
function mountAdmin(app: FastifyInstance, o: FabricHttpOptions): void {
  const { hub, admin, auth } = o;
  const guarded = { onRequest: auth.hook('admin') };
  app.get('/api/nodes', guarded, async () =>
    // A record's peerKey is between relays only.
    hub.nodes().map(({ peerKey: _, ...n }) => ({ ...n, shortId: n.id.slice(0, 8) })),
  );
  // The cluster's relays (a lone relay: itself), and whether this one reaches Redis.
  app.get('/api/relays', guarded, () => hub.relays());
  // A cluster's relay shows the whole cluster's newest entries (relay/cluster/logs.ts).
  app.get('/api/decisions', guarded, () => hub.logs('decisions'));
  app.get('/api/events', guarded, () => hub.logs('events'));
  app.get('/api/calls', guarded, () => hub.logs('calls'));
  app.get('/api/exits', guarded, async () => hub.exits());
  // Sessions open now, the nodes leaving, and the last migrations (PROTOCOL.md §5.9).
  app.get('/api/sessions', guarded, async () => ({
    sessions: hub.sessions.list(),
    migrations: hub.sessions.migrations(),
    leaving: hub.sessions.leaving(),
  }));
  app.get('/api/trust', guarded, async () => admin.trustList());
  // Nodes caught answering wrong by redundant execution, with the evidence (relay/verify.ts).
  app.get('/api/quarantine', guarded, async () => hub.quarantined());
  app.delete<{ Params: { node: string } }>('/api/quarantine/:node', guarded, async (req, reply) => {
    if (!hub.release(req.params.node)) {
      throw new NotFoundError(`node "${req.params.node.slice(0, 32)}" is not quarantined`);
    }
    return reply.code(204).send();
  });
  app.get('/api/context/fanout', guarded, async () => hub.fanout());
  app.get('/api/context', guarded, async () =>
    o.context.replica.state().map((op) => ({
      app: op.app,
      key: op.key,
      scope: op.scope,
      ...(op.owner && { owner: op.owner }),
      deleted: op.kind === 'delete',
      ...(op.expiresAt !== undefined && { expiresAt: op.expiresAt }),
      ...(op.privacy && { privacy: op.privacy }),
      bytes: (op.value?.byteLength ?? 0) + (op.sealed?.byteLength ?? 0),
      stamp: op.stamp,
    })),
  );
  app.post<{ Body: { publicKey?: unknown; label?: unknown } }>(
    '/api/trust',
    guarded,
    async (req, reply) => {
      const { publicKey, label } = req.body ?? {};
      if (typeof publicKey !== 'string') throw new InputError('send { publicKey, label? }');
      const id = await nodeIdOf(publicKey); // refuses what is not a P-256 SPKI key
      const entry = await admin.trust(publicKey, typeof label === 'string' ? label : '');
      hub.retrust();
      return reply.code(201).send({ ...entry, nodeId: id });
    },
  );
  app.delete<{ Params: { publicKey: string } }>(
    '/api/trust/:publicKey',
    guarded,
    async (req, reply) => {
      const had = await admin.revoke(req.params.publicKey);
      hub.retrust();
      if (!had) throw new NotFoundError('that key is not on the trust list');
      return reply.code(204).send();
    },
  );
}

/** Answers in MessagePack to a MessagePack request, JSON otherwise. */
export function send(req: FastifyRequest, reply: FastifyReply, status: number, body: unknown) {
  const accept = `${req.headers.accept ?? ''} ${req.headers['content-type'] ?? ''}`;
  if (MSGPACK_TYPES.some((t) => accept.includes(t))) {
    const bytes = encodeAnswer(body); // what cannot be encoded is a typed error, not a 500
    return reply
      .code(status)
      .type('application/msgpack')
      .send(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
  }
  checkJson(body);
  return reply.code(status).send(body);
}
