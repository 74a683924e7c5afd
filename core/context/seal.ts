/**
 * Private context values: sealed so that only the nodes they are for can open them, wherever they
 * rest (the relay, its storage, a node on the way). A fresh content key per value encrypts it
 * (AES-GCM); that key is wrapped for each recipient under a key agreed by ECDH P-256 with a
 * one-time key pair and stretched by HKDF. A node's agreement key is its own, apart from its
 * signing identity, and its private half never leaves WebCrypto.
 * @example const me = await generateAgreementKey();
 *          const box = await seal(bytes, [me]); (await unseal(box, me)) equals bytes
 */
import { decode, encode } from '../codec';
import { InputError, PrivacyError } from '../errors';

type Key = Parameters<typeof crypto.subtle.sign>[1];

export interface Recipient {
  /** 32 hex: the first 16 bytes of sha256 of the raw public key. */
  kid: string;
  /** Raw (uncompressed) P-256 public key. */
  publicKey: Uint8Array;
}
export interface AgreementKey extends Recipient {
  privateKey: Key;
}

interface Envelope {
  v: 1;
  epk: Uint8Array;
  iv: Uint8Array;
  ct: Uint8Array;
  keys: { kid: string; iv: Uint8Array; wrapped: Uint8Array }[];
}

const ecdh = { name: 'ECDH', namedCurve: 'P-256' } as const;
const view = (b: Uint8Array) => b as Uint8Array<ArrayBuffer>;
const bytes = (b: ArrayBuffer) => new Uint8Array(b);

export async function kidOf(publicKey: Uint8Array): Promise<string> {
  const d = bytes(await crypto.subtle.digest('SHA-256', view(publicKey)));
  return [...d.subarray(0, 16)].map((b) => b.toString(16).padStart(2, '0')).join('');
}

/** A new agreement key pair; the private key cannot be exported. */
export async function generateAgreementKey(): Promise<AgreementKey> {
  return agreementKeyOf(await newAgreementPair());
}

/** A new ECDH P-256 pair whose private half cannot be exported (to keep in a KeyStore). */
export async function newAgreementPair(): Promise<{ publicKey: Key; privateKey: Key }> {
  return (await crypto.subtle.generateKey(ecdh, false, ['deriveBits'])) as {
    publicKey: Key;
    privateKey: Key;
  };
}

export async function agreementKeyOf(pair: { publicKey: Key; privateKey: Key }) {
  const publicKey = bytes(await crypto.subtle.exportKey('raw', pair.publicKey));
  return { kid: await kidOf(publicKey), publicKey, privateKey: pair.privateKey } as AgreementKey;
}

/**
 * What a node's identity key signs to vouch for its agreement key, so that a writer can check
 * that the key it seals for belongs to the identity it trusts, whoever handed it over.
 */
export function agreementPayload(agreementKey: Uint8Array): Uint8Array {
  const head = new TextEncoder().encode('brume-agreement/1\n');
  const out = new Uint8Array(head.length + agreementKey.length);
  out.set(head);
  out.set(agreementKey, head.length);
  return out;
}

/** The key that wraps a value's content key for one recipient. */
async function kek(privateKey: Key, publicKey: Uint8Array, epk: Uint8Array, kid: string) {
  const pub = await crypto.subtle.importKey('raw', view(publicKey), ecdh, true, []);
  const shared = await crypto.subtle.deriveBits({ name: 'ECDH', public: pub }, privateKey, 256);
  const hkdf = await crypto.subtle.importKey('raw', shared, 'HKDF', false, ['deriveKey']);
  return crypto.subtle.deriveKey(
    {
      name: 'HKDF',
      hash: 'SHA-256',
      salt: view(epk),
      info: view(new TextEncoder().encode(`brume-context/1 ${kid}`)),
    },
    hkdf,
    { name: 'AES-GCM', length: 256 },
    false,
    ['encrypt', 'decrypt'],
  );
}

export async function seal(plain: Uint8Array, recipients: Recipient[]): Promise<Uint8Array> {
  if (recipients.length === 0) throw new InputError('a private value needs a recipient');
  const eph = (await crypto.subtle.generateKey(ecdh, true, ['deriveBits'])) as {
    publicKey: Key;
    privateKey: Key;
  };
  const epk = bytes(await crypto.subtle.exportKey('raw', eph.publicKey));
  const cek = crypto.getRandomValues(new Uint8Array(32));
  const content = await crypto.subtle.importKey('raw', cek, 'AES-GCM', false, ['encrypt']);
  const iv = crypto.getRandomValues(new Uint8Array(12));
  const ct = bytes(await crypto.subtle.encrypt({ name: 'AES-GCM', iv }, content, view(plain)));
  const keys: Envelope['keys'] = [];
  for (const r of recipients) {
    const wiv = crypto.getRandomValues(new Uint8Array(12));
    const k = await kek(eph.privateKey, r.publicKey, epk, r.kid);
    keys.push({
      kid: r.kid,
      iv: wiv,
      wrapped: bytes(await crypto.subtle.encrypt({ name: 'AES-GCM', iv: wiv }, k, cek)),
    });
  }
  return encode({ v: 1, epk, iv, ct, keys } satisfies Envelope);
}

/** Opens an envelope sealed for `me`; E_PRIVACY when it was not, or it was tampered with. */
export async function unseal(envelope: Uint8Array, me: AgreementKey): Promise<Uint8Array> {
  const e = decode(envelope) as Envelope;
  const mine = e.keys?.find((k) => k.kid === me.kid);
  if (!mine) throw new PrivacyError('this value is not sealed for this node');
  try {
    const k = await kek(me.privateKey, e.epk, e.epk, me.kid);
    const cek = await crypto.subtle.decrypt(
      { name: 'AES-GCM', iv: view(mine.iv) },
      k,
      view(mine.wrapped),
    );
    const content = await crypto.subtle.importKey('raw', cek, 'AES-GCM', false, ['decrypt']);
    return bytes(
      await crypto.subtle.decrypt({ name: 'AES-GCM', iv: view(e.iv) }, content, view(e.ct)),
    );
  } catch {
    throw new PrivacyError('this sealed value does not open: altered, or not for this key');
  }
}
