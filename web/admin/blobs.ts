/**
 * The console's blobs panel: upload a file to the blob store with a progress bar (percent and
 * MB/s), the stored blobs a page at a time with their size, age and referrers (what keeps each
 * from collection), a download for each, and a button that collects unreferenced blobs now.
 */
import { html } from 'htm/preact';
import { useCallback, useEffect, useState } from 'preact/hooks';
import { BrumeError } from '../../core/errors';
import type { RelayClient } from '../../core/relay-client';
import { uploadFile } from './upload';

interface BlobRow {
  hash: string;
  size: number;
  modified: number;
  referrers: string[];
}

const PAGE = 50;

export function Blobs({ relay }: { relay: RelayClient }) {
  const [rows, setRows] = useState<BlobRow[]>([]);
  // The hashes each page starts after: [''] is the first page.
  const [pages, setPages] = useState<string[]>(['']);
  const [sending, setSending] = useState<{
    name: string;
    sent: number;
    total: number;
    t0: number;
  }>();
  const [msg, setMsg] = useState<{ ok: boolean; text: string }>();

  const after = pages[pages.length - 1] ?? '';
  const load = useCallback(async () => {
    const q = new URLSearchParams({ after, limit: String(PAGE) });
    setRows(await relay.json<BlobRow[]>('GET', `/api/blobs?${q}`));
  }, [relay, after]);
  useEffect(() => {
    load().catch((e: Error) => setMsg({ ok: false, text: e.message }));
  }, [load]);

  const put = (file: File) => {
    setMsg(undefined);
    const t0 = performance.now();
    setSending({ name: file.name, sent: 0, total: file.size, t0 });
    const onProgress = (sent: number, total: number) =>
      setSending({ name: file.name, sent, total, t0 });
    uploadFile<{ hash: string; size: number }>(
      relay,
      'PUT',
      '/api/blobs',
      file,
      'application/octet-stream',
      onProgress,
    )
      .then(
        (b) => {
          setMsg({ ok: true, text: `stored ${b.hash} (${b.size} bytes)` });
          return load();
        },
        (e: Error) =>
          setMsg({
            ok: false,
            text: e instanceof BrumeError ? `refused: ${e.message}` : e.message,
          }),
      )
      .finally(() => setSending(undefined));
  };

  const act = (what: () => Promise<string>) =>
    what().then(
      (text) => setMsg({ ok: true, text }),
      (e: Error) => setMsg({ ok: false, text: e.message }),
    );
  const collect = () =>
    act(async () => {
      const r = await relay.json<{ deleted: string[]; kept: number }>('POST', '/api/blobs/collect');
      await load();
      return `collected ${r.deleted.length} blobs, kept ${r.kept}`;
    });

  return html`<section class="card" id="blobs">
    <h2>Blobs</h2>
    <label class="drop">
      Store a file as a blob: <input id="blob-file" type="file" onChange=${(e: Event) => {
        const f = (e.target as HTMLInputElement).files?.[0];
        if (f) put(f);
      }} />
    </label>
    ${
      sending &&
      html`<p id="blob-upload">uploading ${sending.name}:
      <progress id="blob-progress" max=${sending.total} value=${sending.sent}></progress>
      ${rate(sending)}</p>`
    }
    ${msg && html`<p id="blob-result" class=${msg.ok ? 'ok' : 'error'}>${msg.text}</p>`}
    <div class="scroll"><table>
      <thead><tr><th>sha256</th><th>size</th><th>written</th><th>kept by</th><th></th></tr></thead>
      <tbody>
        ${rows.map(
          (b) => html`<tr key=${b.hash} data-hash=${b.hash}>
            <td><code title=${b.hash}>${b.hash.slice(0, 16)}…</code></td>
            <td>${size(b.size)}</td>
            <td>${new Date(b.modified).toLocaleString()}</td>
            <td>${b.referrers.join(', ') || html`<span class="bad">nothing (collected after the grace)</span>`}</td>
            <td><button type="button" class="download" onClick=${() =>
              act(() => download(relay, b.hash))}>Download</button></td>
          </tr>`,
        )}
      </tbody>
    </table></div>
    <p>
      <button type="button" disabled=${pages.length === 1} onClick=${() => setPages(pages.slice(0, -1))}>Previous</button>
      <button type="button" disabled=${rows.length < PAGE} onClick=${() =>
        setPages([...pages, rows[rows.length - 1]!.hash])}>Next</button>
      <button type="button" onClick=${() => act(() => load().then(() => 'refreshed'))}>Refresh</button>
      <button type="button" id="blob-collect" onClick=${collect}>Collect now</button>
    </p>
  </section>`;
}

function rate(s: { sent: number; total: number; t0: number }): string {
  const seconds = (performance.now() - s.t0) / 1000;
  const pct = s.total > 0 ? Math.floor((s.sent / s.total) * 100) : 0;
  return `${pct}% · ${seconds > 0 ? (s.sent / 1e6 / seconds).toFixed(1) : '0.0'} MB/s`;
}

function size(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 2 ** 20) return `${(bytes / 1024).toFixed(1)} KiB`;
  return `${(bytes / 2 ** 20).toFixed(1)} MiB`;
}

/**
 * Fetches the blob with the console's token (a link could not send it) and saves it under its
 * hash; the browser holds it whole meanwhile (`brume blob get` streams a large one to disk).
 */
async function download(relay: RelayClient, hash: string): Promise<string> {
  const res = await relay.send('GET', `/api/blobs/${hash}`);
  const url = URL.createObjectURL(new Blob([await res.arrayBuffer()]));
  const a = document.createElement('a');
  a.href = url;
  a.download = hash;
  a.click();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
  return `downloaded ${hash.slice(0, 16)}…`;
}
