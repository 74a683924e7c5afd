// WebAssembly's JS API, which TypeScript ships only in lib.dom: declared here for core/ and relay/.
// (web/ and worker/ get it from their DOM and WebWorker libs.)

declare namespace WebAssembly {
  class Module {
    constructor(bytes: ArrayBufferView | ArrayBuffer);
    static imports(module: Module): { module: string; name: string; kind: string }[];
    static exports(module: Module): { name: string; kind: string }[];
  }
  class Instance {
    constructor(module: Module, imports?: Imports);
    readonly exports: Record<string, unknown>;
  }
  class Memory {
    constructor(descriptor: { initial: number; maximum?: number; shared?: boolean });
    readonly buffer: ArrayBuffer;
    grow(delta: number): number;
  }
  class CompileError extends Error {}
  class LinkError extends Error {}
  class RuntimeError extends Error {}
  type ImportValue = ((...args: number[]) => unknown) | Memory;
  type Imports = Record<string, Record<string, ImportValue>>;
  function compile(bytes: ArrayBufferView<ArrayBuffer> | ArrayBuffer): Promise<Module>;
  function validate(bytes: ArrayBufferView<ArrayBuffer> | ArrayBuffer): boolean;
  function instantiate(module: Module, imports?: Imports): Promise<Instance>;
}
