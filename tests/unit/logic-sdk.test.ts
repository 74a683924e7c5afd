/**
 * The guest side of the Logic ABI (PROTOCOL.md §3, §4): the AssemblyScript SDK, the digits Logic
 * and the fixtures, driven by a small host written here (the real one lives in core/abi).
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { decode, encode } from '@msgpack/msgpack';
import { beforeAll, describe, expect, it } from 'vitest';
import { allowedImports as hostImports } from '../../core/abi/inspect';
import { type InvokeResult, parseInvokeResult } from '../../core/abi/invoke';
import { type BuiltLogic, buildLogics } from '../../scripts/build-logics';

const PAGE = 65536;
const allowedImports = Object.keys(hostImports);

type Result = InvokeResult;

/** What classify sends the model (PROTOCOL.md §4). */
interface ModelRequest {
  inputs: { pixels: { type: string; dims: number[]; data: Uint8Array } };
}

class GuestAbort extends Error {}

/** One instance of a built Logic, driven as PROTOCOL.md §3.2 says. */
function instantiate(name: string, maximumPages = 256) {
  const memory = new WebAssembly.Memory({ initial: 1, maximum: maximumPages });
  const logs: string[] = [];
  // AssemblyScript strings: UTF-16LE, byte length as u32 at ptr - 4.
  const asString = (ptr: number) => {
    const n = new DataView(memory.buffer).getUint32(ptr - 4, true);
    return new TextDecoder('utf-16le').decode(new Uint8Array(memory.buffer, ptr, n));
  };
  let seeds = 0;
  const instance = new WebAssembly.Instance(new WebAssembly.Module(wasm(name)), {
    env: {
      memory,
      abort: (msg: number) => {
        throw new GuestAbort(msg ? asString(msg) : 'abort');
      },
      seed: () => {
        seeds++;
        return 12345;
      },
    },
    brume: {
      log: (ptr: number, len: number) => {
        logs.push(new TextDecoder().decode(new Uint8Array(memory.buffer, ptr, len)));
      },
    },
  });
  const ex = instance.exports as Record<string, (...args: number[]) => number>;

  /** One step: request bytes in, the frame's bytes out; `len` may be shorter than the bytes. */
  const stepBytes = (exportName: string, request: Uint8Array, len = request.length) => {
    const p = ex.brume_alloc!(request.length);
    new Uint8Array(memory.buffer, p, request.length).set(request);
    const r = ex[exportName]!(p, len);
    const view = new DataView(memory.buffer);
    expect(r + 4).toBeLessThanOrEqual(memory.buffer.byteLength);
    const n = view.getUint32(r, true);
    expect(r + 4 + n).toBeLessThanOrEqual(memory.buffer.byteLength);
    const frame = new Uint8Array(memory.buffer, r + 4, n).slice();
    ex.brume_free!(p);
    ex.brume_free!(r);
    return frame;
  };
  const step = (exportName: string, input: unknown, bigInts = false): Result =>
    decode(stepBytes(exportName, encode(input, { useBigInt64: bigInts })), {
      useBigInt64: bigInts,
    }) as Result;

  /** Runs an RPC and follows its calls through `dispatch`, as the host does (§3.3). */
  const invoke = (
    rpc: string,
    input: unknown,
    dispatch: (service: string, rpc: string, payload: unknown) => { value: unknown; rpc: string },
  ): Result => {
    let result = step(rpc, input);
    for (let calls = 0; result.t === 'call'; calls++) {
      if (calls >= 64) throw new Error('call loop');
      let reply: Record<string, unknown>;
      try {
        const out = dispatch(result.service, result.rpc, result.payload);
        reply = { ok: true, value: out.value, service: result.service, rpc: out.rpc };
      } catch (e) {
        reply = { ok: false, error: { code: 'E_TEST', message: (e as Error).message } };
      }
      if ('state' in result) reply.state = result.state;
      result = step(result.continuation, reply);
    }
    return result;
  };
  return { memory, logs, exports: ex, stepBytes, step, invoke, seeds: () => seeds };
}

let built: BuiltLogic[] = [];
const wasm = (name: string) => {
  const logic = built.find((b) => b.name === name);
  if (!logic) throw new Error(`${name}.wasm was not built`);
  return readFileSync(logic.output);
};

beforeAll(async () => {
  built = await buildLogics();
}, 120_000);

/** A float32 tensor's elements. */
const f32 = (bytes: Uint8Array) =>
  new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));

