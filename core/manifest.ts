/**
 * App manifests and `.brume` bundles (PROTOCOL.md §2): parse and validate a manifest, verify files
 * against it, pack and unpack bundles. Isomorphic: the relay verifies on deploy, nodes on load.
 *
 * @example
 * const manifest = await buildManifest(draft, { 'logic/classify.wasm': wasmBytes });
 * const bytes = packBundle(manifest, { 'logic/classify.wasm': wasmBytes });
 * const { files } = await unpackBundle(bytes); // throws BundleIntegrityError naming a bad file
 */
import { z } from 'zod';
import { type DecodeLimits, decode, defaultLimits, encode } from './codec';
import { BundleIntegrityError, CodecError, ManifestError } from './errors';
import { describeIssues, formatPath, show, typeName } from './issues';
import { APP_NAME } from './names';

// ---- Types ----------------------------------------------------------------------------------

export type TensorType = 'float32' | 'int32' | 'int64' | 'uint8' | 'bool';

/** A named tensor a Model takes or gives; `-1` in `dims` is a free dimension (e.g. batch). */
export interface TensorSpec {
  name: string;
  type: TensorType;
  dims: number[];
}

export interface LogicLimits {
  /** Wall-clock budget per invocation step; default 5000. */
  timeoutMs?: number;
  /** Guest memory maximum; default 64. */
  memoryMiB?: number;
}

/** One wasm module; its `rpcs` are exports, the first is the default. */
export interface LogicService {
  kind: 'logic';
  file: string;
  rpcs: string[];
  limits?: LogicLimits;
}

/** One model file of a Model service, with figures as measured (see `measured`). */
export interface Variant {
  file: string;
  accuracy: number;
  latencyMs: number;
  params: number;
  /** `random`: an architecture with random weights, whose accuracy means nothing. */
  weights: 'trained' | 'random';
  measured: string;
}

/** One task; every variant shares `inputs`/`outputs`, and each variant is an RPC. */
export interface ModelService {
  kind: 'model';
  task: string;
  inputs: TensorSpec[];
  outputs: TensorSpec[];
  variants: Record<string, Variant>;
}

export type Service = LogicService | ModelService;

export interface FileEntry {
  /** Lowercase hex sha256 of the file's bytes. */
  sha256: string;
  size: number;
}

export interface Manifest {
  brume: 1;
  name: string;
  version: string;
  description?: string;
  files: Record<string, FileEntry>;
  services: Record<string, Service>;
  /** Inputs a person can try from the join page. */
  demos?: Demo[];
}

export interface Demo {
  title: string;
  service: string;
  rpc?: string;
  /** JSON: the join page sends it as it is. */
  input: unknown;
}

/** A manifest whose `files` are still to be computed from the bytes (see `buildManifest`). */
export type ManifestDraft = Omit<Manifest, 'files'> & { files?: Record<string, FileEntry> };

export interface Bundle {
  manifest: Manifest;
  /** Bundle path → bytes; every file listed in `manifest.files`, verified. */
  files: Record<string, Uint8Array>;
}

export const BUNDLE_FORMAT = 'brume-bundle/1';

export const DEFAULT_LOGIC_LIMITS: Readonly<Required<LogicLimits>> = {
  timeoutMs: 5000,
  memoryMiB: 64,
};

/** Decode bounds for a whole bundle: one message, but far larger than a network message. */
export const bundleLimits: DecodeLimits = {
  ...defaultLimits,
  maxBytes: 256 * 1024 * 1024,
  maxBinLength: 256 * 1024 * 1024,
};

/** A Logic service's limits with the protocol defaults filled in. */
export function logicLimits(service: LogicService): Required<LogicLimits> {
  return { ...DEFAULT_LOGIC_LIMITS, ...service.limits };
}

// ---- Schema (PROTOCOL.md §2.1) --------------------------------------------------------------

const NAME = APP_NAME;
const SEMVER = /^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$/;
const SHA256 = /^[0-9a-f]{64}$/;
const PATH_CHARS = /^[A-Za-z0-9._/-]{1,255}$/;
const EXPORT_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,63}$/;
const ABI_EXPORTS = new Set(['brume_alloc', 'brume_free']);

