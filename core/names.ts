/**
 * The names Brume's wire formats, manifests and HTTP paths share, each written once: app names,
 * app versions and content hashes. A name from the network is checked against these before it
 * becomes a path, a key or a log line.
 * @example if (!isAppName(req.params.app)) throw new InputError('…');
 */

/** An app (and service) name: a lowercase letter, then up to 63 of [a-z0-9-]. */
export const APP_NAME = /^[a-z][a-z0-9-]{0,63}$/;
/** The rule APP_NAME checks, as refusals say it. */
export const APP_NAME_RULE = '[a-z][a-z0-9-]{0,63}';

/** An app version as the relay stores it: MAJOR.MINOR.PATCH. */
export const APP_VERSION = /^\d+\.\d+\.\d+$/;

/** A sha256 as Brume writes one: 64 lowercase hex digits. */
export const SHA256_HEX = /^[0-9a-f]{64}$/;

export const isAppName = (name: string): boolean => APP_NAME.test(name);
export const isAppVersion = (version: string): boolean => APP_VERSION.test(version);
export const isSha256 = (hex: string): boolean => SHA256_HEX.test(hex);