const modelOutput = (probs: number[]) => ({
  outputs: {
    probs: {
      type: 'float32',
      dims: [1, probs.length],
      data: new Uint8Array(new Float32Array(probs).buffer),
    },
  },
});

describe('build', () => {
  it('builds every Logic and fixture', () => {
    expect(built.map((b) => b.name).sort()).toEqual(
      [
        'bad-import',
        'digits',
        'digits-ee',
        'echo',
        'front',
        'loop-forever',
        'memory-hog',
        'ocr-post',
        'ocr-pre',
        'own-memory',
        'squeezenet',
        'top3',
        'vad',
      ].sort(),
    );
    for (const b of built) expect(b.size).toBeGreaterThan(0);
  });

  it('imports only what PROTOCOL.md §3.1 allows, memory included', () => {
    for (const b of built.filter((b) => !['bad-import', 'own-memory'].includes(b.name))) {
      const module = new WebAssembly.Module(wasm(b.name));
      const imports = WebAssembly.Module.imports(module);
      for (const i of imports) expect(allowedImports, b.name).toContain(`${i.module}.${i.name}`);
      expect(imports, b.name).toContainEqual({ module: 'env', name: 'memory', kind: 'memory' });
      const exports = WebAssembly.Module.exports(module);
      expect(
        exports.filter((e) => e.kind === 'memory'),
        b.name,
      ).toEqual([]);
      for (const name of ['brume_alloc', 'brume_free']) {
        expect(exports, b.name).toContainEqual({ name, kind: 'function' });
      }
    }
  });

  it('has hostile fixtures that break exactly the rule they test', () => {
    const bad = WebAssembly.Module.imports(new WebAssembly.Module(wasm('bad-import')));
    expect(bad).toContainEqual({ module: 'env', name: 'fetch', kind: 'function' });
    const own = new WebAssembly.Module(wasm('own-memory'));
    expect(WebAssembly.Module.imports(own)).toEqual([]);
    expect(WebAssembly.Module.exports(own)).toContainEqual({ name: 'memory', kind: 'memory' });
    const loop = WebAssembly.Module.exports(new WebAssembly.Module(wasm('loop-forever')));
    expect(loop).toContainEqual({ name: 'run', kind: 'function' });
  });

  it('is incremental and deterministic', async () => {
    const before = built.filter((b) => ['memory-hog', 'own-memory'].includes(b.name));
    const bytes = before.map((b) => readFileSync(b.output));
    const again = await buildLogics({ only: ['memory-hog', 'own-memory'] });
    expect(again.map((b) => b.compiled)).toEqual([false, false]);
    const forced = await buildLogics({ only: ['memory-hog', 'own-memory'], force: true });
    expect(forced.map((b) => b.compiled)).toEqual([true, true]);
    expect(forced.map((b) => readFileSync(b.output))).toEqual(bytes);
  });
});

