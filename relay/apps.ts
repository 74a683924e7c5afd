/**
 * The apps a relay serves, over its Store: deploying a bundle (verified, one deploy at a time, a
 * newer version only becomes current), making a version current (an admin's rollback), and the
 * current manifests the hub asks for on every scheduling decision, read once per deploy.
 * @example const apps = openApps(store, { bodyLimit });
 *          const { name, version, created } = await apps.deploy(bytes);
 */

import satisfies from 'semver/functions/satisfies.js';
import type { AppSummary, ServiceSummary } from '../core/api';
import { ConflictError, NotFoundError } from '../core/errors';
import { type Manifest, manifestSha256, type Service, unpackBundle } from '../core/manifest';
import { isAppName, isAppVersion } from '../core/names';
import { serial } from '../core/serial';
import { noVersion, pickVersion } from '../core/versions';
import { checkCode } from './bundle-check';
import { compareSemver, type Store } from './store';

export interface DeployResult {
  name: string;
  version: string;
  manifestSha256: string;
  /** false when this exact version was already deployed. */
  created: boolean;
  /** Whether it is now the current version: a deploy never makes an older version current. */
  current: boolean;
  /** The app's current version after the deploy. */
  currentVersion: string;
}

export interface Apps {
  /**
   * Verifies a bundle (its files, and its code against its manifest: relay/bundle-check.ts) and
   * stores it. `may(name)` throws when the caller may not deploy that app
   * (the name is known only once the bundle is read).
   */
  deploy(bundle: Uint8Array, may?: (name: string) => void): Promise<DeployResult>;
  /** Makes a deployed version current. */
  setCurrent(name: string, version: string): Promise<{ name: string; version: string }>;
  /** The current manifest of `name` (cached until the next deploy), or undefined. */
  current(name: string): Promise<Manifest | undefined>;
  /** The current manifest of `name`, or NotFoundError for a caller. */
  find(name: string): Promise<Manifest>;
  /** Version `version` of `name`, or NotFoundError for a caller. */
  version(name: string, version: string): Promise<Manifest>;
  /**
   * The manifest a call asking `range` (`qos.version`) runs: the current one when it satisfies
   * the range, else the highest deployed version that does (core/versions.ts); undefined for an
   * app not deployed; InputError naming `qos.version` when no version satisfies it.
   */
  resolve(name: string, range: string | undefined): Promise<Manifest | undefined>;
  /** Calls `listener` whenever an app's current version changes (a deploy, a rollback). */
  onCurrent(listener: (name: string, version: string) => void): () => void;
  /**
   * Forgets the cached current manifest of `name` (of every app without one): another relay of
   * a cluster changed it, or news of such changes may have been missed.
   */
  forget(name?: string): void;
}

