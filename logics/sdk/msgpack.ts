// MessagePack for Logics (PROTOCOL.md §1): a decoded `Value` tree and a `Writer` that encodes.
// Malformed input aborts with a message (AssemblyScript has no catchable exceptions); the host
// only ever hands a Logic bytes it encoded itself, so that is a platform fault, not an app error.

/** The kinds of value a MessagePack message holds (maps have string keys; no extension types). */
export enum Kind {
  Nil = 0,
  Bool = 1,
  Int = 2,
  Float = 3,
  Str = 4,
  Bin = 5,
  Array = 6,
  Map = 7,
}

/** A kind's name as error messages spell it: "nil", "bool", "int", "float", "string", ... */
export function kindName(kind: Kind): string {
  switch (kind) {
    case Kind.Nil:
      return "nil";
    case Kind.Bool:
      return "bool";
    case Kind.Int:
      return "int";
    case Kind.Float:
      return "float";
    case Kind.Str:
      return "string";
    case Kind.Bin:
      return "bin";
    case Kind.Array:
      return "array";
    default:
      return "map";
  }
}

/**
 * Stops the Logic with `message`: the host fails the invocation with E_LOGIC_FAULT carrying it.
 * (`unreachable` stops it even under a host whose env.abort returns.)
 */
export function fail(message: string): void {
  abort(message);
  unreachable();
}

/** Nesting deeper than this is refused, so hostile input cannot overflow the stack. */
export const MAX_DEPTH: i32 = 100;

/**
 * One decoded MessagePack value. Test its kind with `isInt()`, `isMap()`, ... and read it with
 * the typed getters `asInt()`, `asString()`, `get(key)`, ..., which abort with a clear message
 * ("expected int, got string") when the kind is wrong. For input validation that must become an
 * app error instead, use `Fields`.
 */
export class Value {
  // Set by the subclass of each kind: `new Value()` is nil, and no value's kind can disagree with
  // its class (the getters rely on that).
  protected k: Kind = Kind.Nil;

  get kind(): Kind {
    return this.k;
  }

  /** "nil", "bool", "int", "float", "string", "bin", "array" or "map". */
  kindName(): string {
    return kindName(this.kind);
  }

  isNil(): bool {
    return this.kind == Kind.Nil;
  }
  isBool(): bool {
    return this.kind == Kind.Bool;
  }
  /** An integer, or a float with an integral value that fits in i64 (JS numbers are both). */
  isInt(): bool {
    if (this.kind == Kind.Int) return !changetype<IntValue>(this).big;
    if (this.kind == Kind.Float) return isIntegral(changetype<FloatValue>(this).value);
    return false;
  }
  isFloat(): bool {
    return this.kind == Kind.Float;
  }
  /** An int or a float. */
  isNumber(): bool {
    return this.kind == Kind.Int || this.kind == Kind.Float;
  }
  isString(): bool {
    return this.kind == Kind.Str;
  }
  isBin(): bool {
    return this.kind == Kind.Bin;
  }
  isArray(): bool {
    return this.kind == Kind.Array;
  }
  isMap(): bool {
    return this.kind == Kind.Map;
  }

  asBool(): bool {
    if (this.kind != Kind.Bool) this.expected("bool");
    return changetype<BoolValue>(this).value;
  }

  /** The integer; an integral float is accepted (JS sends 2.0 as an int, 2**60 as a float). */
  asInt(): i64 {
    if (this.kind == Kind.Int) {
      const v = changetype<IntValue>(this);
      if (v.big) fail("integer " + (<u64>v.value).toString() + " does not fit in i64");
      return v.value;
    }
    if (this.kind == Kind.Float) {
      const f = changetype<FloatValue>(this).value;
      if (!isIntegral(f)) fail("expected int, got a float that is not a whole number");
      return <i64>f;
    }
    this.expected("int");
    return 0;
  }

  /** The integer, which must fit in i32. */
  asI32(): i32 {
    const n = this.asInt();
    if (n < <i64>i32.MIN_VALUE || n > <i64>i32.MAX_VALUE) {
      fail("integer " + n.toString() + " does not fit in i32");
    }
    return <i32>n;
  }

