/**
 * What jobs need of the relay's blob store, kept narrow so the streaming store (relay/blobs.ts)
 * can stand behind it: bytes in (a large result), bytes out (an input given as a blob), and
 * whether a blob is there (checked at submit). `storeBlobs` adapts the content-addressed
 * BlobStore of relay/store.ts.
 * @example const blobs = storeBlobs(store.blobs); const { hash } = await blobs.putBytes(bytes);
 */
import { createHash } from 'node:crypto';
import type { BlobStore } from '../store';

export interface JobBlobs {
  putBytes(bytes: Uint8Array): Promise<{ hash: string; size: number }>;
  getBytes(hash: string): Promise<Uint8Array | undefined>;
  has(hash: string): Promise<boolean>;
}

export function storeBlobs(blobs: BlobStore): JobBlobs {
  return {
    async putBytes(bytes) {
      const hash = createHash('sha256').update(bytes).digest('hex');
      await blobs.put(hash, bytes);
      return { hash, size: bytes.byteLength };
    },
    getBytes: (hash) => blobs.get(hash),
    has: (hash) => blobs.has(hash),
  };
}
