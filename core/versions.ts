/**
 * Which version of an app a call runs (PROTOCOL.md §5.7), one rule for the relay and every node:
 * a call without `qos.version` runs the app's current version; a call with one (an exact version
 * or a semver range) runs the current version when it satisfies the range, else the highest
 * deployed version that does. Ranges are the `semver` package's (`1.0.0`, `^1.2.0`, `~1.0`,
 * `>=1.0.0 <2`).
 * @example pickVersion('^1.0.0', '2.0.0', ['1.0.0', '1.0.1', '2.0.0']); // '1.0.1'
 */

import satisfies from 'semver/functions/satisfies.js';
import maxSatisfying from 'semver/ranges/max-satisfying.js';
import validRange from 'semver/ranges/valid.js';
import { InputError } from './errors';
import { APP_VERSION } from './names';

/** A `qos.version` is at most this long: a range, not a document. */
export const MAX_VERSION_RANGE = 128;

/** Versions of one app a node reports holding at most (its heartbeat's `versions`). */
export const MAX_HELD_VERSIONS = 8;

/** Whether `range` is a semver range Brume accepts in `qos.version`. */
export function isVersionRange(range: string): boolean {
  return range.length > 0 && range.length <= MAX_VERSION_RANGE && validRange(range) !== null;
}

/** Whether app version `version` (MAJOR.MINOR.PATCH) satisfies `range`. */
export function inRange(version: string, range: string): boolean {
  return APP_VERSION.test(version) && satisfies(version, range);
}

/**
 * The version a call with `range` runs: `current` when it satisfies it (or no range was asked),
 * else the highest of `deployed` that does; undefined when none does.
 */
export function pickVersion(
  range: string | undefined,
  current: string,
  deployed: readonly string[],
): string | undefined {
  if (range === undefined || inRange(current, range)) return current;
  return (
    maxSatisfying(
      deployed.filter((v) => APP_VERSION.test(v)),
      range,
    ) ?? undefined
  );
}

/** The refusal of a `qos.version` no deployed version satisfies. */
export function noVersion(app: string, range: string, deployed: readonly string[]): InputError {
  const list = deployed.slice(-8).join(', ') || 'none';
  return new InputError(
    `qos.version "${range}" matches no deployed version of app "${app}" (deployed: ${list})`,
  );
}