  /** The integer as u64 (the only way to read a uint64 at or above 2^63). */
  asU64(): u64 {
    if (this.kind == Kind.Int) {
      const v = changetype<IntValue>(this);
      if (!v.big && v.value < 0) fail("integer " + v.value.toString() + " is negative");
      return <u64>v.value;
    }
    const n = this.asInt();
    if (n < 0) fail("integer " + n.toString() + " is negative");
    return <u64>n;
  }

  /** The number as f64; ints are converted. */
  asFloat(): f64 {
    if (this.kind == Kind.Float) return changetype<FloatValue>(this).value;
    if (this.kind == Kind.Int) {
      const v = changetype<IntValue>(this);
      return v.big ? <f64>(<u64>v.value) : <f64>v.value;
    }
    this.expected("float");
    return 0;
  }

  asString(): string {
    if (this.kind != Kind.Str) this.expected("string");
    return changetype<StrValue>(this).value;
  }

  /** The bytes of a bin (not a copy: changing them changes the value). */
  asBin(): Uint8Array {
    if (this.kind != Kind.Bin) this.expected("bin");
    return changetype<BinValue>(this).value;
  }

  /** The items of an array (not a copy). */
  asArray(): Value[] {
    if (this.kind != Kind.Array) this.expected("array");
    return changetype<ArrayValue>(this).items;
  }

  /** Items of an array, entries of a map, UTF-16 units of a string, bytes of a bin; else 0. */
  get length(): i32 {
    switch (this.kind) {
      case Kind.Array:
        return changetype<ArrayValue>(this).items.length;
      case Kind.Map:
        return changetype<MapValue>(this).mapKeys.length;
      case Kind.Str:
        return changetype<StrValue>(this).value.length;
      case Kind.Bin:
        return changetype<BinValue>(this).value.length;
      default:
        return 0;
    }
  }

  /** Item `i` of an array. */
  at(i: i32): Value {
    const items = this.asArray();
    if (i < 0 || i >= items.length) {
      fail("index " + i.toString() + " is outside an array of " + items.length.toString());
    }
    return unchecked(items[i]);
  }

  /** The keys of a map, in message order. */
  keys(): string[] {
    if (this.kind != Kind.Map) this.expected("map");
    return changetype<MapValue>(this).mapKeys;
  }

  /** The values of a map, in the order of `keys()`. */
  values(): Value[] {
    if (this.kind != Kind.Map) this.expected("map");
    return changetype<MapValue>(this).mapValues;
  }

  /** Whether a map has `key`. */
  has(key: string): bool {
    return this.find(key) != null;
  }

  /** The value of `key` in a map, or null if absent (the first one, if a key repeats). */
  find(key: string): Value | null {
    if (this.kind != Kind.Map) this.expected("map");
    const m = changetype<MapValue>(this);
    for (let i = 0, n = m.mapKeys.length; i < n; i++) {
      if (unchecked(m.mapKeys[i]) == key) return unchecked(m.mapValues[i]);
    }
    return null;
  }

  /** The value of `key` in a map; aborts if the key is missing. */
  get(key: string): Value {
    const v = this.find(key);
    if (v == null) fail('missing key "' + key + '"');
    return changetype<Value>(v);
  }

  static nil(): Value {
    return new Value();
  }
  static fromBool(b: bool): Value {
    return new BoolValue(b);
  }
  static fromInt(n: i64): Value {
    return new IntValue(n, false);
  }
  static fromFloat(f: f64): Value {
    return new FloatValue(f);
  }
  static fromString(s: string): Value {
    return new StrValue(s);
  }
  static fromBin(bytes: Uint8Array): Value {
    return new BinValue(bytes);
  }
  static fromArray(items: Value[]): Value {
    return new ArrayValue(items);
  }
  /** A map with `keys[i]` holding `values[i]`. */
  static fromMap(keys: string[], values: Value[]): Value {
    if (keys.length != values.length) fail("Value.fromMap: as many keys as values, please");
    return new MapValue(keys, values);
  }

  /** Decodes exactly one MessagePack value from `bytes` (copying what it keeps). */
  static decode(bytes: Uint8Array): Value {
    return decodeAt(bytes.dataStart, <usize>bytes.length);
  }

  private expected(what: string): void {
    fail("expected " + what + ", got " + kindName(this.kind));
  }
}

