/**
 * Node identity: an ECDSA P-256 key pair whose private half never leaves WebCrypto, and an id
 * derived from the public key. Joining the relay is a challenge–response over a domain-separated
 * payload, so a signature made for one relay, nonce or role proves nothing anywhere else.
 * @example const me = await loadOrCreateIdentity(store, 'node');
 *          const sig = await signJoin(me, nonce, relayId, 'dew');
 *          await verifyJoin(me.publicKey, nonce, relayId, me.id, 'dew', sig) === true
 */
import {
  type AgreementKey,
  agreementKeyOf,
  agreementPayload,
  newAgreementPair,
} from './context/seal';
import { InputError } from './errors';

const algorithm = { name: 'ECDSA', namedCurve: 'P-256' } as const;
const signing = { name: 'ECDSA', hash: 'SHA-256' } as const;

/** WebCrypto's key types, named the same way under every lib (DOM, Node, core/env.d.ts). */
type Key = Parameters<typeof crypto.subtle.sign>[1];
export interface KeyPair {
  publicKey: Key;
  privateKey: Key;
}

/** Where a platform keeps key pairs: IndexedDB in a tab (CryptoKeys are structured-cloneable). */
export interface KeyStore {
  get(name: string): Promise<KeyPair | undefined>;
  set(name: string, pair: KeyPair): Promise<void>;
}

export interface Identity {
  /** 32 hex characters: the first 16 bytes of sha256(SPKI public key). */
  id: string;
  /** The SPKI public key, base64url. */
  publicKey: string;
  sign(data: Uint8Array): Promise<Uint8Array>;
  /**
   * The ECDH key private context values are sealed to (core/context/seal.ts), and this identity's
   * signature over it (`agreementPayload`).
   */
  agreement: AgreementKey & { signature: Uint8Array };
}

/** A KeyStore in memory: keys that live as long as the process (Node nodes, tests). */
export function memoryKeyStore(): KeyStore {
  const pairs = new Map<string, KeyPair>();
  return {
    get: async (name) => pairs.get(name),
    set: async (name, pair) => void pairs.set(name, pair),
  };
}

/** The identity kept under `name`, made on first use. The private key is not extractable. */
export async function loadOrCreateIdentity(store: KeyStore, name = 'node'): Promise<Identity> {
  let pair = await store.get(name);
  if (!pair) {
    pair = (await crypto.subtle.generateKey(algorithm, false, ['sign', 'verify'])) as KeyPair;
    await store.set(name, pair);
  }
  let agree = await store.get(`${name}/agreement`);
  if (!agree) {
    agree = await newAgreementPair();
    await store.set(`${name}/agreement`, agree);
  }
  const spki = new Uint8Array(await crypto.subtle.exportKey('spki', pair.publicKey));
  const privateKey = pair.privateKey;
  const sign = async (data: Uint8Array) =>
    new Uint8Array(await crypto.subtle.sign(signing, privateKey, view(data)));
  const agreement = await agreementKeyOf(agree);
  return {
    id: await idOfSpki(spki),
    publicKey: toBase64url(spki),
    sign,
    agreement: { ...agreement, signature: await sign(agreementPayload(agreement.publicKey)) },
  };
}

/** True when `signature` is `publicKey`'s vouching for `agreementKey`. */
export async function verifyAgreement(
  publicKey: string,
  agreementKey: Uint8Array,
  signature: Uint8Array,
): Promise<boolean> {
  try {
    return await verifySignature(publicKey, agreementPayload(agreementKey), signature);
  } catch {
    return false;
  }
}

/** The node id a public key (base64url SPKI) stands for; rejects what is not a P-256 key. */
export async function nodeIdOf(publicKey: string): Promise<string> {
  await importPublic(publicKey);
  return idOfSpki(fromBase64url(publicKey));
}

/** What a node signs to join: bound to the protocol, the relay, the nonce, the id and the role. */
export function joinPayload(nonce: Uint8Array, relayId: string, nodeId: string, role: string) {
  const head = new TextEncoder().encode(`brume-join/1\n${relayId}\n${nodeId}\n${role}\n`);
  const out = new Uint8Array(head.length + nonce.length);
  out.set(head);
  out.set(nonce, head.length);
  return out;
}

