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

declare const crypto: {
  getRandomValues<T extends ArrayBufferView>(array: T): T;
  randomUUID(): string;
  readonly subtle: {
    digest(
      algorithm: 'SHA-256' | 'SHA-384' | 'SHA-512',
      data: ArrayBufferView | ArrayBuffer,
    ): Promise<ArrayBuffer>;
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
