// The Brume Logic SDK for AssemblyScript: see README.md. Import everything from here.
export { Kind, Value, Writer, fail, kindName, MAX_DEPTH } from "./msgpack";
export { Tensor, elementSize } from "./tensor";
export { Fields } from "./fields";
export {
  Request,
  Continuation,
  done,
  error,
  call,
  contextGet,
  contextPut,
  contextDelete,
  log,
  brume_alloc,
  brume_free,
} from "./abi";