export function signJoin(
  identity: Identity,
  nonce: Uint8Array,
  relayId: string,
  role: string,
): Promise<Uint8Array> {
  return identity.sign(joinPayload(nonce, relayId, identity.id, role));
}

/** True when `signature` is `publicKey`'s answer to this challenge; false for anything else. */
export async function verifyJoin(
  publicKey: string,
  nonce: Uint8Array,
  relayId: string,
  claimedNodeId: string,
  role: string,
  signature: Uint8Array,
): Promise<boolean> {
  try {
    if ((await nodeIdOf(publicKey)) !== claimedNodeId) return false;
    return await verifySignature(
      publicKey,
      joinPayload(nonce, relayId, claimedNodeId, role),
      signature,
    );
  } catch {
    return false;
  }
}

export async function verifySignature(
  publicKey: string,
  data: Uint8Array,
  signature: Uint8Array,
): Promise<boolean> {
  return crypto.subtle.verify(signing, await importPublic(publicKey), view(signature), view(data));
}

/**
 * Nonces the relay handed out and not yet answered: each answers one join, within `ttlMs`.
 * Bounded, so a flood of connections that never join cannot grow it without limit.
 */
export class NonceBook {
  private readonly open = new Map<string, number>();
  constructor(
    private readonly ttlMs = 30_000,
    private readonly max = 100_000,
    private readonly now: () => number = Date.now,
  ) {}

  issue(): Uint8Array {
    const nonce = crypto.getRandomValues(new Uint8Array(32));
    const t = this.now();
    if (this.open.size >= this.max) this.expire(t);
    // Still full: the oldest challenge loses (Map keeps insertion order).
    if (this.open.size >= this.max) this.open.delete(this.open.keys().next().value!);
    this.open.set(toBase64url(nonce), t + this.ttlMs);
    return nonce;
  }

  /** True once for a nonce issued here and not expired; false for a replay or a stranger. */
  consume(nonce: Uint8Array): boolean {
    const key = toBase64url(nonce);
    const until = this.open.get(key);
    if (until === undefined) return false;
    this.open.delete(key);
    return until >= this.now();
  }

  private expire(t: number): void {
    for (const [k, until] of this.open) if (until < t) this.open.delete(k);
  }
}

async function idOfSpki(spki: Uint8Array): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', view(spki)));
  return [...digest.subarray(0, 16)].map((b) => b.toString(16).padStart(2, '0')).join('');
}

async function importPublic(publicKey: string): Promise<Key> {
  try {
    return await crypto.subtle.importKey('spki', view(fromBase64url(publicKey)), algorithm, true, [
      'verify',
    ]);
  } catch (e) {
    throw new InputError(`not a P-256 public key: ${(e as Error).message}`);
  }
}

/** WebCrypto under the DOM lib wants ArrayBuffer-backed views; these never are shared. */
const view = (b: Uint8Array) => b as Uint8Array<ArrayBuffer>;

const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

export function toBase64url(bytes: Uint8Array): string {
  let out = '';
  for (let i = 0; i < bytes.length; i += 3) {
    const n = (bytes[i]! << 16) | ((bytes[i + 1] ?? 0) << 8) | (bytes[i + 2] ?? 0);
    const chars = Math.min(4, Math.ceil(((bytes.length - i) * 8) / 6));
    for (let c = 0; c < chars; c++) out += alphabet[(n >> (18 - 6 * c)) & 63];
  }
  return out;
}

export function fromBase64url(text: string): Uint8Array {
  if (!/^[A-Za-z0-9_-]*$/.test(text) || text.length % 4 === 1) {
    throw new InputError('not base64url');
  }
  const out = new Uint8Array(Math.floor((text.length * 6) / 8));
  let bits = 0;
  let acc = 0;
  let at = 0;
  for (const ch of text) {
    acc = (acc << 6) | alphabet.indexOf(ch);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[at++] = (acc >> bits) & 0xff;
    }
  }
  return out;
}
