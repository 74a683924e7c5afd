/**
 * The versions of each app a node holds (PROTOCOL.md §5.7): the current one, which the relay's
 * announcements change, and older ones while calls run on them or a caller pins them; each
 * dropped after a grace period, and at once past a bound, with its workers and files.
 * @example const held = new HeldVersions(source, loader, {}); await held.announce('greet', '1.0.1');
 *          const m = await held.resolve('greet', '^1.0.0');
 */
import { NotFoundError, ProtocolError } from '../errors';
import { type Manifest, parseManifest } from '../manifest';
import { isAppVersion } from '../names';
import { inRange, MAX_HELD_VERSIONS, noVersion, pickVersion } from '../versions';
import type { AppSource, Loader } from './loader';

export interface HeldOptions {
  /** How long a version no longer current is kept after its last call; default 60 000 ms. */
  versionGraceMs?: number;
  /** Versions of one app kept at most, the current one included; default 3 (at most 8). */
  maxVersions?: number;
}

/** One version of an app this node holds: its manifest, calls running on it, its eviction. */
export interface Held {
  manifest: Manifest;
  running: number;
  usedAt: number;
  timer?: ReturnType<typeof setTimeout> | undefined;
}

export class HeldVersions {
  /** The current manifest of each app, as this node knows it. */
  private readonly manifests = new Map<string, Manifest>();
  /** Every version held, by app and version: the current one and old ones still in use. */
  private readonly held = new Map<string, Map<string, Held>>();
  /** A relay's announcement being fetched, by app: calls wait for it. */
  private readonly updates = new Map<string, Promise<void>>();
  /** The last version the relay announced, by app: a slower fetch of an earlier one loses. */
  private readonly announced = new Map<string, string>();

  constructor(
    private readonly source: AppSource,
    private readonly loader: Loader,
    private readonly options: HeldOptions,
  ) {}

  /** The current manifests. */
  apps(): Manifest[] {
    return [...this.manifests.values()];
  }

  /** The current manifest of `app`, or NotFoundError naming the apps known here. */
  current(app: string): Manifest {
    const m = this.manifests.get(app);
    if (!m) {
      throw new NotFoundError(
        `app "${app}" is not deployed here (known: ${[...this.manifests.keys()].join(', ') || 'none'})`,
      );
    }
    return m;
  }

  /**
   * Makes a verified manifest the app's current version; files are fetched when first needed.
   * The version it replaces finishes the calls running on it and is dropped after a grace period.
   */
  install(manifest: Manifest): void {
    const old = this.manifests.get(manifest.name);
    if (old && old.version === manifest.version) return;
    this.manifests.set(manifest.name, manifest);
    this.hold(manifest);
    this.sweep(manifest.name);
  }

  /** Fetches and installs `app` when this node does not know it yet (deployed after start). */
  async ensure(app: string): Promise<void> {
    await this.updates.get(app)?.catch(() => {});
    if (!this.manifests.has(app)) this.install(parseManifest(await this.source.manifest(app)));
  }

  /**
   * The relay says `version` is now `app`'s current version (a deploy or a rollback): calls that
   * start from now on wait for its manifest and run it; calls running finish on theirs.
   */
  announce(app: string, version: string): Promise<void> {
    this.announced.set(app, version);
    const update = this.fetchVersion(app, version).then((m) => {
      if (this.announced.get(app) === version) this.install(m);
    });
    this.updates.set(app, update);
    const done = () => {
      if (this.updates.get(app) === update) this.updates.delete(app);
    };
    update.then(done, done);
    return update;
  }

  /**
   * Catches up with versions made current while this node was not listening (at each join: an
   * announcement sent while it was away never reached it). Answers the apps it updates.
   */
  async sync(): Promise<string[]> {
    const stale: Promise<void>[] = [];
    const apps: string[] = [];
    for (const { name, version } of await this.source.list()) {
      const known = this.announced.get(name) ?? this.manifests.get(name)?.version;
      if (version === undefined || known === undefined || known === version) continue;
      apps.push(name);
      stale.push(this.announce(name, version));
    }
    await Promise.all(stale);
    return apps;
  }