class BoolValue extends Value {
  constructor(public readonly value: bool) {
    super();
    this.k = Kind.Bool;
  }
}

class IntValue extends Value {
  // `big`: a uint64 at or above 2^63, held in `value` as its u64 bit pattern.
  constructor(
    public readonly value: i64,
    public readonly big: bool,
  ) {
    super();
    this.k = Kind.Int;
  }
}

class FloatValue extends Value {
  constructor(public readonly value: f64) {
    super();
    this.k = Kind.Float;
  }
}

class StrValue extends Value {
  constructor(public readonly value: string) {
    super();
    this.k = Kind.Str;
  }
}

class BinValue extends Value {
  constructor(public readonly value: Uint8Array) {
    super();
    this.k = Kind.Bin;
  }
}

class ArrayValue extends Value {
  constructor(public readonly items: Value[]) {
    super();
    this.k = Kind.Array;
  }
}

class MapValue extends Value {
  constructor(
    public readonly mapKeys: string[],
    public readonly mapValues: Value[],
  ) {
    super();
    this.k = Kind.Map;
  }
}

function isIntegral(f: f64): bool {
  // 2^63 itself does not fit; -2^63 does.
  return Math.trunc(f) == f && f >= -9223372036854775808.0 && f < 9223372036854775808.0;
}

// ---------------------------------------------------------------------------------------------
// Decoding

/** Decodes exactly one value from `len` bytes at `ptr`; aborts on malformed or trailing bytes. */
export function decodeAt(ptr: usize, len: usize): Value {
  if (ptr + len < ptr) fail("invalid MessagePack: the input wraps around memory");
  const d = new Decoder(ptr, len);
  const v = d.value(0);
  if (d.pos != d.end) d.bad("trailing bytes after the value");
  return v;
}

class Decoder {
  pos: usize;
  end: usize;
  constructor(
    private readonly start: usize,
    len: usize,
  ) {
    this.pos = start;
    this.end = start + len;
  }

  bad(why: string): void {
    fail("invalid MessagePack at byte " + (this.pos - this.start).toString() + ": " + why);
  }

  // Every read goes through here: nothing is read past `end`.
  take(n: usize): usize {
    if (this.end - this.pos < n) this.bad("truncated (needs " + n.toString() + " more bytes)");
    const p = this.pos;
    this.pos += n;
    return p;
  }

  u8(): u32 {
    return load<u8>(this.take(1));
  }
  u16(): u32 {
    return bswap<u16>(load<u16>(this.take(2)));
  }
  u32(): u32 {
    return bswap<u32>(load<u32>(this.take(4)));
  }
  u64(): u64 {
    return bswap<u64>(load<u64>(this.take(8)));
  }

  value(depth: i32): Value {
    if (depth > MAX_DEPTH) this.bad("nested deeper than " + MAX_DEPTH.toString());
    const b = this.u8();
    if (b <= 0x7f) return new IntValue(<i64>b, false);
    if (b >= 0xe0) return new IntValue(<i64>(<i8>b), false);
    if (b <= 0x8f) return this.map(b & 0x0f, depth);
    if (b <= 0x9f) return this.array(b & 0x0f, depth);
    if (b <= 0xbf) return this.str(b & 0x1f);
    switch (b) {
      case 0xc0:
        return new Value();
      case 0xc2:
        return new BoolValue(false);
      case 0xc3:
        return new BoolValue(true);
      case 0xc4:
        return this.bin(this.u8());
      case 0xc5:
        return this.bin(this.u16());
      case 0xc6:
        return this.bin(this.u32());
      case 0xca:
        return new FloatValue(<f64>reinterpret<f32>(this.u32()));
      case 0xcb:
        return new FloatValue(reinterpret<f64>(this.u64()));
      case 0xcc:
        return new IntValue(<i64>this.u8(), false);
      case 0xcd:
        return new IntValue(<i64>this.u16(), false);
      case 0xce:
        return new IntValue(<i64>this.u32(), false);
      case 0xcf: {
        const u = this.u64();
        return new IntValue(<i64>u, u > <u64>i64.MAX_VALUE);
      }
      case 0xd0:
        return new IntValue(<i64>(<i8>this.u8()), false);
      case 0xd1:
        return new IntValue(<i64>(<i16>this.u16()), false);
      case 0xd2:
        return new IntValue(<i64>(<i32>this.u32()), false);
      case 0xd3:
        return new IntValue(<i64>this.u64(), false);
      case 0xd9:
        return this.str(this.u8());
      case 0xda:
        return this.str(this.u16());
      case 0xdb:
        return this.str(this.u32());
      case 0xdc:
        return this.array(this.u16(), depth);
      case 0xdd:
        return this.array(this.u32(), depth);
      case 0xde:
        return this.map(this.u16(), depth);
      case 0xdf:
        return this.map(this.u32(), depth);
      default:
        // 0xc1 is never used; 0xc7-0xc9 and 0xd4-0xd8 are extension types, which Brume refuses.
        this.bad(
          b == 0xc1 ? "byte 0xc1 is never used" : "extension types are not supported",
        );
        return new Value();
    }
  }

