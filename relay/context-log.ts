/**
 * The byte format of the relay's context files (`relay/context.ts`). The log (`context.log`) is a
 * 12-byte header, `BRUMECL1` and a big-endian u32 generation, then records: a u32 payload length,
 * the payload's CRC32, the payload (one operation as MessagePack). The snapshot
 * (`context.snapshot`) is a CRC32 then one MessagePack map `{ v: 1, generation, seq, ops }`. A
 * log whose generation is older than the snapshot's was already folded into it.
 * @example const scan = scanLog(bytes, parseOp); for (const op of scan.records) replica.apply(op);
 */
import { crc32 } from 'node:zlib';

const MAGIC = Buffer.from('BRUMECL1');
export const HEADER_BYTES = MAGIC.length + 4;
const RECORD_HEAD = 8;

/** The first bytes of a log of `generation`. */
export function logHeader(generation: number): Buffer {
  const b = Buffer.alloc(HEADER_BYTES);
  MAGIC.copy(b);
  b.writeUInt32BE(generation, MAGIC.length);
  return b;
}

/** One log record holding `payload`. */
export function logRecord(payload: Uint8Array): Buffer {
  const b = Buffer.alloc(RECORD_HEAD + payload.byteLength);
  b.writeUInt32BE(payload.byteLength, 0);
  b.writeUInt32BE(crc32(payload), 4);
  b.set(payload, RECORD_HEAD);
  return b;
}

export interface LogScan<T> {
  /** The header's generation; undefined for a log from before headers (length, payload). */
  generation: number | undefined;
  /** The records before the first one that is damaged or incomplete, parsed. */
  records: T[];
  /** Where the good prefix ends. */
  good: number;
  /** Why reading stopped before the end of the bytes. */
  stop?: string;
}

/**
 * Reads records until the end or the first one that is incomplete (a write cut short), fails its
 * checksum or does not `parse` (which throws on what it refuses).
 */
export function scanLog<T>(bytes: Buffer, parse: (payload: Uint8Array) => T): LogScan<T> {
  const headed = bytes.length >= HEADER_BYTES && bytes.subarray(0, MAGIC.length).equals(MAGIC);
  const generation = headed ? bytes.readUInt32BE(MAGIC.length) : undefined;
  const head = headed ? RECORD_HEAD : 4;
  const records: T[] = [];
  let at = headed ? HEADER_BYTES : 0;
  if (
    !headed &&
    bytes.length > 0 &&
    bytes.length < HEADER_BYTES &&
    MAGIC.subarray(0, bytes.length).equals(bytes)
  ) {
    return { generation: 0, records, good: 0, stop: 'the header is incomplete' };
  }
  while (at < bytes.length) {
    if (at + head > bytes.length)
      return { generation, records, good: at, stop: 'an incomplete record' };
    const len = bytes.readUInt32BE(at);
    if (at + head + len > bytes.length) {
      return {
        generation,
        records,
        good: at,
        stop: `an incomplete record (${len} bytes announced)`,
      };
    }
    const payload = bytes.subarray(at + head, at + head + len);
    if (headed && crc32(payload) !== bytes.readUInt32BE(at + 4)) {
      return { generation, records, good: at, stop: 'a record whose checksum does not match' };
    }
    try {
      records.push(parse(payload));
    } catch (e) {
      return {
        generation,
        records,
        good: at,
        stop: `a record that does not parse (${(e as Error).message})`,
      };
    }
    at += head + len;
  }
  return { generation, records, good: at };
}

/** A snapshot's bytes: the CRC32 of the body, then the body. */
export function snapshotBytes(body: Uint8Array): Buffer {
  const b = Buffer.alloc(4 + body.byteLength);
  b.writeUInt32BE(crc32(body), 0);
  b.set(body, 4);
  return b;
}

/** The body of a snapshot file; throws when its checksum does not match. */
export function snapshotBody(bytes: Buffer): Uint8Array {
  if (bytes.length < 4) throw new Error('shorter than its checksum');
  const body = bytes.subarray(4);
  if (crc32(body) !== bytes.readUInt32BE(0)) throw new Error('its checksum does not match');
  return body;
}
