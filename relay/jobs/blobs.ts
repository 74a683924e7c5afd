/**
 * What jobs need of the relay's blob store (relay/blobs.ts), kept narrow: bytes in (a large
 * result), bytes out (an input given as a blob), and its size (checked at submit).
 * @example const { hash } = await blobs.putBytes(bytes);
 */
import type { Blobs } from '../blobs';

export type JobBlobs = Pick<Blobs, 'putBytes' | 'get' | 'stat'>;