  str(n: u32): StrValue {
    const p = this.take(<usize>n);
    return new StrValue(String.UTF8.decodeUnsafe(p, <usize>n));
  }

  bin(n: u32): BinValue {
    const p = this.take(<usize>n);
    const out = new Uint8Array(<i32>n);
    memory.copy(out.dataStart, p, <usize>n);
    return new BinValue(out);
  }

  array(n: u32, depth: i32): ArrayValue {
    // Each item takes at least one byte: a count past the input is refused before allocating.
    if (<usize>n > this.end - this.pos) {
      this.bad("array of " + n.toString() + " items is truncated");
    }
    const items = new Array<Value>(<i32>n);
    for (let i: i32 = 0; i < <i32>n; i++) unchecked((items[i] = this.value(depth + 1)));
    return new ArrayValue(items);
  }

  map(n: u32, depth: i32): MapValue {
    // Each entry takes at least two bytes (u64: twice a u32 count does not wrap).
    if (<u64>n * 2 > <u64>(this.end - this.pos)) {
      this.bad("map of " + n.toString() + " entries is truncated");
    }
    const keys = new Array<string>(<i32>n);
    const values = new Array<Value>(<i32>n);
    for (let i: i32 = 0; i < <i32>n; i++) {
      const k = this.value(depth + 1);
      if (k.kind != Kind.Str) this.bad("map key is a " + k.kindName() + "; Brume maps have string keys");
      unchecked((keys[i] = changetype<StrValue>(k).value));
      unchecked((values[i] = this.value(depth + 1)));
    }
    return new MapValue(keys, values);
  }
}

// ---------------------------------------------------------------------------------------------
// Encoding

/**
 * Encodes one MessagePack value. Containers give their size first (`map(2)`, then two key/value
 * pairs); the writer counts what follows and refuses a result that is incomplete or overfull.
 *
 *     const w = new Writer().map(2).key("digit").int(7).key("confidence").float(0.98);
 */
export class Writer {
  private buf: ArrayBuffer = new ArrayBuffer(64);
  private pos: i32 = 0;
  // Values still owed before the top-level value is complete (starts at the top-level one).
  private owed: i32 = 1;

  /** A writer holding `v`. */
  static of(v: Value): Writer {
    return new Writer().value(v);
  }

  /** Bytes written so far. */
  get length(): i32 {
    return this.pos;
  }

  /** Whether exactly one whole value has been written. */
  get complete(): bool {
    return this.owed == 0;
  }

  nil(): Writer {
    this.counted();
    store<u8>(this.room(1), 0xc0);
    return this;
  }

  bool(b: bool): Writer {
    this.counted();
    store<u8>(this.room(1), b ? 0xc3 : 0xc2);
    return this;
  }

  /** An integer, in the shortest MessagePack form. */
  int(n: i64): Writer {
    this.counted();
    if (n >= 0) this.unsigned(<u64>n);
    else if (n >= -32) store<u8>(this.room(1), <u8>n);
    else if (n >= -128) this.head8(0xd0, <u32>n);
    else if (n >= -32768) this.head16(0xd1, <u32>n);
    else if (n >= -2147483648) this.head32(0xd2, <u32>n);
    else {
      const p = this.room(9);
      store<u8>(p, 0xd3);
      store<u64>(p + 1, bswap<u64>(<u64>n));
    }
    return this;
  }

