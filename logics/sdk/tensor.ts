// Reading the tensors of PROTOCOL.md §4 out of decoded values. (Writing one: Writer.tensor.)
import { Value, fail } from "./msgpack";

/**
 * A tensor `{ type, dims, data }`: `data` holds the elements row-major, little-endian.
 *
 *     const probs = Tensor.from(outputs.get("probs")).f32();   // Float32Array
 */
export class Tensor {
  constructor(
    /** "float32", "int32", "int64", "uint8" or "bool". */
    public readonly type: string,
    public readonly dims: i64[],
    /** The raw element bytes (not a copy). */
    public readonly data: Uint8Array,
  ) {}

  /** `v` as a tensor; aborts with what is wrong if it is not a well-formed one. */
  static from(v: Value): Tensor {
    const problem = Tensor.problem(v);
    if (problem.length > 0) fail("not a tensor: " + problem);
    const dimValues = v.get("dims").asArray();
    const dims = new Array<i64>(dimValues.length);
    for (let i = 0; i < dimValues.length; i++) dims[i] = dimValues[i].asInt();
    return new Tensor(v.get("type").asString(), dims, v.get("data").asBin());
  }

  /** What is wrong with `v` as a tensor, or "" if nothing is. */
  static problem(v: Value): string {
    if (!v.isMap()) return "expected a map, got " + v.kindName();
    const type = v.find("type");
    const dims = v.find("dims");
    const data = v.find("data");
    if (type == null || !type.isString()) return '"type" is missing or not a string';
    const width = elementSize(type.asString());
    if (width == 0) return 'unknown type "' + type.asString() + '"';
    if (dims == null || !dims.isArray()) return '"dims" is missing or not an array';
    if (data == null || !data.isBin()) return '"data" is missing or not a bin';
    const bytes = <i64>data.length;
    let count: i64 = 1;
    const items = dims.asArray();
    for (let i = 0; i < items.length; i++) {
      const d = items[i];
      if (!d.isInt() || d.asInt() < 0) return "dims must be non-negative integers";
      count *= d.asInt();
      // Past the data's size the product can only be wrong; stop before it overflows.
      if (count > bytes) return "dims hold more elements than data has bytes";
    }
    if (count * width != bytes) {
      return (
        "dims hold " +
        count.toString() +
        " elements of " +
        type.asString() +
        " but data has " +
        bytes.toString() +
        " bytes"
      );
    }
    return "";
  }

  /** Number of elements. */
  get size(): i32 {
    return this.data.length / elementSize(this.type);
  }

  /** The elements of a "float32" tensor (a view on `data`, not a copy). */
  f32(): Float32Array {
    this.mustBe("float32");
    const d = this.aligned();
    return Float32Array.wrap(d.buffer, d.byteOffset, this.size);
  }

  /** The elements of an "int32" tensor (a view on `data`). */
  i32(): Int32Array {
    this.mustBe("int32");
    const d = this.aligned();
    return Int32Array.wrap(d.buffer, d.byteOffset, this.size);
  }

  /** The elements of an "int64" tensor (a view on `data`). */
  i64(): Int64Array {
    this.mustBe("int64");
    const d = this.aligned();
    return Int64Array.wrap(d.buffer, d.byteOffset, this.size);
  }

  /** The elements of a "uint8" or "bool" tensor (`data` itself). */
  u8(): Uint8Array {
    if (this.type != "bool") this.mustBe("uint8");
    return this.data;
  }

  // `data` if its offset suits every element type (decoded data always does), else a copy.
  private aligned(): Uint8Array {
    return (this.data.byteOffset & 7) == 0 ? this.data : this.data.slice();
  }

  private mustBe(type: string): void {
    if (this.type != type) fail("expected a " + type + " tensor, got " + this.type);
  }
}

/** Bytes per element of a §4 type, or 0 for an unknown type. */
export function elementSize(type: string): i32 {
  if (type == "float32" || type == "int32") return 4;
  if (type == "int64") return 8;
  if (type == "uint8" || type == "bool") return 1;
  return 0;
}
