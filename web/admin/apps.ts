/**
 * The console's apps panel: each app's services and variants with their manifest and measured
 * latency, and a drop zone that deploys a bundle with upload progress.
 */
import { html } from 'htm/preact';
import { useState } from 'preact/hooks';
import type { AppSummary, NodeRecord } from '../../core/api';
import { BrumeError } from '../../core/errors';
import { counts, statsKeyPrefix } from '../../core/placement';
import type { RelayClient } from '../../core/relay-client';
import { uploadFile } from './upload';

const BUNDLE = 'application/vnd.brume.bundle';

export function Apps({
  relay,
  apps,
  nodes,
}: {
  relay: RelayClient;
  apps: AppSummary[];
  nodes: NodeRecord[];
}) {
  const [upload, setUpload] = useState<{ name: string; sent: number; total: number } | undefined>();
  const [result, setResult] = useState<{ ok: boolean; text: string } | undefined>();
  const [over, setOver] = useState(false);
  const measured = (app: string, service: string, variant: string) => {
    const xs = nodes.flatMap((n) =>
      Object.entries(n.stats)
        .filter(([k, v]) => k.startsWith(statsKeyPrefix(app, service, variant)) && counts(v))
        .map(([, v]) => v.p50),
    );
    return xs.length
      ? `${Math.min(...xs).toFixed(2)}–${Math.max(...xs).toFixed(2)} ms on ${xs.length}`
      : '—';
  };
  const deploy = (file: File) => {
    setResult(undefined);
    setUpload({ name: file.name, sent: 0, total: file.size });
    const onProgress = (sent: number, total: number) => setUpload({ name: file.name, sent, total });
    uploadFile<{ name: string; version: string }>(
      relay,
      'POST',
      '/api/apps',
      file,
      BUNDLE,
      onProgress,
    )
      .then(
        (b) => setResult({ ok: true, text: `deployed ${b.name}@${b.version}` }),
        (e: Error) =>
          setResult({
            ok: false,
            text: e instanceof BrumeError ? `refused: ${e.message}` : e.message,
          }),
      )
      .finally(() => setUpload(undefined));
  };
  return html`<section class="card" id="apps">
    <h2>Apps</h2>
    <table>
      <thead><tr><th>app</th><th>service</th><th>variant</th><th>accuracy</th><th>manifest latency</th><th>measured p50</th></tr></thead>
      <tbody>
        ${apps.flatMap((a) =>
          Object.entries(a.services).flatMap(([name, s]) =>
            s.kind === 'logic'
              ? [
                  html`<tr key=${`${a.name}/${name}`}><td>${a.name}@${a.version}</td><td>${name}</td><td colspan="4">Logic: ${s.rpcs.join(', ')}</td></tr>`,
                ]
              : Object.entries(s.variants).map(
                  ([v, f]) => html`<tr key=${`${a.name}/${name}/${v}`}>
                    <td>${a.name}@${a.version}</td><td>${name}</td>
                    <td>${v}${f.weights === 'random' ? html` <span class="badge bad">random weights</span>` : ''}</td>
                    <td>${f.accuracy}</td><td>${f.latencyMs} ms</td><td>${measured(a.name, name, v)}</td>
                  </tr>`,
                ),
          ),
        )}
      </tbody>
    </table>
    <label
      class=${`drop${over ? ' over' : ''}`}
      onDragOver=${(e: DragEvent) => {
        e.preventDefault();
        setOver(true);
      }}
      onDragLeave=${() => setOver(false)}
      onDrop=${(e: DragEvent) => {
        e.preventDefault();
        setOver(false);
        const f = e.dataTransfer?.files[0];
        if (f) deploy(f);
      }}
    >
      Deploy a bundle: drop a <code>.brume</code> file here or
      <input id="bundle" type="file" accept=".brume" onChange=${(e: Event) => {
        const f = (e.target as HTMLInputElement).files?.[0];
        if (f) deploy(f);
      }} />
    </label>
    ${upload && html`<p>uploading ${upload.name}: <progress max=${upload.total} value=${upload.sent}></progress></p>`}
    ${result && html`<p id="deploy-result" class=${result.ok ? 'ok' : 'error'}>${result.text}</p>`}
  </section>`;
}