  /** An unsigned integer (all of u64). */
  uint(n: u64): Writer {
    this.counted();
    this.unsigned(n);
    return this;
  }

  /** A float64. */
  float(f: f64): Writer {
    this.counted();
    const p = this.room(9);
    store<u8>(p, 0xcb);
    store<u64>(p + 1, bswap<u64>(reinterpret<u64>(f)));
    return this;
  }

  /** A float32 (half the bytes; JS reads it as a number all the same). */
  float32(f: f32): Writer {
    this.counted();
    this.head32(0xca, reinterpret<u32>(f));
    return this;
  }

  /** A UTF-8 string. */
  str(s: string): Writer {
    this.counted();
    const n = String.UTF8.byteLength(s);
    if (n < 32) store<u8>(this.room(1), 0xa0 | n);
    else if (n < 256) this.head8(0xd9, n);
    else if (n < 65536) this.head16(0xda, n);
    else this.head32(0xdb, n);
    String.UTF8.encodeUnsafe(changetype<usize>(s), s.length, this.room(n));
    return this;
  }

  /** A map key (a string). */
  key(k: string): Writer {
    return this.str(k);
  }

  /** A bin holding `bytes`. */
  bin(bytes: Uint8Array): Writer {
    this.counted();
    this.binRaw(bytes.dataStart, bytes.length);
    return this;
  }

  /** An array of `n` items: write them next. */
  array(n: i32): Writer {
    if (n < 0) fail("Writer.array: negative length");
    this.counted();
    if (n < 16) store<u8>(this.room(1), 0x90 | n);
    else if (n < 65536) this.head16(0xdc, n);
    else this.head32(0xdd, n);
    this.owed += n;
    return this;
  }

  /** A map of `n` entries: write `n` key/value pairs next. */
  map(n: i32): Writer {
    if (n < 0) fail("Writer.map: negative length");
    this.counted();
    if (n < 16) store<u8>(this.room(1), 0x80 | n);
    else if (n < 65536) this.head16(0xde, n);
    else this.head32(0xdf, n);
    this.owed += 2 * n;
    return this;
  }

  /** A decoded value, whole. */
  value(v: Value): Writer {
    switch (v.kind) {
      case Kind.Nil:
        return this.nil();
      case Kind.Bool:
        return this.bool(changetype<BoolValue>(v).value);
      case Kind.Int: {
        const i = changetype<IntValue>(v);
        return i.big ? this.uint(<u64>i.value) : this.int(i.value);
      }
      case Kind.Float:
        return this.float(changetype<FloatValue>(v).value);
      case Kind.Str:
        return this.str(changetype<StrValue>(v).value);
      case Kind.Bin:
        return this.bin(changetype<BinValue>(v).value);
      case Kind.Array: {
        const items = changetype<ArrayValue>(v).items;
        this.array(items.length);
        for (let i = 0, n = items.length; i < n; i++) this.value(unchecked(items[i]));
        return this;
      }
      default: {
        const m = changetype<MapValue>(v);
        this.map(m.mapKeys.length);
        for (let i = 0, n = m.mapKeys.length; i < n; i++) {
          this.str(unchecked(m.mapKeys[i]));
          this.value(unchecked(m.mapValues[i]));
        }
        return this;
      }
    }
  }

  /** The (complete) value another writer holds. */
  embed(other: Writer): Writer {
    other.mustBeComplete("Writer.embed");
    this.counted();
    memory.copy(this.room(other.pos), changetype<usize>(other.buf), <usize>other.pos);
    return this;
  }