export function openApps(
  store: Store,
  /**
   * `stored`: told of every manifest deployed or read from the store (its files are app files,
   * which tabs fetch: an app the store got another way, restored or planted, counts once read).
   */
  o: { bodyLimit: number; stored?: (manifest: Manifest) => void },
): Apps {
  // Deploys one at a time, so two uploads of one version cannot both pass the conflict check.
  const oneAtATime = serial();
  // Current manifests, read once per deploy: the hub asks for one on every scheduling decision.
  const manifests = new Map<string, Promise<Manifest | undefined>>();
  const listeners = new Set<(name: string, version: string) => void>();
  const changed = (name: string, version: string) => {
    for (const l of listeners) l(name, version);
  };

  /** Version `version` of `name`; undefined for names and versions that cannot be stored. */
  async function stored(name: string, version: string): Promise<Manifest | undefined> {
    const valid = isAppName(name) && isAppVersion(version);
    return seen(valid ? await store.apps.get(name, version) : undefined);
  }
  function seen(m: Manifest | undefined): Manifest | undefined {
    if (m) o.stored?.(m);
    return m;
  }

  async function deployNow(bytes: Uint8Array, may?: (name: string) => void) {
    const { manifest, files } = await unpackBundle(bytes, {
      maxBytes: o.bodyLimit,
      maxBinLength: o.bodyLimit,
    });
    const { name, version } = manifest;
    may?.(name);
    // The code must be what the manifest says, or calls fail only when they run.
    await checkCode(manifest, files);
    await checkUses(manifest);
    const sha = await manifestSha256(manifest);
    const existing = await store.apps.get(name, version);
    if (existing && (await manifestSha256(existing)) !== sha) {
      throw new ConflictError(
        `${name}@${version} is already deployed with different content: bump the version to deploy a change`,
      );
    }
    // Blobs before the manifest: a recorded manifest never names a file the store lacks.
    for (const [path, entry] of Object.entries(manifest.files)) {
      await store.blobs.put(entry.sha256, files[path]!);
    }
    // Only a newer (or the same) version becomes current: rolling back is an admin's decision.
    const before = await store.apps.current(name);
    const current = !before || compareSemver(version, before.version) >= 0;
    await store.apps.put(manifest, { current });
    o.stored?.(manifest);
    manifests.delete(name);
    if (current && before?.version !== version) changed(name, version);
    const currentVersion = current ? version : before!.version;
    return { name, version, manifestSha256: sha, created: !existing, current, currentVersion };
  }

  /** Every app `manifest` uses is deployed, its current version within the range given. */
  async function checkUses(manifest: Manifest): Promise<void> {
    for (const [used, range] of Object.entries(manifest.uses ?? {})) {
      const current = await store.apps.current(used);
      if (!current) {
        throw new ConflictError(
          `uses.${used}: no app "${used}" is deployed here; deploy it before ${manifest.name}`,
        );
      }
      if (!satisfies(current.version, range)) {
        const versions = await store.apps.versions(used);
        throw new ConflictError(
          `uses.${used}: ${used}@${current.version} is current here, outside "${range}" (deployed: ${versions.join(', ')}); widen the range, or deploy (or make current) a version of ${used} within it`,
        );
      }
    }
  }

  const apps: Apps = {
    deploy: (bytes, may) => oneAtATime(() => deployNow(bytes, may)),
    setCurrent: (name, version) =>
      oneAtATime(async () => {
        const manifest = await stored(name, version);
        if (!manifest) {
          throw new NotFoundError(
            `no version ${version.slice(0, 32)} of app "${name}" (GET /api/apps/${name}/versions)`,
          );
        }
        const before = await store.apps.current(name);
        await store.apps.put(manifest);
        manifests.delete(name);
        if (before?.version !== version) changed(name, version);
        return { name, version };
      }),
    current(name) {
      let m = manifests.get(name);
      if (!m) {
        m = store.apps.current(name).then(seen);
        manifests.set(name, m);
        // Only apps that exist are remembered: names from the network are not a way to fill memory.
        // A store that could not answer (Redis unreachable) is not "no such app": the caller gets
        // its typed error (E_UNAVAILABLE), and the next call asks again.
        void m.then(
          (found) => found || manifests.delete(name),
          () => manifests.delete(name),
        );
      }
      return m;
    },
    async find(name) {
      const manifest = seen(isAppName(name) ? await store.apps.current(name) : undefined);
      if (!manifest) throw new NotFoundError(`no app named "${name}" (GET /api/apps lists them)`);
      return manifest;
    },
    async version(name, version) {
      const manifest = await stored(name, version);
      if (!manifest) throw new NotFoundError(`no version ${version} of app "${name}"`);
      return manifest;
    },
    async resolve(name, range) {
      const current = await apps.current(name);
      if (!current || range === undefined) return current;
      const deployed = await store.apps.versions(name);
      const version = pickVersion(range, current.version, deployed);
      if (version === undefined) throw noVersion(name, range, deployed);
      return version === current.version ? current : stored(name, version);
    },
    onCurrent(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    forget(name) {
      if (name === undefined) manifests.clear();
      else manifests.delete(name);
    },
  };
  return apps;
}

/** What `GET /api/apps` shows of an app: its services without file names or hashes. */
export async function summarize(manifest: Manifest): Promise<AppSummary> {
  const services: Record<string, ServiceSummary> = {};
  for (const [name, s] of Object.entries(manifest.services)) services[name] = summarizeService(s);
  return {
    name: manifest.name,
    version: manifest.version,
    ...(manifest.description !== undefined && { description: manifest.description }),
    services,
    manifestSha256: await manifestSha256(manifest),
  };
}

function summarizeService(s: Service): ServiceSummary {
  if (s.kind === 'logic') return { kind: 'logic', rpcs: s.rpcs };
  const variants: Extract<ServiceSummary, { kind: 'model' }>['variants'] = {};
  for (const [id, v] of Object.entries(s.variants)) {
    variants[id] = {
      accuracy: v.accuracy,
      latencyMs: v.latencyMs,
      params: v.params,
      weights: v.weights,
    };
  }
  return { kind: 'model', task: s.task, variants };
}
