// The web-standard globals that exist in a window, a Web Worker and Node alike.
// core/ compiles against these alone (lib ES2022, no DOM, no @types/node), so a use of
// anything platform-specific fails the typecheck instead of failing on one runtime.

declare class TextEncoder {
  encode(input?: string): Uint8Array;
}
declare class TextDecoder {
  constructor(label?: string, options?: { fatal?: boolean });
  decode(input?: ArrayBufferView | ArrayBuffer): string;
}

interface CryptoKey {
  readonly type: 'public' | 'private' | 'secret';
  readonly extractable: boolean;
  readonly algorithm: { name: string };
  readonly usages: string[];
}
interface CryptoKeyPair {
  publicKey: CryptoKey;
  privateKey: CryptoKey;
}
type BufferSourceLike = ArrayBufferView | ArrayBuffer;
/** WebCrypto algorithm parameters (ECDSA, ECDH, HKDF, AES-GCM...), loosely typed. */
type AlgorithmLike = string | { name: string; [param: string]: unknown };
type KeyFormatLike = 'raw' | 'spki' | 'pkcs8' | 'jwk';

declare const crypto: {
  getRandomValues<T extends ArrayBufferView>(array: T): T;
  randomUUID(): string;
  readonly subtle: {
    digest(
      algorithm: 'SHA-256' | 'SHA-384' | 'SHA-512',
      data: BufferSourceLike,
    ): Promise<ArrayBuffer>;
    generateKey(
      algorithm: AlgorithmLike,
      extractable: boolean,
      usages: string[],
    ): Promise<CryptoKeyPair | CryptoKey>;
    importKey(
      format: KeyFormatLike,
      keyData: BufferSourceLike | object,
      algorithm: AlgorithmLike,
      extractable: boolean,
      usages: string[],
    ): Promise<CryptoKey>;
    exportKey(format: 'raw' | 'spki' | 'pkcs8', key: CryptoKey): Promise<ArrayBuffer>;
    exportKey(format: 'jwk', key: CryptoKey): Promise<object>;
    sign(algorithm: AlgorithmLike, key: CryptoKey, data: BufferSourceLike): Promise<ArrayBuffer>;
    verify(
      algorithm: AlgorithmLike,
      key: CryptoKey,
      signature: BufferSourceLike,
      data: BufferSourceLike,
    ): Promise<boolean>;
    encrypt(algorithm: AlgorithmLike, key: CryptoKey, data: BufferSourceLike): Promise<ArrayBuffer>;
    decrypt(algorithm: AlgorithmLike, key: CryptoKey, data: BufferSourceLike): Promise<ArrayBuffer>;
    deriveBits(algorithm: AlgorithmLike, baseKey: CryptoKey, length: number): Promise<ArrayBuffer>;
    deriveKey(
      algorithm: AlgorithmLike,
      baseKey: CryptoKey,
      derivedKeyType: AlgorithmLike,
      extractable: boolean,
      usages: string[],
    ): Promise<CryptoKey>;
  };
};

declare const performance: { now(): number };

// Opaque handle: a number in browsers, an object in Node.
declare function setTimeout(
  handler: () => void,
  timeout?: number,
): { readonly __timer: unique symbol };
declare function clearTimeout(id: ReturnType<typeof setTimeout> | undefined): void;

declare const console: {
  log(...args: unknown[]): void;
  warn(...args: unknown[]): void;
  error(...args: unknown[]): void;
};

declare class URL {
  constructor(url: string, base?: string);
  toString(): string;
  readonly pathname: string;
  readonly origin: string;
}

/** Tells that something is no longer wanted (a call whose caller is gone): the web standard's part core uses. */
declare class AbortSignal {
  readonly aborted: boolean;
  readonly reason: unknown;
  addEventListener(type: 'abort', listener: () => void, options?: { once?: boolean }): void;
  removeEventListener(type: 'abort', listener: () => void): void;
}
declare class AbortController {
  readonly signal: AbortSignal;
  abort(reason?: unknown): void;
}
