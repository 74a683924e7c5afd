/**
 * App manifests and `.brume` bundles (PROTOCOL.md §2): parse and validate a manifest, verify files
 * against it, pack and unpack bundles. Isomorphic: the relay verifies on deploy, nodes on load.
 *
 * @example
 * const manifest = await buildManifest(draft, { 'logic/classify.wasm': wasmBytes });
 * const bytes = packBundle(manifest, { 'logic/classify.wasm': wasmBytes });
 * const { files } = await unpackBundle(bytes); // throws BundleIntegrityError naming a bad file
 */
import { type DecodeLimits, decode, defaultLimits, encode } from './codec';
import { BundleIntegrityError, CodecError, ManifestError } from './errors';
import { describeIssues, formatPath, show, typeName } from './issues';
import {
  type FileEntry,
  type Manifest,
  type ManifestDraft,
  manifestSchema,
} from './manifest-schema';

export {
  DEFAULT_LOGIC_LIMITS,
  type Demo,
  type ExitHead,
  type ExitRule,
  type FileEntry,
  isBundlePath,
  type LogicLimits,
  type LogicService,
  logicLimits,
  type Manifest,
  type ManifestDraft,
  type ModelService,
  type Service,
  type ServiceScale,
  type TensorSpec,
  type TensorType,
  type Tier,
  type Variant,
} from './manifest-schema';

export interface Bundle {
  manifest: Manifest;
  /** Bundle path → bytes; every file listed in `manifest.files`, verified. */
  files: Record<string, Uint8Array>;
}

export const BUNDLE_FORMAT = 'brume-bundle/1';

export const bundleLimits: DecodeLimits = {
  ...defaultLimits,
  maxBytes: 256 * 1024 * 1024,
  maxBinLength: 256 * 1024 * 1024,
};

/** A Logic service's limits with the protocol defaults filled in. */

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
