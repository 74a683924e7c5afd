/**
 * Joining (PROTOCOL.md §5.1): the relay sends a challenge, the node answers `hello` then `join`
 * signed with its key; its id is the hash of that key, its role is checked against the trust
 * list (the cloud role needs a listed key; trust counts for fog and cloud only), and its signed
 * agreement key is kept for sealed context values. A second connection of the same node replaces
 * the first.
 * @example const join = createJoin({ relayId, heartbeatMs, trusted, … });
 *          join.greet(conn);                         // on accept: the challenge
 *          await join.joining(conn, msg);            // every frame before the node is joined
 */
import type { NodeRecord } from '../../core/api';
import { ProtocolError } from '../../core/errors';
import { NonceBook, nodeIdOf, verifyAgreement, verifyJoin } from '../../core/identity';
import {
  type AgreementBinding,
  PROTOCOL_VERSION,
  type Role,
  type ToNode,
  type ToRelay,
} from '../../core/protocol';
import type { Conn } from './connections';
import type { Logs } from './logs';

export interface JoinOptions {
  relayId: string;
  heartbeatMs: number;
  trusted(publicKey: string): boolean;
  /** Where agreement keys are kept; undefined on a relay that keeps no context. */
  context?: { bind(b: AgreementBinding): void };
  event: Logs['event'];
  send(conn: Conn, frame: ToNode): void;
  /** Closes and removes the connection node `id` has now, if any (a newer one replaces it). */
  replace(id: string): void;
  /** The relay's standing of node `id`: its own timings of it, and whether it is quarantined. */
  measured(id: string): NodeRecord['measured'];
  quarantined(id: string): boolean;
  /** Enters the joined node; answers its peer token and a dew's parent. */
  enter(record: NodeRecord, conn: Conn): { peerToken: string; parent?: string };
}

export function createJoin(o: JoinOptions) {
  const nonces = new NonceBook();

  /** The challenge a new socket must sign. */
  function greet(conn: Conn): void {
    conn.nonce = nonces.issue();
    o.send(conn, { t: 'challenge', v: PROTOCOL_VERSION, nonce: conn.nonce, relayId: o.relayId });
  }

  /** Whether `join` signs this connection's challenge with the key `hello` named. */
  async function proves(
    hello: Extract<ToRelay, { t: 'hello' }>,
    nonce: Uint8Array,
    msg: Extract<ToRelay, { t: 'join' }>,
    id: string,
  ): Promise<boolean> {
    const sameNonce =
      nonce.length === msg.nonce.length && nonce.every((b, i) => b === msg.nonce[i]);
    const valid =
      sameNonce &&
      nonces.consume(msg.nonce) &&
      id !== '' &&
      (await verifyJoin(hello.publicKey, msg.nonce, o.relayId, id, hello.role, msg.signature));
    if (!valid) {
      o.event(
        'refused',
        sameNonce
          ? 'join signature does not verify'
          : 'join answered a nonce this connection was not given',
      );
    }
    return valid;
  }

  async function joining(conn: Conn, msg: ToRelay): Promise<void> {
    if (msg.t === 'hello' && !conn.hello) {
      if (msg.v !== PROTOCOL_VERSION) {
        throw new ProtocolError(
          `protocol version ${msg.v} is not supported (this relay speaks ${PROTOCOL_VERSION})`,
        );
      }
      conn.hello = msg;
      return;
    }
    if (msg.t !== 'join' || !conn.hello || !conn.nonce)
      throw new ProtocolError('join first: send hello, then join');
    const { hello, nonce } = conn;
    conn.nonce = undefined; // one attempt per connection
    const id = await nodeIdOf(hello.publicKey).catch(() => '');
    if (!(await proves(hello, nonce, msg, id))) {
      throw new ProtocolError(
        'join refused: the signature does not prove this key answered this challenge',
      );
    }
    if (hello.agreement && o.context) {
      const a = hello.agreement;
      if (!(await verifyAgreement(hello.publicKey, a.agreementKey, a.signature))) {
        o.event('refused', 'agreement key not signed by the node key', id);
        throw new ProtocolError('join refused: the agreement key is not signed by this node key');
      }
      o.context.bind({ publicKey: hello.publicKey, ...a });
    }
    const vouched = o.trusted(hello.publicKey);
    if (hello.role === 'cloud' && !vouched) {
      o.event('refused', 'the cloud role needs a key on the trust list', id);
      throw new ProtocolError('join refused: the cloud role is for keys on the relay trust list');
    }
    // The same key again (a reload): the newer connection wins.
    o.replace(id);
    const record: NodeRecord = {
      id,
      role: hello.role as Role,
      publicKey: hello.publicKey,
      // A dew's key may be listed, but trust means something for fog and cloud only.
      trusted: hello.role !== 'dew' && vouched,
      online: true,
      rttMs: 1,
      backends: hello.caps.backends.map((b) => b.name),
      queue: 0,
      maxConcurrency: 1,
      apps: [],
      models: {},
      stats: {},
      measured: o.measured(id),
      ...(o.quarantined(id) && { quarantined: true }),
      paused: false,
      caps: hello.caps,
      joinedAt: Date.now(),
      lastSeen: Date.now(),
    };
    conn.node = record;
    clearTimeout(conn.joinTimer);
    const { peerToken, parent } = o.enter(record, conn);
    o.send(conn, {
      t: 'welcome',
      nodeId: id,
      role: record.role,
      trusted: record.trusted,
      heartbeatMs: o.heartbeatMs,
      peerToken,
      ...(parent ? { parent } : {}),
    });
    o.event('joined', `${record.role}${record.trusted ? ' (trusted)' : ''}`, id);
  }

  return { greet, joining };
}