  /**
   * A tensor (PROTOCOL.md §4): `{ type, dims, data }`, from a typed array or StaticArray of
   * f32 ("float32"), i32 ("int32"), i64 ("int64"), u8 ("uint8") or bool ("bool").
   * The product of `dims` must equal the number of elements.
   *
   *     w.key("pixels").tensor([1, 784], pixels);   // pixels: Float32Array or StaticArray<f32>
   */
  tensor<T>(dims: i32[], data: T): Writer {
    let ptr: usize = 0;
    let count: i32 = 0;
    if (data instanceof ArrayBufferView) {
      ptr = data.dataStart;
      count = data.length;
    } else if (data instanceof StaticArray<valueof<T>>) {
      ptr = changetype<usize>(data);
      count = data.length;
    } else {
      ERROR("Writer.tensor takes a typed array or a StaticArray");
    }
    let size: i64 = 1;
    for (let i = 0; i < dims.length; i++) {
      if (dims[i] < 0) fail("Writer.tensor: negative dimension");
      size *= <i64>dims[i];
    }
    if (size != <i64>count) {
      fail(
        "Writer.tensor: dims hold " + size.toString() + " elements but data has " + count.toString(),
      );
    }
    this.map(3);
    this.str("type").str(elementType<valueof<T>>());
    this.str("dims").array(dims.length);
    for (let i = 0; i < dims.length; i++) this.int(dims[i]);
    this.str("data");
    this.counted();
    // WebAssembly memory is little-endian, as §4 wants the elements.
    this.binRaw(ptr, count * sizeof<valueof<T>>());
    return this;
  }

  /** A copy of the encoded bytes (the value must be complete). */
  bytes(): Uint8Array {
    this.mustBeComplete("Writer.bytes");
    const out = new Uint8Array(this.pos);
    memory.copy(out.dataStart, changetype<usize>(this.buf), <usize>this.pos);
    return out;
  }

  /** For the SDK: copies the encoded bytes to `dest`. */
  copyTo(dest: usize): void {
    memory.copy(dest, changetype<usize>(this.buf), <usize>this.pos);
  }

  /** For the SDK: aborts unless exactly one whole value was written. */
  mustBeComplete(what: string): void {
    if (this.owed != 0) {
      fail(
        what +
          ": the value is incomplete (" +
          this.owed.toString() +
          " more item(s) were announced by map()/array() than written)",
      );
    }
  }

  private counted(): void {
    if (this.owed <= 0) {
      fail("Writer: a value was written after the top-level value was complete");
    }
    this.owed--;
  }

  private unsigned(n: u64): void {
    if (n < 128) store<u8>(this.room(1), <u8>n);
    else if (n < 256) this.head8(0xcc, <u32>n);
    else if (n < 65536) this.head16(0xcd, <u32>n);
    else if (n <= 0xffffffff) this.head32(0xce, <u32>n);
    else {
      const p = this.room(9);
      store<u8>(p, 0xcf);
      store<u64>(p + 1, bswap<u64>(n));
    }
  }

  private binRaw(ptr: usize, n: i32): void {
    if (n < 256) this.head8(0xc4, n);
    else if (n < 65536) this.head16(0xc5, n);
    else this.head32(0xc6, n);
    memory.copy(this.room(n), ptr, <usize>n);
  }

  private head8(tag: u8, n: u32): void {
    const p = this.room(2);
    store<u8>(p, tag);
    store<u8>(p + 1, <u8>n);
  }

  private head16(tag: u8, n: u32): void {
    const p = this.room(3);
    store<u8>(p, tag);
    store<u16>(p + 1, bswap<u16>(<u16>n));
  }

  private head32(tag: u8, n: u32): void {
    const p = this.room(5);
    store<u8>(p, tag);
    store<u32>(p + 1, bswap<u32>(n));
  }

  // Reserves `n` bytes at the end and returns where they start.
  private room(n: i32): usize {
    const need = this.pos + n;
    if (need < this.pos) fail("Writer: message too large");
    const cap = this.buf.byteLength;
    if (need > cap) {
      let next = cap;
      while (next < need) next = next > 0x3fffffff ? need : next << 1;
      const grown = new ArrayBuffer(next);
      memory.copy(changetype<usize>(grown), changetype<usize>(this.buf), <usize>this.pos);
      this.buf = grown;
    }
    const p = changetype<usize>(this.buf) + <usize>this.pos;
    this.pos = need;
    return p;
  }
}

function elementType<E>(): string {
  if (isFloat<E>() && sizeof<E>() == 4) return "float32";
  if (isBoolean<E>()) return "bool";
  if (isInteger<E>() && isSigned<E>() && sizeof<E>() == 4) return "int32";
  if (isInteger<E>() && isSigned<E>() && sizeof<E>() == 8) return "int64";
  if (isInteger<E>() && !isSigned<E>() && sizeof<E>() == 1) return "uint8";
  ERROR("a tensor's elements are f32, i32, i64, u8 or bool");
  return "";
}
