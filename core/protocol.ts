/**
 * The fabric's wire protocol (PROTOCOL.md §5), the one import path for it: MessagePack frames over
 * WebSocket (node ↔ relay) and WebRTC data channels (node ↔ node). Frames are data; every one is
 * validated on arrival, because the other end may be hostile. The parts live in core/protocol/:
 *   fields.ts   version, constants, frame limits, the field schemas frames share, QoS
 *   relay.ts    node ↔ relay frames (join, liveness, scheduling, calls)
 *   context.ts  the context store's frames and operation
 *   lease.ts    decision leases: what a lease covers, and its revocation
 *   peer.ts     node ↔ node frames, chunking and the Reassembler
 *   wire.ts     encodeFrame / decodeFrame
 * @example ws.send(encodeFrame({ t: 'schedule', id: 7, app: 'digits', service: 'classify', qos: {} }));
 *          const msg = decodeFrame(bytes, 'toRelay'); // throws ProtocolError on anything else
 */
export { type AgreementBinding, agreementSchema, contextOpSchema } from './protocol/context';
export {
  type Capabilities,
  capabilitiesSchema,
  frameLimits,
  MAX_PLACEMENTS,
  PROTOCOL_VERSION,
  parseQos,
  qosSchema,
  type Role,
  roles,
} from './protocol/fields';
export { type Lease, leaseSchema, MAX_LEASE_MS, MAX_REVOKED_IDS } from './protocol/lease';
export {
  chunk,
  chunkBytes,
  type PeerFrame,
  peerFrame,
  Reassembler,
  type ReassemblerLimits,
} from './protocol/peer';
export {
  MAX_EXIT_SERVICES,
  type ToNode,
  type ToRelay,
  toNode,
  toRelay,
} from './protocol/relay';
export { decodeFrame, encodeFrame } from './protocol/wire';
