import { LogicFault, LogicLoadError, LogicMemoryError } from '../errors';

const PAGE = 65536;
/** PROTOCOL.md §3.2: a result frame larger than this is a fault, not a result. */
export const maxResultBytes = 16 * 1024 * 1024;

export interface GuestOptions {
  /** Pages the module's env.memory import needs (from inspectLogic). */
  minPages: number;
  /** The memory maximum, from the manifest's limits.memoryMiB. */
  maxPages: number;
  /** Where brume.log output goes. */
  log?: (line: string) => void;
}

/** One instantiated Logic, driven through the ABI of PROTOCOL.md §3.2. Lives in a worker. */
export interface LogicGuest {
  /** Runs one invocation step: request bytes in, InvokeResult bytes out. Throws BrumeErrors. */
  step(exportName: string, request: Uint8Array): Uint8Array;
  /** Bytes of linear memory now in use. */
  readonly memoryBytes: number;
}

/**
 * Instantiates a compiled Logic with a bounded memory and the imports of PROTOCOL.md §3.1.
 * @example const guest = createGuest(module, { minPages: 1, maxPages: 256 });
 *          const resultBytes = guest.step('classify', encode(input));
 */
export function createGuest(module: WebAssembly.Module, options: GuestOptions): LogicGuest {
  if (options.minPages > options.maxPages) {
    throw new LogicLoadError(
      `Logic needs ${options.minPages} pages of memory at start but its limit is ${options.maxPages} (${(options.maxPages * PAGE) / 2 ** 20} MiB); raise limits.memoryMiB`,
    );
  }
  const memory = new WebAssembly.Memory({ initial: options.minPages, maximum: options.maxPages });
  const utf8 = new TextDecoder();
  const imports: WebAssembly.Imports = {
    env: {
      memory,
      abort: (msg: number, file: number, line: number, col: number) => {
        const where = file ? ` at ${asString(memory, file)}:${line}:${col}` : '';
        throw new GuestAbort(`${msg ? asString(memory, msg) : 'abort'}${where}`);
      },
      seed: () => crypto.getRandomValues(new Uint32Array(1))[0]! * 2 ** 20 + Date.now(),
    },
    brume: {
      log: (ptr: number, len: number) => {
        // Decoded no further than it is kept: a guest's long line costs the host 4 KiB, not its
        // length (a Node worker's heap is smaller than the guest memory it may log).
        const bytes = new Uint8Array(memory.buffer, ptr, len).subarray(0, 4 * 4096);
        options.log?.(utf8.decode(bytes).slice(0, 4096));
      },
    },
  };
  let instance: WebAssembly.Instance;
  try {
    instance = new WebAssembly.Instance(module, imports);
  } catch (e) {
    throw new LogicLoadError(`Logic failed to instantiate: ${(e as Error).message}`, { cause: e });
  }
  const ex = instance.exports;
  const alloc = ex.brume_alloc as (len: number) => number;
  const free = ex.brume_free as (ptr: number) => void;
  const atLimit = () => memory.buffer.byteLength + PAGE > options.maxPages * PAGE;

  return {
    get memoryBytes() {
      return memory.buffer.byteLength;
    },
    step(exportName, request) {
      const fn = ex[exportName];
      if (typeof fn !== 'function') {
        throw new LogicFault(`Logic has no exported function "${exportName}"`);
      }
      try {
        const p = alloc(request.byteLength);
        // Read memory.buffer only after alloc: growing memory detaches the old buffer.
        checkRange(memory, p, request.byteLength, 'brume_alloc');
        new Uint8Array(memory.buffer, p, request.byteLength).set(request);
        const r = (fn as (ptr: number, len: number) => number)(p, request.byteLength);
        checkRange(memory, r, 4, exportName);
        const n = new DataView(memory.buffer).getUint32(r, true);
        if (n > maxResultBytes) {
          throw new LogicFault(
            `Logic "${exportName}" returned a ${n}-byte result; the limit is ${maxResultBytes}`,
          );
        }
        checkRange(memory, r + 4, n, exportName);
        const out = new Uint8Array(memory.buffer, r + 4, n).slice();
        free(p);
        free(r);
        return out;
      } catch (e) {
        throw classify(e, exportName, atLimit(), memory.buffer.byteLength, options.maxPages);
      }
    },
  };
}

class GuestAbort extends Error {}

function classify(
  e: unknown,
  exportName: string,
  atLimit: boolean,
  usedBytes: number,
  maxPages: number,
): Error {
  if (e instanceof LogicFault) return e;
  const message = (e as Error)?.message ?? String(e);
  // A guest that hits the memory maximum sees memory.grow fail and then aborts or traps.
  if (atLimit || /out of memory|allocation too large|could not grow/i.test(message)) {
    return new LogicMemoryError(
      `Logic "${exportName}" exhausted its memory limit of ${(maxPages * PAGE) / 2 ** 20} MiB (${message})`,
      { cause: e },
    );
  }
  if (e instanceof GuestAbort) return new LogicFault(`Logic "${exportName}" aborted: ${message}`);
  // A failed memory.grow is invisible to the host: a guest that asked for a large block near its
  // limit traps without saying why, so say how full memory was.
  const mib = (n: number) => (n / 2 ** 20).toFixed(1);
  const usage =
    usedBytes > (maxPages * PAGE) / 2
      ? ` (memory in use ${mib(usedBytes)} of ${mib(maxPages * PAGE)} MiB: an allocation may have failed)`
      : '';
  return new LogicFault(`Logic "${exportName}" trapped: ${message}${usage}`, { cause: e });
}

function checkRange(memory: WebAssembly.Memory, ptr: number, len: number, what: string): void {
  if (!Number.isInteger(ptr) || ptr < 0 || ptr + len > memory.buffer.byteLength) {
    throw new LogicFault(`"${what}" gave an out-of-bounds pointer ${ptr} (+${len} bytes)`);
  }
}

// AssemblyScript strings: UTF-16LE, byte length as u32 just before the pointer.
function asString(memory: WebAssembly.Memory, ptr: number): string {
  const buf = memory.buffer;
  if (ptr < 4 || ptr > buf.byteLength) return '?';
  const len = Math.min(new DataView(buf).getUint32(ptr - 4, true), 2048, buf.byteLength - ptr);
  return new TextDecoder('utf-16le').decode(new Uint8Array(buf, ptr, len & ~1));
}
