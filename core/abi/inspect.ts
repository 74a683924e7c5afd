import { LogicLoadError } from '../errors';

/** What the host needs to know about a Logic module before it instantiates one. */
export interface LogicModuleInfo {
  /** Pages (64 KiB) the module's `env.memory` import asks for at least. */
  memoryMinPages: number;
  /** The import's own maximum, if it declares one. */
  memoryMaxPages: number | undefined;
  imports: { module: string; name: string; kind: string }[];
  exports: { name: string; kind: string }[];
}

/** The imports PROTOCOL.md §3.1 allows; anything else is ambient I/O and is refused. */
export const allowedImports: Record<string, 'function' | 'memory'> = {
  'env.memory': 'memory',
  'env.abort': 'function',
  'env.seed': 'function',
  'brume.log': 'function',
};

/**
 * Reads a Logic module's import and memory sections and checks them against the ABI.
 * @example const info = inspectLogic(bytes, await WebAssembly.compile(bytes));
 */
export function inspectLogic(bytes: Uint8Array, module: WebAssembly.Module): LogicModuleInfo {
  const imports = WebAssembly.Module.imports(module);
  const exports = WebAssembly.Module.exports(module);
  for (const imp of imports) {
    const key = `${imp.module}.${imp.name}`;
    if (allowedImports[key] !== imp.kind) {
      throw new LogicLoadError(
        `Logic imports ${key} (${imp.kind}), which Brume does not provide; a Logic may import only ${Object.keys(allowedImports).join(', ')} (PROTOCOL.md §3.1)`,
      );
    }
  }
  const sections = readSections(bytes);
  if (sections.ownMemories > 0) {
    throw new LogicLoadError(
      'Logic defines its own memory; it must import env.memory so the host can bound it (AssemblyScript: --importMemory)',
    );
  }
  if (!sections.memoryImport) {
    throw new LogicLoadError('Logic does not import env.memory (PROTOCOL.md §3.1)');
  }
  for (const name of ['brume_alloc', 'brume_free']) {
    if (!exports.some((e) => e.name === name && e.kind === 'function')) {
      throw new LogicLoadError(`Logic does not export the function ${name} (PROTOCOL.md §3.2)`);
    }
  }
  return {
    memoryMinPages: sections.memoryImport.min,
    memoryMaxPages: sections.memoryImport.max,
    imports,
    exports,
  };
}

interface Sections {
  memoryImport: { min: number; max: number | undefined } | undefined;
  ownMemories: number;
}

// Just enough of the binary format (import section 2, memory section 5) to learn memory limits,
// which WebAssembly.Module.imports() does not report.
function readSections(bytes: Uint8Array): Sections {
  let pos = 8;
  const out: Sections = { memoryImport: undefined, ownMemories: 0 };
  const fail = (): never => {
    throw new LogicLoadError('Logic module is truncated or malformed');
  };
  const byte = (): number => {
    if (pos >= bytes.length) fail();
    return bytes[pos++]!;
  };
  const leb = (): number => {
    let result = 0;
    let shift = 0;
    for (;;) {
      const b = byte();
      result += (b & 0x7f) * 2 ** shift;
      if ((b & 0x80) === 0) return result;
      shift += 7;
      if (shift > 63) fail();
    }
  };
  const skipName = (): string => {
    const len = leb();
    const s = new TextDecoder().decode(bytes.subarray(pos, pos + len));
    pos += len;
    return s;
  };
  const limits = (): { min: number; max: number | undefined } => {
    const flags = byte();
    const min = leb();
    return { min, max: flags & 1 ? leb() : undefined };
  };
  while (pos < bytes.length) {
    const id = byte();
    const size = leb();
    const end = pos + size;
    if (end > bytes.length) fail();
    if (id === 2) {
      const count = leb();
      for (let i = 0; i < count; i++) {
        const mod = skipName();
        const name = skipName();
        const kind = byte();
        if (kind === 0) leb();
        else if (kind === 1) {
          byte();
          limits();
        } else if (kind === 2) {
          const l = limits();
          if (mod === 'env' && name === 'memory') out.memoryImport = l;
        } else if (kind === 3) {
          byte();
          byte();
        } else fail();
      }
    } else if (id === 5) {
      out.ownMemories = leb();
    }
    pos = end;
  }
  return out;
}
