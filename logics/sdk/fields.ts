// Validating a request's fields without aborting, so bad input becomes an app error (E_APP).
import { Value } from "./msgpack";
import { Tensor } from "./tensor";

// The first problem found, shared by a Fields and the nested ones it hands out.
class Problems {
  message: string = "";
}

/**
 * Typed reads of a map's fields that record the first problem instead of aborting. Each getter
 * returns a harmless default (0, "", an empty array) once something is wrong; check `failed`
 * after reading everything and return `error(f.message)`.
 *
 *     const f = new Fields(req.input);
 *     const width = f.int("width", 1, 4096);
 *     const pixels = f.bin("pixels");
 *     if (f.failed) return error(f.message);   // e.g. "input.width: expected int, got string"
 */
export class Fields {
  private readonly problems: Problems;

  /** `what` names the map in messages ("input", "input.options", ...). */
  constructor(
    public readonly raw: Value,
    public readonly what: string = "input",
    problems: Problems | null = null,
  ) {
    this.problems = problems != null ? problems : new Problems();
    if (!raw.isMap()) this.problem(what + ": expected map, got " + raw.kindName());
  }

  /** Whether any read so far found a problem. */
  get failed(): bool {
    return this.problems.message.length > 0;
  }

  /** The first problem found ("" if none). */
  get message(): string {
    return this.problems.message;
  }

  /** Records a problem of your own (only the first one is kept). */
  problem(message: string): void {
    if (!this.failed) this.problems.message = message;
  }

  /** Whether the map has `key` (a missing key is not a problem here). */
  has(key: string): bool {
    return this.raw.isMap() && this.raw.has(key);
  }

  /** The field as it is, whatever its kind; nil if missing. */
  value(key: string): Value {
    const v = this.field(key, "");
    return v != null ? v : Value.nil();
  }

  /** An integer in [min, max] (an integral float counts: JS numbers are both). */
  int(key: string, min: i64 = i64.MIN_VALUE, max: i64 = i64.MAX_VALUE): i64 {
    const v = this.field(key, "int");
    if (v == null) return 0;
    const n = v.asInt();
    if (n < min || n > max) {
      this.problem(
        this.what +
          "." +
          key +
          ": must be between " +
          min.toString() +
          " and " +
          max.toString() +
          ", got " +
          n.toString(),
      );
      return 0;
    }
    return n;
  }

  /** A number (int or float). */
  float(key: string): f64 {
    const v = this.field(key, "number");
    return v != null ? v.asFloat() : 0;
  }

  bool(key: string): bool {
    const v = this.field(key, "bool");
    return v != null ? v.asBool() : false;
  }

  str(key: string): string {
    const v = this.field(key, "string");
    return v != null ? v.asString() : "";
  }

  bin(key: string): Uint8Array {
    const v = this.field(key, "bin");
    return v != null ? v.asBin() : new Uint8Array(0);
  }

  array(key: string): Value[] {
    const v = this.field(key, "array");
    return v != null ? v.asArray() : new Array<Value>(0);
  }

  /** A nested map, read with the same rules; its problems are this one's. */
  map(key: string): Fields {
    const v = this.field(key, "map");
    return new Fields(v != null ? v : Value.fromMap([], []), this.what + "." + key, this.problems);
  }

  /** A tensor (PROTOCOL.md §4). */
  tensor(key: string): Tensor {
    const v = this.field(key, "map");
    if (v == null) return emptyTensor();
    const problem = Tensor.problem(v);
    if (problem.length > 0) {
      this.problem(this.what + "." + key + ": " + problem);
      return emptyTensor();
    }
    return Tensor.from(v);
  }

  // The field if nothing failed yet, it exists and its kind fits ("" fits all); else null.
  private field(key: string, kind: string): Value | null {
    if (this.failed || !this.raw.isMap()) return null;
    const v = this.raw.find(key);
    if (v == null) {
      this.problem(this.what + "." + key + ": missing");
      return null;
    }
    if (!fits(v, kind)) {
      this.problem(this.what + "." + key + ": expected " + kind + ", got " + v.kindName());
      return null;
    }
    return v;
  }
}

function fits(v: Value, kind: string): bool {
  if (kind == "") return true;
  if (kind == "int") return v.isInt();
  if (kind == "number") return v.isNumber();
  if (kind == "bool") return v.isBool();
  if (kind == "string") return v.isString();
  if (kind == "bin") return v.isBin();
  if (kind == "array") return v.isArray();
  return v.isMap();
}

function emptyTensor(): Tensor {
  return new Tensor("uint8", [0], new Uint8Array(0));
}