describe('MessagePack through echo', () => {
  const values: Record<string, unknown> = {
    nil: null,
    booleans: [true, false],
    fixints: [0, 1, 127, -1, -32],
    ints: [128, 255, 256, 65535, 65536, 2 ** 32 - 1, 2 ** 32, 2 ** 53 - 1],
    negatives: [-33, -128, -129, -32768, -32769, -(2 ** 31), -(2 ** 31) - 1, -(2 ** 53 - 1)],
    floats: [0.5, -1.25, Math.PI, 1e300, -1e-300, Number.MAX_VALUE, Infinity, -Infinity],
    strings: [
      '',
      'a',
      'héllo wörld',
      '日本語のテキスト',
      'emoji 🎉👩‍💻',
      'x'.repeat(31),
      'y'.repeat(32),
    ],
    longStrings: ['z'.repeat(255), 'é'.repeat(300), 'w'.repeat(70_000)],
    bins: [new Uint8Array(0), new Uint8Array([0, 1, 255]), new Uint8Array(300).fill(7)],
    bigBin: new Uint8Array(70_000).map((_, i) => i % 251),
    arrays: [[], [1, [2, [3, [4, []]]]], Array.from({ length: 20 }, (_, i) => i - 10)],
    bigArray: Array.from({ length: 70_000 }, (_, i) => i % 3),
    maps: { empty: {}, nested: { a: { b: { c: { d: 'deep' } } } }, 'ключ ✓': 1 },
    wideMap: Object.fromEntries(Array.from({ length: 20 }, (_, i) => [`k${i}`, i])),
  };

  for (const [kind, value] of Object.entries(values)) {
    it(`round-trips ${kind} byte for byte`, () => {
      const echo = instantiate('echo');
      const frame = echo.stepBytes('echo', encode(value));
      expect(decode(frame)).toEqual({ t: 'done', value });
      // Both encoders pick the shortest forms: the bytes match too.
      expect(Buffer.from(frame).equals(encode({ t: 'done', value }))).toBe(true);
    });
  }

  it('round-trips everything at once', () => {
    expect(instantiate('echo').step('echo', values)).toEqual({ t: 'done', value: values });
  });

  it('round-trips NaN, float32 and 64-bit integers', () => {
    const echo = instantiate('echo');
    expect(echo.step('echo', Number.NaN)).toEqual({ t: 'done', value: Number.NaN });
    // A float32 on the way in is a float64 on the way out, with the same value.
    const f32bytes = new Uint8Array([0xca, 0x3f, 0xc0, 0x00, 0x00]);
    expect(decode(echo.stepBytes('echo', f32bytes))).toEqual({ t: 'done', value: 1.5 });
    const big = [2n ** 63n - 1n, -(2n ** 63n), 2n ** 64n - 1n, 2n ** 53n + 1n, -(2n ** 53n) - 1n];
    expect(echo.step('echo', big, true)).toEqual({ t: 'done', value: big });
  });

  const hostile: [string, number[], RegExp][] = [
    [
      'truncated input',
      [0x92, 0x01],
      /invalid MessagePack at byte 1: array of 2 items is truncated/,
    ],
    ['a truncated int', [0xcd, 0x01], /invalid MessagePack at byte 1: truncated/],
    ['trailing bytes', [0x01, 0x02], /trailing bytes/],
    ['an extension type', [0xd4, 0x01, 0x00], /extension types are not supported/],
    ['byte 0xc1', [0xc1], /0xc1 is never used/],
    ['a non-string map key', [0x81, 0x01, 0x02], /string keys/],
    [
      'an array count past the input',
      [0xdd, 0xff, 0xff, 0xff, 0xff],
      /array of 4294967295 items is truncated/,
    ],
    [
      'a map count past the input',
      [0xdf, 0x7f, 0xff, 0xff, 0xff, 0xc0],
      /map of 2147483647 entries/,
    ],
    [
      'a map count that doubles past 2^32',
      [0xdf, 0x80, 0, 0, 0, 0xc0],
      /map of 2147483648 entries/,
    ],
    ['a string length past the input', [0xdb, 0xff, 0xff, 0xff, 0xff, 0x61], /truncated/],
    ['a bin length past the input', [0xc6, 0x00, 0x01, 0x00, 0x00, 0x61], /truncated/],
    ['nesting deeper than 100', [...new Array(200).fill(0x91), 0xc0], /nested deeper than 100/],
  ];
  for (const [what, bytes, message] of hostile) {
    it(`refuses ${what} with an abort`, () => {
      expect(() => instantiate('echo').stepBytes('echo', new Uint8Array(bytes))).toThrow(message);
    });
  }

  it('never reads past the request, even when memory goes on', () => {
    // A 5-byte string of which the request holds 2: the bytes after it are not the guest's to read.
    const bytes = new Uint8Array([0xa5, 0x61, 0x62, 0x63, 0x64, 0x65]);
    expect(() => instantiate('echo').stepBytes('echo', bytes, 3)).toThrow(/truncated/);
  });
});

