/**
 * Builds `dist/apps/<name>.brume` for every sample app, i.e. every `logics/<app>/brume.json`
 * (a manifest draft whose `sources` say where each bundle file is built; see relay/pack.ts).
 * The relay deploys these bundles when it starts with an empty store.
 *
 * @example
 * npx tsx scripts/pack-apps.ts
 */
import { existsSync, readdirSync } from 'node:fs';
import { join, relative, sep } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { type PackResult, packApp as packWith } from '../relay/pack';

const root = fileURLToPath(new URL('..', import.meta.url));

/** Which npm script makes a build output of this repository, for "file missing" messages. */
function buildHint(absPath: string): string | undefined {
  const rel = relative(root, absPath).split(sep);
  if (rel[0] === 'logics' && rel[1] === 'build') return 'npm run build:logics';
  if (rel[0] === 'models' && rel[1] === 'squeezenet') return 'npm run build:models';
  if (rel[0] === 'models') return 'npm run models';
  return undefined;
}

/** Packs the draft at `draftPath` into `outPath`, naming the command that builds a missing file. */
export function packApp(draftPath: string, outPath: string): Promise<PackResult> {
  return packWith(draftPath, outPath, { hint: buildHint });
}

/** Every `logics/<app>/brume.json`, sorted. */
export function sampleApps(): string[] {
  const dir = join(root, 'logics');
  return readdirSync(dir, { withFileTypes: true })
    .filter((d) => d.isDirectory() && existsSync(join(dir, d.name, 'brume.json')))
    .map((d) => join(dir, d.name, 'brume.json'))
    .sort();
}

async function main(): Promise<void> {
  const outDir = join(root, 'dist', 'apps');
  for (const draft of sampleApps()) {
    const name = relative(join(root, 'logics'), draft).split(sep)[0]!;
    const r = await packApp(draft, join(outDir, `${name}.brume`));
    const files = Object.keys(r.manifest.files).length;
    console.log(
      `${r.manifest.name}@${r.manifest.version}: ${files} files, ${r.bytes} bytes → ${relative(root, r.outPath)}`,
    );
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  main().catch((e: unknown) => {
    console.error(`pack-apps: ${(e as Error).message}`);
    process.exit(1);
  });
}