const name = z.string().regex(NAME, { error: 'must match [a-z][a-z0-9-]{0,63}' });

/** Bundle-relative file paths; `.`/`..`/empty segments are refused so one file has one path. */
export function isBundlePath(path: string): boolean {
  if (!PATH_CHARS.test(path)) return false;
  return path.split('/').every((s) => s !== '' && s !== '.' && s !== '..');
}

const filePath = z.string().refine(isBundlePath, {
  error: 'must be a relative path of [A-Za-z0-9._/-] (at most 255), without "." or ".." segments',
});

const fileEntry = z.strictObject({
  sha256: z.string().regex(SHA256, { error: 'must be 64 lowercase hex digits' }),
  size: z.int().min(0),
});

const tensorSpec = z.strictObject({
  name: z.string().min(1).max(256),
  type: z.enum(['float32', 'int32', 'int64', 'uint8', 'bool']),
  dims: z.array(z.int().min(-1)).max(16),
});

const logicService = z.strictObject({
  kind: z.literal('logic'),
  file: filePath,
  rpcs: z
    .array(
      z
        .string()
        .regex(EXPORT_NAME, { error: 'must be a wasm export name [A-Za-z_][A-Za-z0-9_]{0,63}' })
        .refine((s) => !ABI_EXPORTS.has(s), { error: 'is an ABI export, not an RPC' }),
    )
    .min(1, { error: 'must list at least one exported function (the first is the default)' })
    .max(256),
  limits: z
    .strictObject({
      timeoutMs: z.int().min(1).max(600_000).optional(),
      memoryMiB: z.int().min(1).max(4096).optional(),
    })
    .optional(),
});

const variant = z.strictObject({
  file: filePath,
  accuracy: z.number().min(0).max(1),
  latencyMs: z.number().min(0),
  params: z.int().min(0),
  weights: z.enum(['trained', 'random']),
  measured: z.string().min(1, { error: 'must say how the figures were measured' }).max(1024),
});

const modelService = z.strictObject({
  kind: z.literal('model'),
  task: z.string().min(1).max(128),
  inputs: z.array(tensorSpec).min(1).max(64),
  outputs: z.array(tensorSpec).min(1).max(64),
  variants: z
    .record(name, variant)
    .refine((v) => Object.keys(v).length > 0, { error: 'must hold at least one variant' }),
});

const service = z.discriminatedUnion('kind', [logicService, modelService]);

const manifestSchema = z
  .strictObject({
    brume: z.literal(1),
    name,
    version: z.string().regex(SEMVER, { error: 'must be semver MAJOR.MINOR.PATCH, e.g. 1.0.0' }),
    description: z.string().max(4096).optional(),
    files: z.record(filePath, fileEntry),
    services: z
      .record(name, service)
      .refine((s) => Object.keys(s).length > 0, { error: 'must hold at least one service' }),
    demos: z
      .array(
        z.strictObject({
          title: z.string().min(1).max(128),
          service: name,
          rpc: z.string().max(64).optional(),
          input: z.unknown().refine((v) => JSON.stringify(v ?? null).length <= 64 * 1024, {
            error: 'a demo input is at most 64 KiB of JSON',
          }),
        }),
      )
      .max(16)
      .optional(),
  })
  .superRefine((m, ctx) => {
    const listed = (file: string, path: PropertyKey[]) => {
      if (!Object.hasOwn(m.files, file)) {
        ctx.addIssue({ code: 'custom', path, message: `"${file}" is not listed in files` });
      }
    };
    (m.demos ?? []).forEach((d, i) => {
      if (!Object.hasOwn(m.services, d.service)) {
        ctx.addIssue({
          code: 'custom',
          path: ['demos', i, 'service'],
          message: `no service "${d.service}"`,
        });
      }
    });
    for (const [sname, s] of Object.entries(m.services)) {
      if (s.kind === 'logic') {
        listed(s.file, ['services', sname, 'file']);
        unique(s.rpcs, ['services', sname, 'rpcs'], ctx);
      } else {
        unique(
          s.inputs.map((t) => t.name),
          ['services', sname, 'inputs'],
          ctx,
        );
        unique(
          s.outputs.map((t) => t.name),
          ['services', sname, 'outputs'],
          ctx,
        );
        for (const [vname, v] of Object.entries(s.variants)) {
          listed(v.file, ['services', sname, 'variants', vname, 'file']);
        }
      }
    }
  });

