/**
 * The installed package's root (this repository when run from source): where the built page,
 * the sample apps, the Logic SDK and the packaged models are. This file sits one folder below
 * the root both as source (relay/) and bundled into the package's lib/brume.js (lib/), so the
 * same relative URL is right in both; code in deeper folders imports it from here.
 */
import { fileURLToPath } from 'node:url';

export const packageRoot = fileURLToPath(new URL('..', import.meta.url));