describe('SDK API through echo', () => {
  const inspect = (value: unknown, bigInts = false) => {
    const r = instantiate('echo').step('inspect', value, bigInts);
    if (r.t !== 'done') throw new Error(JSON.stringify(r));
    return r.value;
  };

  it('reads every kind with the typed getters', () => {
    expect(inspect(null)).toEqual({ kind: 'nil', length: 0, number: null, detail: null });
    expect(inspect(true)).toEqual({ kind: 'bool', length: 0, number: null, detail: true });
    expect(inspect(-7)).toEqual({ kind: 'int', length: 0, number: -7, detail: ['i32', -7] });
    expect(inspect(2 ** 40)).toEqual({
      kind: 'int',
      length: 0,
      number: 2 ** 40,
      detail: ['i64', 2 ** 40],
    });
    expect(inspect(2n ** 64n - 1n, true)).toEqual({
      kind: 'int',
      length: 0,
      number: 2 ** 64,
      detail: ['u64', 2n ** 64n - 1n],
    });
    // A JS number is an int or a float: an integral float counts as an int.
    expect(inspect(2 ** 60)).toMatchObject({ kind: 'float', detail: [true, 2 ** 60] });
    expect(inspect(0.5)).toEqual({ kind: 'float', length: 0, number: 0.5, detail: [false, 0.5] });
    expect(inspect('héllo')).toEqual({ kind: 'string', length: 5, number: null, detail: 'héllo' });
    expect(inspect(new Uint8Array([1, 2, 250]))).toMatchObject({
      kind: 'bin',
      length: 3,
      detail: 253,
    });
    expect(inspect([1, 'a', null, [], {}])).toMatchObject({
      kind: 'array',
      length: 5,
      detail: ['int', 'string', 'nil', 'array', 'map'],
    });
    expect(inspect({ b: 1.5, a: new Uint8Array(1), ü: true })).toMatchObject({
      kind: 'map',
      length: 3,
      detail: { b: 'float', a: 'bin', ü: 'bool' },
    });
  });

  it('reads and writes tensors of every type (PROTOCOL.md §4)', () => {
    const echo = instantiate('echo');
    const t = (type: string, dims: number[], data: ArrayBufferView) => ({
      t: { type, dims, data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) },
    });
    const read = (input: unknown) => {
      const r = echo.step('tensors', input);
      if (r.t !== 'done') throw new Error(JSON.stringify(r));
      return r.value as {
        type: string;
        dims: number[];
        size: number;
        sum: number;
        made: unknown[];
      };
    };
    expect(read(t('float32', [2, 2], new Float32Array([1, 2, 3, 0.5])))).toMatchObject({
      type: 'float32',
      dims: [2, 2],
      size: 4,
      sum: 6.5,
    });
    expect(read(t('int32', [3], new Int32Array([-5, 10, 1])))).toMatchObject({ size: 3, sum: 6 });
    expect(read(t('int64', [1, 2], new BigInt64Array([2n ** 40n, -1n])))).toMatchObject({
      sum: 2 ** 40 - 1,
    });
    expect(read(t('uint8', [0], new Uint8Array(0)))).toMatchObject({ dims: [0], size: 0, sum: 0 });
    expect(read(t('bool', [2], new Uint8Array([1, 1])))).toMatchObject({ size: 2, sum: 2 });
    const bytes = (data: ArrayBufferView) =>
      new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    expect(read(t('uint8', [1], new Uint8Array(1))).made).toEqual([
      { type: 'float32', dims: [2], data: bytes(new Float32Array([1.5, -2])) },
      { type: 'float32', dims: [1, 3], data: bytes(new Float32Array([0, 0, 0.25])) },
      { type: 'int32', dims: [3, 1], data: bytes(new Int32Array([-1, 0, 3])) },
      { type: 'int64', dims: [2], data: bytes(new BigInt64Array([2n ** 40n, -5n])) },
      { type: 'uint8', dims: [2], data: new Uint8Array([0, 255]) },
      { type: 'bool', dims: [3], data: new Uint8Array([1, 0, 1]) },
    ]);
    const bad: [unknown, RegExp][] = [
      [{ t: 5 }, /input\.t: expected map, got int/],
      [{ t: { type: 'float16', dims: [1], data: new Uint8Array(2) } }, /unknown type "float16"/],
      [
        { t: { type: 'int32', dims: [2], data: new Uint8Array(4) } },
        /dims hold 2 elements of int32/,
      ],
      [{ t: { type: 'int32', dims: [-1], data: new Uint8Array(4) } }, /non-negative integers/],
      [{ t: { type: 'uint8', dims: [1e6, 1e6], data: new Uint8Array(4) } }, /more elements than/],
      [{ t: { type: 'uint8', data: new Uint8Array(4) } }, /"dims" is missing/],
    ];
    for (const [input, message] of bad) {
      const r = echo.step('tensors', input);
      expect(r.t).toBe('error');
      expect((r as { message: string }).message).toMatch(message);
    }
  });

  it('builds values with the Value constructors', () => {
    expect(instantiate('echo').step('built', null)).toEqual({
      t: 'done',
      value: {
        nil: null,
        bool: true,
        int: -42,
        float: 2.5,
        string: 'ü',
        bin: new Uint8Array([0, 0, 0, 0x3f]),
        array: [1, null],
        half: 0.5,
        problem: 'expected a map, got int',
      },
    });
  });

  it('validates with Fields, keeping the first problem', () => {
    const echo = instantiate('echo');
    const good = {
      i: -3,
      f: 2,
      b: false,
      s: 'x',
      bin: new Uint8Array(3),
      arr: [1, 2],
      m: { x: [9] },
    };
    expect(echo.step('fields', good)).toEqual({
      t: 'done',
      value: { i: -3, f: 2, b: false, s: 'x', bin: 3, arr: 2, x: [9], opt: 'none' },
    });
    expect(echo.step('fields', { ...good, opt: 'yes' })).toMatchObject({ value: { opt: 'yes' } });
    const problems: [Record<string, unknown>, string][] = [
      [{ i: 11 }, 'input.i: must be between -10 and 10, got 11'],
      [{ f: 'no' }, 'input.f: expected number, got string'],
      [{ b: 1 }, 'input.b: expected bool, got int'],
      [{ s: null }, 'input.s: expected string, got nil'],
      [{ bin: 'x' }, 'input.bin: expected bin, got string'],
      [{ arr: {} }, 'input.arr: expected array, got map'],
      [{ m: [] }, 'input.m: expected map, got array'],
      [{ m: {} }, 'input.m.x: missing'],
      [{ i: 'a', f: 'b' }, 'input.i: expected int, got string'],
      [{ opt: 3 }, 'input.opt: expected string, got int'],
    ];
    for (const [change, message] of problems) {
      expect(echo.step('fields', { ...good, ...change })).toEqual({ t: 'error', message });
    }
  });
});

