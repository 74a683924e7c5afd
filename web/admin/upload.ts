/**
 * An upload from the console with progress: XMLHttpRequest (fetch reports none), its refusal
 * read as every relay answer is (core/relay-client.ts). The apps panel deploys bundles with it,
 * the blobs panel stores files.
 * @example await uploadFile(relay, 'PUT', '/api/blobs', file, 'application/octet-stream', onProgress);
 */
import { type RelayClient, refusal } from '../../core/relay-client';

export function uploadFile<T>(
  relay: RelayClient,
  method: string,
  path: string,
  file: Blob,
  contentType: string,
  progress: (sent: number, total: number) => void,
): Promise<T> {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open(method, `${relay.base}${path}`);
    xhr.setRequestHeader('content-type', contentType);
    if (relay.credential) xhr.setRequestHeader('authorization', `Bearer ${relay.credential}`);
    xhr.upload.onprogress = (e) => progress(e.loaded, e.total);
    xhr.onload = () => {
      const res = {
        ok: xhr.status < 300,
        status: xhr.status,
        headers: { get: (name: string) => xhr.getResponseHeader(name) },
        json: async () => JSON.parse(xhr.responseText || '{}') as unknown,
        arrayBuffer: async () => new TextEncoder().encode(xhr.responseText).buffer as ArrayBuffer,
        body: null,
      };
      if (res.ok) resolve(JSON.parse(xhr.responseText || '{}'));
      else void refusal(res, `${method} ${path}`).then(reject);
    };
    xhr.onerror = () => reject(new Error('the upload failed: is the relay reachable?'));
    xhr.send(file);
  });
}