function unique(names: string[], path: PropertyKey[], ctx: z.RefinementCtx): void {
  const seen = new Set<string>();
  names.forEach((n, i) => {
    if (seen.has(n)) ctx.addIssue({ code: 'custom', path: [...path, i], message: `"${n}" twice` });
    seen.add(n);
  });
}

// The schema's output must be exactly the hand-written types (which read better in editors).
const _typeCheck: z.ZodType<Manifest> = manifestSchema;

// ---- Parsing --------------------------------------------------------------------------------

/**
 * Validates `json` against PROTOCOL.md §2.1 and returns it typed. Unknown fields are refused so a
 * typo (`limit` for `limits`) is reported instead of ignored. Defaults are not filled in: use
 * `logicLimits`. Throws ManifestError naming every bad field, e.g.
 * `services.model.variants.small.accuracy must be at most 1 (got 1.5)`.
 */
export function parseManifest(json: unknown): Manifest {
  // zod drops an own "__proto__" key silently; refuse it so nothing vanishes unreported.
  const proto = findProtoKey(json, []);
  if (proto) throw new ManifestError(`${formatPath(proto)}: "__proto__" is not allowed as a key`);
  const r = manifestSchema.safeParse(json, { reportInput: true });
  if (r.success) return r.data as Manifest;
  throw new ManifestError(describeIssues(r.error, [], { whole: 'manifest' }), { cause: r.error });
}

function findProtoKey(value: unknown, path: PropertyKey[]): PropertyKey[] | undefined {
  if (value === null || typeof value !== 'object' || path.length > 8) return undefined;
  for (const key of Object.keys(value)) {
    if (key === '__proto__') return [...path, key];
    const found = findProtoKey((value as Record<string, unknown>)[key], [...path, key]);
    if (found) return found;
  }
  return undefined;
}

// ---- Hashing and verification ---------------------------------------------------------------

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));

/** Lowercase hex sha256 of `bytes` (WebCrypto). */
export async function sha256Hex(bytes: Uint8Array): Promise<string> {
  // WebCrypto refuses views of a SharedArrayBuffer, which a cross-origin isolated tab may hold.
  const data =
    bytes.buffer instanceof ArrayBuffer ? (bytes as Uint8Array<ArrayBuffer>) : bytes.slice();
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', data));
  let out = '';
  for (const b of digest) out += HEX[b];
  return out;
}

/**
 * A content hash of the manifest itself: sha256 of its JSON with keys sorted at every level, so
 * the same manifest hashes the same whatever the key order it arrived in.
 */
export async function manifestSha256(manifest: Manifest): Promise<string> {
  return sha256Hex(new TextEncoder().encode(canonicalJson(manifest)));
}

function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const keys = Object.keys(value)
      .filter((k) => (value as Record<string, unknown>)[k] !== undefined)
      .sort();
    const body = keys.map(
      (k) => `${JSON.stringify(k)}:${canonicalJson((value as Record<string, unknown>)[k])}`,
    );
    return `{${body.join(',')}}`;
  }
  return JSON.stringify(value);
}

/** Throws BundleIntegrityError unless `bytes` is the file `path` of `manifest` (size and sha256). */
export async function verifyFile(
  manifest: Manifest,
  path: string,
  bytes: Uint8Array,
): Promise<void> {
  const entry = listedEntry(manifest, path);
  checkSize(manifest, path, entry, bytes);
  const actual = await sha256Hex(bytes);
  if (actual !== entry.sha256) {
    throw new BundleIntegrityError(
      path,
      `${path}: sha256 is ${actual} but ${label(manifest)} lists ${entry.sha256}; the file is corrupt or was altered`,
    );
  }
}