  /** Versions held of each app, the current one first (what the heartbeat reports). */
  versions(): Record<string, string[]> {
    const out: Record<string, string[]> = {};
    for (const [app, held] of this.held) {
      const current = this.manifests.get(app)?.version;
      const rest = [...held.keys()].filter((v) => v !== current);
      out[app] = (current ? [current, ...rest] : rest).slice(0, MAX_HELD_VERSIONS);
    }
    return out;
  }

  /** The manifest a call with `range` runs here (core/versions.ts), fetched when not held. */
  async resolve(app: string, range: string | undefined): Promise<Manifest> {
    await this.ensure(app);
    const current = this.current(app);
    if (range === undefined || inRange(current.version, range)) return current;
    // An exact version (what the relay sends with every call it forwards) needs no list.
    if (isAppVersion(range)) return this.fetchVersion(app, range);
    let deployed: string[];
    try {
      deployed = await this.source.versions(app);
    } catch {
      // Cut off from the relay: the versions held here are all there is.
      deployed = [...(this.held.get(app)?.keys() ?? [])];
    }
    const version = pickVersion(range, current.version, deployed);
    if (version === undefined) throw noVersion(app, range, deployed);
    return this.fetchVersion(app, version);
  }

  /** Version `version` of `app`: held, or fetched and checked to be that app and version. */
  private async fetchVersion(app: string, version: string): Promise<Manifest> {
    const held = this.held.get(app)?.get(version);
    if (held) return held.manifest;
    const m = parseManifest(await this.source.manifest(app, version));
    if (m.name !== app || m.version !== version) {
      throw new ProtocolError(
        `asked for ${app}@${version}, the source answered ${m.name}@${m.version}`,
      );
    }
    return m;
  }

  /**
   * Runs `work` on version `m`, held (never dropped) until it settles; then the app's versions
   * no call runs are swept.
   */
  async runOn<T>(m: Manifest, work: () => Promise<T>): Promise<T> {
    const h = this.hold(m);
    h.running++;
    try {
      return await work();
    } finally {
      h.running--;
      h.usedAt = Date.now();
      this.sweep(m.name);
    }
  }

  /** Keeps `m` as a version held (no eviction while it is used). */
  private hold(m: Manifest): Held {
    let versions = this.held.get(m.name);
    if (!versions) {
      versions = new Map();
      this.held.set(m.name, versions);
    }
    let h = versions.get(m.version);
    if (!h) {
      h = { manifest: m, running: 0, usedAt: Date.now() };
      versions.set(m.version, h);
    }
    clearTimeout(h.timer);
    h.timer = undefined;
    return h;
  }

  /**
   * Drops versions of `app` no call runs that are not current: the least recently used at once
   * while more than `maxVersions` are held, the others after the grace period.
   */
  sweep(app: string): void {
    const versions = this.held.get(app);
    if (!versions) return;
    const current = this.manifests.get(app)?.version;
    const idle = [...versions.values()]
      .filter((h) => h.running === 0 && h.manifest.version !== current)
      .sort((a, b) => a.usedAt - b.usedAt);
    const max = Math.min(MAX_HELD_VERSIONS, Math.max(1, this.options.maxVersions ?? 3));
    let over = versions.size - max;
    for (const h of idle) {
      if (over-- > 0) this.drop(h);
      else h.timer ??= setTimeout(() => this.drop(h), this.options.versionGraceMs ?? 60_000);
    }
  }

  /** Forgets a version: its workers stop, its files, modules and models no other version names. */
  private drop(h: Held): void {
    const { name, version } = h.manifest;
    const versions = this.held.get(name);
    if (versions?.get(version) !== h || h.running > 0) return;
    clearTimeout(h.timer);
    versions.delete(version);
    this.loader.unload(name, version);
    const keep = [...this.held.values()].flatMap((v) => [...v.values()].map((x) => x.manifest));
    this.loader.forget(h.manifest, keep);
  }
  /** Stops every eviction timer and every version's workers (the node closes). */
  close(): void {
    for (const versions of this.held.values())
      for (const h of versions.values()) clearTimeout(h.timer);
    for (const app of this.held.keys()) this.loader.unload(app);
  }
}