describe('echo', () => {
  it('returns app errors, aborts with a message, traps, logs and seeds', () => {
    const echo = instantiate('echo');
    expect(echo.step('fail', null)).toEqual({ t: 'error', message: 'deliberate failure' });
    echo.step('say', 'héllo, log ✓');
    expect(echo.logs).toEqual(['héllo, log ✓']);
    const r = echo.step('random', null);
    expect(r.t === 'done' && typeof r.value === 'number' && r.value >= 0 && r.value < 1).toBe(true);
    expect(echo.seeds()).toBeGreaterThan(0);
    expect(() => echo.step('trap', null)).toThrow(GuestAbort);
    expect(() => instantiate('echo').step('trap', null)).toThrow('deliberate trap');
    expect(() => instantiate('echo').step('crash', null)).toThrow(WebAssembly.RuntimeError);
  });

  it('makes calls with state and reads continuations', () => {
    const echo = instantiate('echo');
    const call = echo.step('relay', {
      service: 'svc',
      rpc: 'r1',
      payload: [1, 'two'],
      state: { n: 3 },
    });
    expect(call).toEqual({
      t: 'call',
      service: 'svc',
      rpc: 'r1',
      payload: [1, 'two'],
      continuation: 'relayed',
      state: { n: 3 },
    });
    const noState = echo.step('relay', { service: 'svc', rpc: '', payload: null });
    expect(noState).toEqual({
      t: 'call',
      service: 'svc',
      rpc: '',
      payload: null,
      continuation: 'relayed',
    });
    const reply = { ok: true, value: { x: 1 }, service: 'svc', rpc: 'r1', state: { n: 3 } };
    expect(echo.step('relayed', reply)).toEqual({ t: 'done', value: reply });
    expect(echo.step('relay', { service: 1 })).toEqual({
      t: 'error',
      message: 'input.service: expected string, got int',
    });
  });

  it('asks for context operations and reads what they answer (PROTOCOL.md §3.4)', () => {
    const echo = instantiate('echo');
    const put = echo.step('remember', { key: 'k', value: { a: 1 }, privacy: ['K1', 'K2'] });
    expect(put).toEqual({
      t: 'ctx',
      op: 'put',
      key: 'k',
      scope: 'app',
      continuation: 'recall',
      value: { a: 1 },
      ttlMs: 1000,
      state: 'k',
      privacy: ['K1', 'K2'],
    });
    const get = echo.step('recall', { ok: true, service: 'context', rpc: 'put', state: 'k' });
    expect(get).toEqual({ t: 'ctx', op: 'get', key: 'k', scope: 'app', continuation: 'recalled' });
    const del = echo.step('remember', { key: 'k', forget: true });
    expect(del).toMatchObject({ t: 'ctx', op: 'delete', key: 'k', continuation: 'recall' });
    // The host's parser takes every one of them.
    for (const r of [put, get, del]) expect(parseInvokeResult(encode(r), 'echo')).toEqual(r);
    const read = (reply: Record<string, unknown>) =>
      echo.step('recalled', { ok: true, service: 'context', rpc: 'get', ...reply });
    expect(read({ found: true, value: { a: 1 } })).toEqual({
      t: 'done',
      value: { found: true, expired: false, value: { a: 1 }, via: 'context/get' },
    });
    expect(read({ found: false, expired: true })).toEqual({
      t: 'done',
      value: { found: false, expired: true, value: null, via: 'context/get' },
    });
    const refused = { ok: false, error: { code: 'E_LIMIT', message: 'too big' }, state: 'k' };
    expect(echo.step('recall', refused)).toEqual({
      t: 'error',
      message: 'too big',
      code: 'E_LIMIT',
    });
  });

  it('frees what it allocates: 10,000 invocations stay within a small bound', () => {
    const echo = instantiate('echo', 64); // 4 MiB: far less than 10,000 requests need unfreed
    const value = {
      id: 1,
      name: 'a name',
      tags: ['x', 'y', 'z'],
      blob: new Uint8Array(2048).fill(9),
    };
    for (let i = 0; i < 100; i++) echo.step('echo', { ...value, id: i });
    const warm = echo.memory.buffer.byteLength;
    for (let i = 0; i < 10_000; i++) {
      const r = echo.step('echo', { ...value, id: i });
      if (r.t !== 'done') throw new Error(`invocation ${i}: ${JSON.stringify(r)}`);
    }
    expect(echo.memory.buffer.byteLength).toBeLessThanOrEqual(warm + 2 * PAGE);
    expect(echo.memory.buffer.byteLength).toBeLessThanOrEqual(16 * PAGE);
  });

  it('frees large requests and results as well', () => {
    const echo = instantiate('echo', 64);
    const blob = new Uint8Array(200_000).fill(1); // 2,000 of them: 400 MB through a 4 MiB memory
    for (let i = 0; i < 2_000; i++) expect(echo.step('echo', blob).t).toBe('done');
  });
});