function listedEntry(manifest: Manifest, path: string): FileEntry {
  const entry = Object.hasOwn(manifest.files, path) ? manifest.files[path] : undefined;
  if (!entry) {
    throw new BundleIntegrityError(path, `${path}: not listed in the files of ${label(manifest)}`);
  }
  return entry;
}

function checkSize(manifest: Manifest, path: string, entry: FileEntry, bytes: Uint8Array): void {
  if (bytes.byteLength !== entry.size) {
    throw new BundleIntegrityError(
      path,
      `${path}: ${bytes.byteLength} bytes but ${label(manifest)} lists ${entry.size}`,
    );
  }
}

function label(m: Manifest): string {
  return `${m.name}@${m.version}`;
}

// ---- Bundles (PROTOCOL.md §2.2) -------------------------------------------------------------

/**
 * Fills `files` (sha256 + size) from the file bytes, for packing tools; `draft.files`, if any, is
 * replaced. The result is validated like any manifest.
 */
export async function buildManifest(
  draft: ManifestDraft,
  files: Record<string, Uint8Array>,
): Promise<Manifest> {
  const entries: Record<string, FileEntry> = {};
  for (const path of Object.keys(files).sort()) {
    const bytes = files[path]!;
    entries[path] = { sha256: await sha256Hex(bytes), size: bytes.byteLength };
  }
  return parseManifest({ ...draft, files: entries });
}

/**
 * Encodes a bundle. Checks what can be checked without hashing (every listed file present with
 * its size, nothing unlisted); hashes are checked by `unpackBundle` on the other side.
 */
export function packBundle(manifest: Manifest, files: Record<string, Uint8Array>): Uint8Array {
  const m = parseManifest(manifest);
  checkFileSet(m, files);
  return encode({ format: BUNDLE_FORMAT, manifest: m, files });
}

/**
 * Decodes and verifies a bundle: the format, the manifest, then every file (present, listed, size,
 * sha256). Throws CodecError for bytes that are not a bundle, ManifestError, or
 * BundleIntegrityError naming the first bad file. The returned files are views into `bytes`.
 */
export async function unpackBundle(
  bytes: Uint8Array,
  limits: Partial<DecodeLimits> = {},
): Promise<Bundle> {
  const raw = decode(bytes, { ...bundleLimits, ...limits });
  if (!isMap(raw)) {
    throw new CodecError(`not a Brume bundle: expected a MessagePack map, got ${typeName(raw)}`);
  }
  if (raw.format !== BUNDLE_FORMAT) {
    throw new CodecError(
      `not a Brume bundle: format is ${show(raw.format)}, expected "${BUNDLE_FORMAT}"`,
    );
  }
  const manifest = parseManifest(raw.manifest);
  if (!isMap(raw.files)) {
    throw new CodecError(`not a Brume bundle: "files" must be a map, got ${typeName(raw.files)}`);
  }
  const files: Record<string, Uint8Array> = {};
  for (const [path, value] of Object.entries(raw.files)) {
    if (!(value instanceof Uint8Array)) {
      throw new BundleIntegrityError(path, `${path}: must be bin (bytes), got ${typeName(value)}`);
    }
    files[path] = value;
  }
  checkFileSet(manifest, files);
  for (const path of Object.keys(manifest.files)) await verifyFile(manifest, path, files[path]!);
  return { manifest, files };
}

function checkFileSet(manifest: Manifest, files: Record<string, Uint8Array>): void {
  for (const [path, entry] of Object.entries(manifest.files)) {
    const bytes = Object.hasOwn(files, path) ? files[path] : undefined;
    if (!bytes) {
      throw new BundleIntegrityError(
        path,
        `${path}: listed in ${label(manifest)} but missing from the bundle`,
      );
    }
    checkSize(manifest, path, entry, bytes);
  }
  for (const path of Object.keys(files)) {
    if (!Object.hasOwn(manifest.files, path)) {
      throw new BundleIntegrityError(
        path,
        `${show(path)}: in the bundle but not listed in the files of ${label(manifest)}`,
      );
    }
  }
}

function isMap(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v) && !(v instanceof Uint8Array);
}
