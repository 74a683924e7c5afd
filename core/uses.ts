/**
 * Apps that use other apps (PROTOCOL.md §3.3): a Logic's `call` to `"<app>/<service>"` reaches a
 * service of another app, which its manifest must name in `uses` with a semver range. The callee
 * runs as itself (its own manifest, context and limits); only the name is resolved here.
 * @example const t = usedService(manifest, 'digits/model'); // { app: 'digits', service: 'model', range: '^1.0.0' }
 */
import { ForbiddenError } from './errors';
import type { Manifest } from './manifest';

export interface UsedService {
  app: string;
  service: string;
  /** The range the caller's manifest gives for `app`. */
  range: string;
}

/**
 * The app and service a Logic of `caller` names with `"<app>/<service>"`; undefined for a plain
 * service name (one of its own app). Throws ForbiddenError when `caller` does not use that app.
 */
export function usedService(caller: Manifest, name: string): UsedService | undefined {
  const slash = name.indexOf('/');
  if (slash < 0) return undefined;
  const app = name.slice(0, slash);
  const service = name.slice(slash + 1);
  const range = caller.uses && Object.hasOwn(caller.uses, app) ? caller.uses[app] : undefined;
  if (range === undefined) {
    throw new ForbiddenError(
      `app "${caller.name}" called "${name.slice(0, 130)}", but does not use app "${app.slice(0, 64)}": name it in its manifest's uses (e.g. "uses": { "${app.slice(0, 64)}": "^1.0.0" })`,
    );
  }
  return { app, service, range };
}
