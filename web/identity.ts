/**
 * This tab's node identity, kept in IndexedDB. Tabs of one browser profile share IndexedDB, so
 * each open tab takes the first identity slot no other tab holds (a Web Lock per slot): two tabs
 * are two nodes, and a reload gets its slot, and so its id, back.
 * @example const me = await tabIdentity(); me.id // 32 hex, stable across reloads
 */
import { createStore, get, set } from 'idb-keyval';
import { type Identity, type KeyPair, type KeyStore, loadOrCreateIdentity } from '../core/identity';

const keys = createStore('brume-identity', 'keys');

export const idbKeyStore: KeyStore = {
  get: (name) => get<KeyPair>(name, keys),
  set: (name, pair) => set(name, pair, keys),
};

export async function tabIdentity(maxSlots = 64): Promise<Identity> {
  for (let slot = 0; slot < maxSlots; slot++) {
    if (await holdLock(`brume-identity-${slot}`)) {
      return loadOrCreateIdentity(idbKeyStore, `node-${slot}`);
    }
  }
  // Every slot taken: a throwaway identity for this tab only.
  return loadOrCreateIdentity(idbKeyStore, `node-${crypto.randomUUID()}`);
}

/** Takes `name` for the life of this tab, if no other tab holds it. */
function holdLock(name: string): Promise<boolean> {
  return new Promise((resolve) => {
    void navigator.locks.request(name, { ifAvailable: true }, (lock) => {
      resolve(lock !== null);
      // Held until the tab goes away.
      return lock ? new Promise<void>(() => {}) : undefined;
    });
  });
}