describe('memory-hog', () => {
  it('grows until the memory maximum stops it', () => {
    const hog = instantiate('memory-hog', 32);
    expect(() => hog.step('run', null)).toThrow(WebAssembly.RuntimeError);
    expect(hog.memory.buffer.byteLength).toBeGreaterThanOrEqual(31 * PAGE);
  });
});

// Draws a thick "7" with its box at (x0, y0), `w`×`h`, on a width×height canvas.
function drawSeven(width: number, height: number, x0: number, y0: number, w: number, h: number) {
  const pixels = new Uint8Array(width * height);
  const pen = Math.max(1, Math.round(h / 8));
  const dot = (x: number, y: number) => {
    for (let dy = 0; dy < pen; dy++) {
      for (let dx = 0; dx < pen; dx++) {
        const px = Math.round(x) + dx;
        const py = Math.round(y) + dy;
        if (px >= 0 && py >= 0 && px < width && py < height) pixels[py * width + px] = 255;
      }
    }
  };
  for (let x = x0; x <= x0 + w - pen; x++) dot(x, y0);
  for (let t = 0; t <= 1; t += 0.002) dot(x0 + w - pen - t * (w - pen) * 0.6, y0 + t * (h - pen));
  return pixels;
}

function stats(image: Float32Array) {
  let mass = 0;
  let mx = 0;
  let my = 0;
  let x0 = 28;
  let x1 = -1;
  let y0 = 28;
  let y1 = -1;
  for (let i = 0; i < 784; i++) {
    const v = image[i]!;
    const x = i % 28;
    const y = Math.floor(i / 28);
    mass += v;
    mx += v * x;
    my += v * y;
    if (v > 0) {
      x0 = Math.min(x0, x);
      x1 = Math.max(x1, x);
      y0 = Math.min(y0, y);
      y1 = Math.max(y1, y);
    }
  }
  return { cx: mx / mass, cy: my / mass, width: x1 - x0 + 1, height: y1 - y0 + 1, x0, x1, y0, y1 };
}

function correlation(a: ArrayLike<number>, b: ArrayLike<number>) {
  const n = a.length;
  let ma = 0;
  let mb = 0;
  for (let i = 0; i < n; i++) {
    ma += a[i]! / n;
    mb += b[i]! / n;
  }
  let ab = 0;
  let aa = 0;
  let bb = 0;
  for (let i = 0; i < n; i++) {
    ab += (a[i]! - ma) * (b[i]! - mb);
    aa += (a[i]! - ma) ** 2;
    bb += (b[i]! - mb) ** 2;
  }
  return ab / Math.sqrt(aa * bb);
}

