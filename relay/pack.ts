/**
 * Packs an app definition (`brume.json` draft) into a `.brume` bundle, for `brume pack` and
 * `scripts/pack-apps.ts`.
 *
 * A draft is a manifest whose `files` may be left out (they are computed from the bytes), plus:
 *   "sources": { <bundle path>: <file path> }  where a bundle file comes from, relative to the draft
 *                                               (default: the bundle path itself, relative to it)
 *                                               (a `.ts` source of a `.wasm` is AssemblyScript,
 *                                               compiled now: relay/asc.ts)
 *   "metrics": "<path to metrics.json>"          fills each variant's figures from the same-named
 *                                               entry: { measured, variants: { <id>: {...} } }
 *
 * @example
 * const { outPath } = await packApp('logics/digits/brume.json', 'dist/apps/digits.brume');
 */
import { mkdir, readFile } from 'node:fs/promises';
import { dirname, join, relative, resolve } from 'node:path';
import { z } from 'zod';
import { InputError, ManifestError } from '../core/errors';
import {
  buildManifest,
  type Manifest,
  type ManifestDraft,
  packBundle,
  type Service,
} from '../core/manifest';
import { compileLogics } from './asc';
import { checkCode } from './bundle-check';
import { writeDurable } from './durable';

export interface PackOptions {
  /** Says which command makes a missing source file (absolute path), for the error message. */
  hint?: (absPath: string) => string | undefined;
  /** Packs as this version instead of the draft's (`brume dev`'s next patch). */
  version?: string;
}

export interface PackResult {
  manifest: Manifest;
  outPath: string;
  bytes: number;
}

const metricsSchema = z.object({
  measured: z.string().min(1),
  variants: z.record(
    z.string(),
    z.object({
      accuracy: z.number(),
      latencyMs: z.number(),
      params: z.number(),
      weights: z.enum(['trained', 'random']),
      measured: z.string().optional(),
    }),
  ),
});

/**
 * Reads the draft at `draftPath`, gathers its files, checks them against the manifest (the rpcs
 * each wasm exports, each ONNX graph's inputs and outputs: relay/bundle-check.ts), and writes the
 * bundle to `outPath` (default `<name>-<version>.brume` next to the draft). Throws InputError
 * naming a missing or bad file, ManifestError naming a field the code disagrees with.
 */
export async function packApp(
  draftPath: string,
  outPath?: string,
  options: PackOptions = {},
): Promise<PackResult> {
  const draftFile = resolve(draftPath);
  const base = dirname(draftFile);
  const raw = await readJson(draftFile, options);
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new InputError(`${draftPath}: expected a JSON object (a manifest draft)`);
  }
  const { sources = {}, metrics, ...draft } = raw as Record<string, unknown>;
  if (options.version !== undefined) draft.version = options.version;
  if (!isStringRecord(sources)) {
    throw new InputError(`${draftPath}: "sources" must map bundle paths to file paths`);
  }
  if (metrics !== undefined && typeof metrics !== 'string') {
    throw new InputError(`${draftPath}: "metrics" must be a path to a metrics.json`);
  }
  if (metrics) await fillMetrics(draft, resolve(base, metrics), options);

  const files: Record<string, Uint8Array> = {};
  // A `.wasm` whose source is AssemblyScript (`.ts`) is compiled now, all in one compiler run.
  const compiled: string[] = [];
  for (const path of bundlePaths(draft, sources)) {
    const abs = resolve(base, Object.hasOwn(sources, path) ? sources[path]! : path);
    if (path.endsWith('.wasm') && abs.endsWith('.ts')) {
      await readSource(abs, `${path} comes from ${relative(process.cwd(), abs)}`, options);
      compiled.push(path);
      continue;
    }
    files[path] = await readSource(
      abs,
      `${path} comes from ${relative(process.cwd(), abs)}`,
      options,
    );
  }
  const modules = await compileLogics(
    compiled.map((p) => sources[p]!),
    { cwd: base },
  );
  compiled.forEach((p, i) => {
    files[p] = modules[i]!.bytes;
  });
  const manifest = await buildManifest(draft as ManifestDraft, files)
    .then(async (m) => {
      await checkCode(m, files);
      return m;
    })
    .catch((e: unknown) => {
      if (!(e instanceof ManifestError)) throw e;
      throw new ManifestError(`${draftPath}: ${e.message}`, { cause: e });
    });
  const bundle = packBundle(manifest, files);
  const out = resolve(outPath ?? join(base, `${manifest.name}-${manifest.version}.brume`));
  await mkdir(dirname(out), { recursive: true });
  // Whole or not at all: a relay seeding from dist/apps never reads half a bundle.
  await writeDurable(out, bundle, { mode: 0o644 });
  return { manifest, outPath: out, bytes: bundle.byteLength };
}

/** Every file the bundle holds: those already listed, those with a source, those services use. */
function bundlePaths(draft: Record<string, unknown>, sources: Record<string, string>): string[] {
  const paths = new Set<string>(Object.keys(sources));
  if (isObject(draft.files)) for (const p of Object.keys(draft.files)) paths.add(p);
  if (isObject(draft.services)) {
    for (const s of Object.values(draft.services) as Partial<Service>[]) {
      if (s?.kind === 'logic' && typeof s.file === 'string') paths.add(s.file);
      if (s?.kind === 'model' && isObject(s.variants)) {
        for (const v of Object.values(s.variants))
          if (typeof v?.file === 'string') paths.add(v.file);
      }
    }
  }
  return [...paths].sort();
}

async function fillMetrics(
  draft: Record<string, unknown>,
  metricsPath: string,
  options: PackOptions,
): Promise<void> {
  const parsed = metricsSchema.safeParse(await readJson(metricsPath, options));
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new InputError(`${metricsPath}: ${issue.path.join('.')}: ${issue.message}`);
  }
  const m = parsed.data;
  const services = isObject(draft.services) ? draft.services : {};
  for (const [sname, s] of Object.entries(services) as [string, Partial<Service>][]) {
    if (s?.kind !== 'model' || !isObject(s.variants)) continue;
    for (const [id, v] of Object.entries(s.variants)) {
      const figures = m.variants[id];
      if (!figures) {
        throw new InputError(
          `${metricsPath} has no entry for variant "${id}" of service "${sname}"`,
        );
      }
      Object.assign(v, {
        accuracy: figures.accuracy,
        latencyMs: figures.latencyMs,
        params: figures.params,
        weights: figures.weights,
        measured: figures.measured ?? m.measured,
      });
    }
  }
}

async function readJson(path: string, options: PackOptions): Promise<unknown> {
  const bytes = await readSource(path, relative(process.cwd(), path), options);
  try {
    return JSON.parse(new TextDecoder().decode(bytes));
  } catch (e) {
    throw new InputError(`${path}: not valid JSON (${(e as Error).message})`);
  }
}

async function readSource(abs: string, what: string, options: PackOptions): Promise<Uint8Array> {
  try {
    return await readFile(abs);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    const hint = options.hint?.(abs);
    throw new InputError(
      `cannot pack: ${what}, which does not exist${hint ? `; build it with \`${hint}\`` : ''}`,
    );
  }
}

function isObject(v: unknown): v is Record<string, Record<string, unknown>> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function isStringRecord(v: unknown): v is Record<string, string> {
  return isObject(v) && Object.values(v).every((x) => typeof x === 'string');
}