describe('digits classify', () => {
  const preprocess = (input: unknown) => {
    const r = instantiate('digits').step('preprocess', input);
    if (r.t !== 'done') throw new Error(JSON.stringify(r));
    const { pixels } = r.value as { pixels: Uint8Array };
    expect(pixels.length).toBe(784 * 4);
    return f32(pixels);
  };

  it('frames an off-centre digit on a 100×60 canvas the way MNIST was framed', () => {
    const image = preprocess({
      width: 100,
      height: 60,
      pixels: drawSeven(100, 60, 62, 20, 30, 36),
    });
    const s = stats(image);
    // Centre of mass on (14, 14), to within the half pixel that whole-pixel shifts allow.
    expect(Math.abs(s.cx - 14)).toBeLessThanOrEqual(0.5);
    expect(Math.abs(s.cy - 14)).toBeLessThanOrEqual(0.5);
    // Scaled to fit 20×20, aspect ratio kept (30×36 → 17×20), wholly inside the 28×28 frame.
    expect(s.height).toBe(20);
    expect(s.width).toBe(17);
    expect(s.x0).toBeGreaterThanOrEqual(1);
    expect(s.y0).toBeGreaterThanOrEqual(1);
    expect(s.x1).toBeLessThanOrEqual(26);
    expect(s.y1).toBeLessThanOrEqual(26);
    expect(Math.max(...image)).toBe(1);
    expect(Math.min(...image)).toBe(0);
  });

  it('gives the same image for the same digit drawn anywhere, at any size', () => {
    const small = preprocess({ width: 100, height: 60, pixels: drawSeven(100, 60, 5, 3, 30, 36) });
    const big = preprocess({
      width: 400,
      height: 300,
      pixels: drawSeven(400, 300, 200, 40, 150, 180),
    });
    expect(correlation(small, big)).toBeGreaterThan(0.9);
  });

  it('recovers MNIST digits blown up and moved on a larger canvas', () => {
    const require = createRequire(import.meta.url);
    for (const digit of [0, 3, 7]) {
      const path = require.resolve(`mnist/src/digits/${digit}.json`);
      const data = (JSON.parse(readFileSync(path, 'utf8')) as { data: number[] }).data;
      for (const [k, ox, oy] of [
        [3, 17, 5],
        [7, 2, 40],
      ] as const) {
        const original = data.slice(k * 784, k * 784 + 784);
        const width = 28 * k + 60;
        const height = 28 * k + 50;
        const pixels = new Uint8Array(width * height);
        for (let y = 0; y < 28 * k; y++) {
          for (let x = 0; x < 28 * k; x++) {
            const v = original[Math.floor(y / k) * 28 + Math.floor(x / k)]!;
            pixels[(oy + y) * width + ox + x] = Math.round(v * 255);
          }
        }
        expect(correlation(preprocess({ width, height, pixels }), original)).toBeGreaterThan(0.98);
      }
    }
  });

  it('calls the model with a [1, 784] float32 tensor and answers with the argmax', () => {
    const input = { width: 100, height: 60, pixels: drawSeven(100, 60, 62, 20, 30, 36) };
    const logic = instantiate('digits');
    const call = logic.step('classify', input);
    if (call.t !== 'call') throw new Error(JSON.stringify(call));
    expect(call.service).toBe('model');
    expect(call.rpc).toBe('');
    expect(call.continuation).toBe('onModel');
    expect(call.state).toBeUndefined();
    expect(Object.keys(call.payload as object)).toEqual(['inputs']);
    const tensor = (call.payload as ModelRequest).inputs.pixels;
    expect(tensor.type).toBe('float32');
    expect(tensor.dims).toEqual([1, 784]);
    expect(f32(tensor.data)).toEqual(preprocess(input));

    const probs = [0.01, 0.02, 0.03, 0.04, 0.05, 0.05, 0.05, 0.7, 0.03, 0.02];
    const result = logic.invoke('classify', input, (service, rpc, payload) => {
      const { dims } = (payload as ModelRequest).inputs.pixels;
      expect([service, rpc, dims]).toEqual(['model', '', [1, 784]]);
      return { value: modelOutput(probs), rpc: 'small' };
    });
    expect(result).toEqual({
      t: 'done',
      value: { digit: 7, confidence: Math.fround(0.7), variant: 'small' },
    });
  });

  it('passes on a model failure with its message and code', () => {
    const logic = instantiate('digits');
    const failed = { ok: false, error: { code: 'E_TIMEOUT', message: 'variant small timed out' } };
    expect(logic.step('onModel', failed)).toEqual({
      t: 'error',
      message: 'the model failed: variant small timed out',
      code: 'E_TIMEOUT',
    });
  });

  const badOutputs: [string, unknown, RegExp][] = [
    ['no outputs', {}, /model result\.outputs: missing/],
    ['no probs', { outputs: {} }, /model result\.outputs\.probs: missing/],
    [
      '9 probs',
      modelOutput([0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.2]),
      /expected 10 values, got 9/,
    ],
    [
      'int32 probs',
      { outputs: { probs: { type: 'int32', dims: [1, 10], data: new Uint8Array(40) } } },
      /expected float32, got int32/,
    ],
    [
      'short data',
      { outputs: { probs: { type: 'float32', dims: [1, 10], data: new Uint8Array(39) } } },
      /dims hold 10 elements of float32 but data has 39 bytes/,
    ],
  ];
  for (const [what, value, message] of badOutputs) {
    it(`answers an error, not a fault, for a model result with ${what}`, () => {
      const r = instantiate('digits').step('onModel', {
        ok: true,
        value,
        service: 'model',
        rpc: 'x',
      });
      expect(r.t).toBe('error');
      expect((r as { message: string }).message).toMatch(message);
    });
  }

  const pixels = new Uint8Array(6000).fill(255);
  const badInputs: [string, unknown, RegExp][] = [
    [
      'a zero width',
      { width: 0, height: 60, pixels },
      /input\.width: must be between 1 and 4096, got 0/,
    ],
    [
      'a huge width',
      { width: 5000, height: 60, pixels },
      /input\.width: must be between 1 and 4096/,
    ],
    [
      'a string width',
      { width: '100', height: 60, pixels },
      /input\.width: expected int, got string/,
    ],
    [
      'a fractional height',
      { width: 100, height: 60.5, pixels },
      /input\.height: expected int, got float/,
    ],
    ['no height', { width: 100, pixels }, /input\.height: missing/],
    [
      'pixels as an array',
      { width: 2, height: 1, pixels: [1, 2] },
      /input\.pixels: expected bin, got array/,
    ],
    [
      'too few pixels',
      { width: 100, height: 60, pixels: pixels.subarray(1) },
      /expected 6000 bytes .* got 5999/,
    ],
    ['no map at all', 'a string', /input: expected map, got string/],
    ['a blank image', { width: 100, height: 60, pixels: new Uint8Array(6000) }, /no ink/],
  ];
  for (const [what, input, message] of badInputs) {
    it(`answers an error for ${what}, and goes on serving`, () => {
      const logic = instantiate('digits');
      for (const rpc of ['classify', 'preprocess']) {
        const r = logic.step(rpc, input);
        expect(r.t).toBe('error');
        expect((r as { message: string }).message).toMatch(message);
      }
      expect(logic.step('classify', { width: 1, height: 1, pixels: new Uint8Array([9]) }).t).toBe(
        'call',
      );
    });
  }
});

describe('front (Logic → Logic → Model)', () => {
  it('passes its input to classify and wraps the answer', () => {
    const input = { width: 100, height: 60, pixels: drawSeven(100, 60, 62, 20, 30, 36) };
    const front = instantiate('front');
    const classify = instantiate('digits');
    const result = front.invoke('entry', input, (service, rpc, payload) => {
      expect([service, rpc]).toEqual(['classify', 'classify']);
      expect(payload).toEqual(input);
      const value = classify.invoke(rpc, payload, () => ({
        value: modelOutput([0, 0, 0, 0, 0, 0, 0, 1, 0, 0]),
        rpc: 'large',
      }));
      if (value.t !== 'done') throw new Error(JSON.stringify(value));
      return { value: value.value, rpc };
    });
    expect(result).toEqual({
      t: 'done',
      value: { via: 'front', result: { digit: 7, confidence: 1, variant: 'large' }, hops: 2 },
    });
  });

  it('passes on a failure of classify', () => {
    const r = instantiate('front').step('back', {
      ok: false,
      error: { code: 'E_APP', message: 'no ink' },
    });
    expect(r).toEqual({ t: 'error', message: 'classify failed: no ink', code: 'E_APP' });
  });
});
